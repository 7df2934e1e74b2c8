"""What a training step does besides the model's own work (benchmarks/step_overhead_bench.py):
captions are encoded before the first step (as latents are cached), so no step waits for the
text encoder, each one as a step would encode it; on a CPU the batches are drawn in the step's
own thread."""

from __future__ import annotations

import threading

import pytest
import torch

from tinyrun import tiny_config
from loratui.engine.events import EventBus, PhaseProgress
from loratui.engine.train.loop import TrainingRun, _NoState
from loratui.engine.train.step import fixed_captions
from loratui.engine.train.stop import StopSignal


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from loratui.engine.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("cond") / "photos", count=3)


def _run(dataset, out, **overrides) -> tuple[TrainingRun, list, set[str]]:
    """A set-up tiny run, the events it sent, and the names of the threads alive at each event."""
    events: list = []
    threads: set[str] = set()
    cfg = tiny_config(dataset, out, steps=3, save_every=0, sample_every=0, batch_size=1, validation="off",
                      **overrides)
    bus = EventBus([events.append, lambda _: threads.update(t.name for t in threading.enumerate())])
    run = TrainingRun(cfg, out / "run", bus, _NoState(), StopSignal(), resume=False)
    run.setup()
    return run, events, threads


def test_no_step_runs_the_text_encoder_or_waits_for_another_thread(dataset, tmp_path):
    run, events, threads = _run(dataset, tmp_path)
    encoding = [e for e in events if isinstance(e, PhaseProgress) and e.phase == "encoding captions"]
    assert encoding and encoding[-1].done == encoding[-1].total == 3  # three images, three captions
    calls = []
    run.text_encoders["text_encoder"].register_forward_hook(lambda *_: calls.append(1))
    run.loop()
    assert run.step == 3 and calls == []
    assert not any(name.startswith("loratui-prefetch") for name in threads)  # drawn in the step on a CPU
    # what was encoded ahead is what a step would have encoded on the spot
    caption = fixed_captions(run.plan, run.config)[0]
    assert caption.startswith("zxq")
    with torch.no_grad():
        fresh = run.family.encode_text(run.text_encoders, run.comps.tokenizers, [caption], run.device)
    assert torch.equal(run.condition([caption])["states"][0], fresh["states"][0])


def test_caption_dropout_adds_the_empty_caption_and_shuffled_tags_encode_on_the_spot(dataset, tmp_path):
    run, _, _ = _run(dataset, tmp_path / "a", caption_dropout=0.5)
    assert fixed_captions(run.plan, run.config)[-1] == ""
    _, events, _ = _run(dataset, tmp_path / "b", shuffle_tags=True)  # no fixed set of captions
    assert not [e for e in events if isinstance(e, PhaseProgress) and e.phase == "encoding captions"]
