"""The preset cards' time follows the settings on a CPU too: the run's FLOPs (training steps,
sample and validation passes) over this CPU's measured speed, or a labelled estimate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loratui.engine.planning import speed
from loratui.engine.planning.preset_plan import Hardware, estimate, measure_needs, plan_presets, run_threads

CPU = Hardware(threads=2)


def card_minutes(dataset: Path, out: Path, **settings) -> tuple[float, str]:
    """(the pet plan's work in FLOPs, the card's text) for the tiny model on a 2-thread CPU."""
    from loratui.engine.config import build_config
    from loratui.engine.planning.preset_plan import run_flops

    values = dict(base_model="tiny", trigger="zxq", output_dir=str(out), resolution=64, steps=60,
                  save_every=20, batch_size=2) | settings

    def build(extra: dict):
        return build_config(str(dataset), extra.get("preset", "pet"), overrides={**values, **extra})

    plans = [p for p in plan_presets(build, CPU) if p.preset == "pet"]
    need = measure_needs(build, plans, CPU)["pet"]
    assert need is not None and need.flops_per_image > 0
    return run_flops(need, plans[0]), estimate(plans[0], CPU, "tiny", need)


@pytest.fixture
def own_speeds(tmp_path: Path, monkeypatch) -> None:
    """Speed records of this test only (other tests' tiny runs record this CPU's speed)."""
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path / "cache"))


def test_the_cpu_time_grows_with_steps_resolution_and_samples(demo_dataset, tmp_path, tiny_model, own_speeds):
    base, text = card_minutes(demo_dataset, tmp_path)
    assert re.fullmatch(r"~\d+ (s|min) on this CPU \(est\.\) · no GPU", text), text
    longer, _ = card_minutes(demo_dataset, tmp_path, steps=300)
    sharper, _ = card_minutes(demo_dataset, tmp_path, resolution=128)
    no_checks, _ = card_minutes(demo_dataset, tmp_path, sample_every=0, validation="off")
    more_samples, _ = card_minutes(demo_dataset, tmp_path, sample_every=10)
    assert longer > 4 * base and sharper > 3 * base  # 5× the steps; 4× the pixels
    assert no_checks < base < more_samples  # sample and validation passes are counted


def test_a_measured_cpu_speed_times_the_card(demo_dataset, tmp_path, tiny_model, own_speeds):
    flops, text = card_minutes(demo_dataset, tmp_path, steps=300)
    assert "(est.)" in text
    key = speed.cpu_key(run_threads(tiny=True), tiny=True)  # the threads a tiny run computes with: 1
    speed.record_speed(key, "fp32", flops / (37 * 60))  # as if a run had reached this pace
    assert card_minutes(demo_dataset, tmp_path, steps=300)[1] == "~37 min on this CPU · no GPU"
    # a real model's speed is kept apart from the tiny model's: per-call overhead paces the tiny one
    assert speed.measured_speed(speed.cpu_key(2), "fp32") is None
    assert speed.run_time(1e12, 1, speed.cpu_key(2), "fp32").seconds < speed.run_time(1e12, 1, key, "fp32").seconds


def test_durations_read_in_hours_past_90_minutes(demo_dataset, tmp_path, tiny_model, own_speeds):
    flops, _ = card_minutes(demo_dataset, tmp_path)
    speed.record_speed(speed.cpu_key(run_threads(tiny=True), tiny=True), "fp32", flops / (150 * 60))
    assert card_minutes(demo_dataset, tmp_path)[1].startswith("~2 h 30 min on this CPU")


def test_a_short_run_reads_in_seconds_with_its_measured_setup(demo_dataset, tmp_path, tiny_model, own_speeds):
    """The demo trains in seconds: its card says so ("~10 s"), not a minute, and counts the time
    earlier runs of the model took to their first step (loading it, caching the latents)."""
    key = speed.cpu_key(run_threads(tiny=True), tiny=True)
    flops, _ = card_minutes(demo_dataset, tmp_path)
    speed.record_speed(key, "fp32", flops / 9)
    assert card_minutes(demo_dataset, tmp_path)[1] == "~10 s on this CPU · no GPU"
    longer = card_minutes(demo_dataset, tmp_path, steps=300)[1]  # 5× the steps, the same passes
    assert re.fullmatch(r"~([3-5]\d s|1 min) on this CPU · no GPU", longer), longer
    speed.record_setup(key, "tiny", 20.0)
    assert card_minutes(demo_dataset, tmp_path)[1] == "~30 s on this CPU · no GPU"
    speed.record_setup(key, "tiny-sdxl", 500.0)  # another model's setup is not this one's
    assert card_minutes(demo_dataset, tmp_path)[1] == "~30 s on this CPU · no GPU"
