"""Images are read on threads ahead of the VAE: in order, within a bounded window, same bits."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from tinyrun import tiny_config

from loratui.engine.errors import DatasetError
from loratui.engine.events import EventBus
from loratui.engine.data.latents import cache_latents, encode_item, read_ahead
from loratui.engine.families.models import load_components, resolve_model
from loratui.engine.planning.run_plan import plan_run

CPU = torch.device("cpu")


def test_read_ahead_keeps_order_and_stays_within_its_window():
    started: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            started.append(n)
        return n * n

    with ThreadPoolExecutor(4) as pool:
        out = []
        for n, value in enumerate(read_ahead(pool, work, range(40), window=5)):
            assert len(started) <= n + 5  # never more than the window ahead of the consumer
            out.append(value)
    assert out == [n * n for n in range(40)]


def test_read_ahead_raises_at_the_failing_item_and_stops_reading():
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        if n == 3:
            raise DatasetError("/data/3.png: cannot read this image (OSError)", "fix or remove the file")
        return n

    got = []
    with ThreadPoolExecutor(2) as pool, pytest.raises(DatasetError, match="3.png"):
        for value in read_ahead(pool, work, range(100), window=4):
            got.append(value)
    assert got == [0, 1, 2]
    assert max(started) < 3 + 4 + 1  # nothing read beyond the window once item 3 failed


@pytest.fixture(scope="module")
def tiny_vae(tiny_model):
    vae = load_components(resolve_model("tiny")).vae
    vae.requires_grad_(False)
    return vae


def test_threaded_cache_gives_the_bits_of_encoding_one_by_one(demo_dataset, tmp_path, tiny_vae, monkeypatch):
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path / "cache"))
    plan = plan_run(tiny_config(demo_dataset, tmp_path))
    progress: list = []
    bus = EventBus([progress.append])
    fresh = cache_latents(plan, tiny_vae, CPU, bus, use_disk=True, readers=3)
    from_disk = cache_latents(plan, tiny_vae, CPU, EventBus([]), use_disk=True, readers=3)
    for item in plan.items:
        mean, std = encode_item(tiny_vae, item, CPU)
        for cache in (fresh, from_disk):
            assert torch.equal(cache[item.index][0], mean) and torch.equal(cache[item.index][1], std)
    counts = [(e.done, e.total) for e in progress if e.event == "phase"]
    assert counts[0] == (0, len(plan.items)) and counts[-1] == (len(plan.items), len(plan.items))


def test_an_image_that_fails_to_decode_is_skipped_with_a_warning_naming_it(demo_dataset, tmp_path, tiny_vae):
    """One policy for a bad image (issue 14): skipped and named, as planning skips a bad header."""
    folder = tmp_path / "data"
    shutil.copytree(demo_dataset, folder)
    plan = plan_run(tiny_config(folder, tmp_path))
    count = len(plan.items)
    broken = sorted(folder.glob("*.png"))[5]
    broken.write_bytes(broken.read_bytes()[:120])  # damaged after planning (a sync still copying it)
    events: list = []
    cache = cache_latents(plan, tiny_vae, CPU, EventBus([events.append]), use_disk=False, readers=2)
    warnings = [e.message for e in events if e.event == "warning"]
    assert len(warnings) == 1 and broken.name in warnings[0] and "not trained" in warnings[0], warnings
    assert len(plan.items) == count - 1 and broken.name not in {i.record.rel for i in plan.items}
    assert sorted(cache) == [i.index for i in plan.items] == list(range(count - 1))
    assert sorted({i for b in plan.batches.epoch_batches(0) for i in b}) == list(range(count - 1))
