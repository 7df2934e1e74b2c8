"""The prefetcher hands the training loop exactly the batches drawing them in order would give."""

from __future__ import annotations

import pytest
import torch
from tinyrun import tiny_config

from loratui.engine.errors import DatasetError
from loratui.engine.planning.run_plan import plan_run
from loratui.engine.data.prefetch import Prefetcher, to_device
from loratui.engine.train.step import MicroBatch, draw_micro

CPU = torch.device("cpu")


def _same(a: MicroBatch, b: MicroBatch) -> bool:
    return (a.indices == b.indices and a.captions == b.captions and torch.equal(a.latents, b.latents)
            and torch.equal(a.noise, b.noise) and torch.equal(a.timesteps, b.timesteps))


def test_prefetched_batches_are_the_drawn_ones_through_retries_and_rollbacks(demo_dataset, tmp_path):
    config = tiny_config(demo_dataset, tmp_path, batch_size=3, shuffle_tags=True, caption_dropout=0.2)
    plan = plan_run(config)

    def draw(micro: int) -> MicroBatch:
        # a posterior sample from the batch's own generator, as the cached latents are drawn
        return draw_micro(plan, config, micro, lambda idx, gen: torch.randn((len(idx), 4, 8, 8), generator=gen),
                          0.18215, 1000)

    drawn: list[int] = []
    # in order, a retry of the same batch (out of memory), a rollback to an earlier one, on again
    order = [0, 1, 2, 2, 3, 1, 2, 3, 4, 5]
    with Prefetcher(lambda m: (drawn.append(m), draw(m))[1], end=6, device=CPU) as fetch:
        got = [fetch.get(m) for m in order]
    for m, batch in zip(order, got):
        assert _same(batch, draw(m)), f"micro-batch {m} differs from drawing it directly"
    assert 6 not in drawn  # nothing past the run's last micro-batch
    assert drawn.count(2) == 2  # drawn ahead, and again after the rollback; the retry reused it


def test_a_failure_while_drawing_ahead_reaches_the_loop_as_itself():
    def draw(micro: int) -> MicroBatch:
        if micro == 1:
            raise DatasetError("/data/b.png: cannot read this image (OSError)", "fix or remove the file")
        return MicroBatch([micro], torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.zeros(1), ["x"])

    with Prefetcher(draw, end=3, device=CPU) as fetch:
        fetch.get(0)
        with pytest.raises(DatasetError, match="/data/b.png"):
            fetch.get(1)


def test_a_draw_that_failed_ahead_is_drawn_again_when_retried():
    failures = [1]  # the first draw of micro-batch 1 fails (out of memory in the VAE, say)

    def draw(micro: int) -> MicroBatch:
        if micro == 1 and failures:
            failures.pop()
            raise torch.OutOfMemoryError("CUDA out of memory")
        return MicroBatch([micro], torch.full((1, 1), float(micro)), torch.zeros(1, 1), torch.zeros(1), ["x"])

    with Prefetcher(draw, end=3, device=CPU) as fetch:
        fetch.get(0)
        with pytest.raises(torch.OutOfMemoryError):
            fetch.get(1)
        assert fetch.get(1).latents.item() == 1.0


def test_a_batch_already_on_the_device_is_not_copied():
    batch = MicroBatch([0], torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.zeros(1), ["x"])
    assert to_device(batch, CPU) is batch
