"""A run's time from its counted FLOPs: the data-sheet peak until this GPU has measured its speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyrun import tiny_config

from loratui.engine.planning import speed
from loratui.engine.planning.footprint import memory_model
from loratui.engine.families.models import resolve_model

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path / "cache"))


def test_an_unmeasured_gpu_is_estimated_from_its_peak():
    time = speed.run_time(1.725e12, 1000, H100, "bf16")
    assert not time.measured
    assert time.seconds == pytest.approx(1.725e12 * 1000 / (989e12 * speed.ASSUMED_MFU))
    assert speed.peak_tflops("NVIDIA H100 PCIe") == 756.0  # the specific name before the family
    assert speed.peak_tflops("NVIDIA L40S") == 362.0 and speed.peak_tflops("NVIDIA L4") == 121.0
    assert speed.run_time(1e12, 10, "Some Future GPU", "bf16") is None
    assert speed.run_time(1e12, 10, H100, "fp32") is None  # the table holds tensor-core peaks


def test_measured_runs_replace_the_estimate_with_their_median():
    for flop_per_s in (100e12, 300e12, 200e12):
        speed.record_speed(H100, "bf16", flop_per_s)
    time = speed.run_time(2e12, 500, H100, "bf16")
    assert time.measured and time.seconds == pytest.approx(2e12 * 500 / 200e12)
    assert speed.run_time(2e12, 500, H100, "fp16").measured is False  # another precision, another speed
    for n in range(10):
        speed.record_speed(H100, "bf16", 1e12 * (n + 1))
    assert speed.measured_speed(H100, "bf16") == pytest.approx(8e12)  # the last 5 runs: 6..10


def test_a_broken_speed_file_only_costs_the_records(tmp_path):
    path = Path(tmp_path / "cache" / speed.SPEED_FILE)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert speed.run_time(1e12, 10, H100, "bf16").measured is False
    speed.record_speed(H100, "bf16", 5e12)
    assert speed.measured_speed(H100, "bf16") == 5e12
    path.write_text(json.dumps({f"{H100}|bf16": ["fast", -1, 4e12]}))
    assert speed.measured_speed(H100, "bf16") == 4e12


def test_a_run_records_the_flops_it_trained_per_second(demo_dataset, tmp_path, tiny_model, monkeypatch):
    """Counted from the images each step really trained: 12 images at batch 5 are batches of
    5, 5 and 2, so a step is 4 images on average, not 5."""
    from loratui.engine.train.loop import train
    from loratui.engine.planning.run_plan import plan_run

    # this machine has no GPU: the run is told the name torch.cuda would give it
    monkeypatch.setattr(speed, "gpu_name", lambda device: H100)
    config = tiny_config(demo_dataset, tmp_path, batch_size=5, buckets=False, steps=24, save_every=0,
                         validation="off")
    events: list = []
    train(config, tmp_path / "run", [events.append])
    steps = [e for e in events if e.event == "step"]
    last = steps[-1]
    per_image = memory_model(config, resolve_model("tiny"), "fp32").unet.flops_per_image
    batches = plan_run(config).batches
    images = sum(len(batches.batch_at(m)[1]) for m in range(4, 24))  # the last 20 steps
    assert images < 20 * 5  # short batches among them
    assert speed.measured_speed(H100, "fp32") == pytest.approx(per_image * images / 20 * last.it_per_s, rel=1e-6)
    # and the time it took to its first step (loading, caching): a small run's time is mostly that
    setup = speed.measured_setup(H100, "tiny")
    assert setup is not None and 0 < setup < steps[0].t - events[0].t + 1
    assert speed.measured_setup(H100, "tiny-sdxl") is None  # another model, another setup


def test_a_model_file_is_set_up_under_its_full_path(tmp_path, monkeypatch):
    model = tmp_path / "models" / "pony.safetensors"
    model.parent.mkdir()
    model.write_bytes(b"0")
    monkeypatch.chdir(tmp_path)
    speed.record_setup(H100, "models/pony.safetensors", 40.0)
    assert speed.measured_setup(H100, str(model)) == 40.0
    assert speed.measured_setup(H100, "pony.safetensors") is None  # no such file here: another model


def test_a_run_that_downloads_its_model_first_records_no_setup(demo_dataset, tmp_path, tiny_model, monkeypatch):
    """The first run of a hub model spends its setup downloading it, which the next run does not:
    its setup would time every later card long. (No download can happen here: the run is told
    its model was fetched, as downloads_first says of a hub id not yet in the cache.)"""
    from loratui.engine.families import discover
    from loratui.engine.train.loop import train

    monkeypatch.setattr(speed, "gpu_name", lambda device: H100)
    monkeypatch.setattr(discover, "downloads_first", lambda base_model: True)
    config = tiny_config(demo_dataset, tmp_path, steps=12, save_every=0, validation="off", sample_every=0)
    train(config, tmp_path / "run")
    assert speed.measured_speed(H100, "fp32") is not None  # its speed is recorded
    assert speed.measured_setup(H100, "tiny") is None  # its setup is not
