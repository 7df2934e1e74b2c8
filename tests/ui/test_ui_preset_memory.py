"""The preset step's GPU memory figure comes from the measured model, and "auto" is planned."""

from __future__ import annotations

from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.engine.planning.preset_plan import Hardware, plan_presets, run_flops
from loratui.screens.preset import PresetScreen


@async_test
async def test_cards_show_the_measured_memory_need(photos: Path, tmp_path: Path, tiny_model) -> None:
    from loratui.engine.planning.footprint import memory_model
    from loratui.engine.families.models import resolve_model

    # the tiny model as a diffusers folder: measured like any other model (no "tiny" shortcut)
    settings = dict(base_model=str(tiny_model), resolution=64, steps=6, batch_size=2, sample_every=0)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs", defaults=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, PresetScreen)
        await wait_for(pilot, lambda: len(screen.needs) == 3, 60, "the memory figures")
        config = app.state.build_config({"preset": "pet"})
        expected = memory_model(config, resolve_model(str(tiny_model)), "fp16", "adamw").estimate(2).total
        assert screen.needs["pet"].need == expected
        # no GPU here: the card times the run on this CPU instead of showing a GPU figure
        await wait_for(pilot, lambda: "on this CPU" in screen_text(app), 10, "the card")
        # a model that cannot be measured (here: no such file) says so instead of waiting forever
        screen.query_one("#base_model").value = str(tmp_path / "nope.safetensors")
        await wait_for(pilot, lambda: "time n/a" in screen_text(app), 30, "the n/a figure")


def test_auto_batch_is_planned_as_the_run_will_pick_it(photos: Path, tmp_path: Path, tiny_model) -> None:
    from loratui.engine.planning.presets import get_preset

    app = build_app(photos, start="preset", output_dir=tmp_path / "runs",
                    defaults=dict(base_model="tiny", resolution=64, batch_size="auto"))
    plans = {p.preset: p for p in plan_presets(app.state.build_config, Hardware())}
    assert all(not p.error for p in plans.values())
    assert plans["style"].batch_size == get_preset("style").batch_size  # no GPU: the preset's


@async_test
async def test_cards_time_the_run_from_its_flops_and_this_gpus_speed(
        photos: Path, tmp_path: Path, tiny_model, monkeypatch) -> None:
    from loratui.engine.planning import speed
    from loratui.engine.planning.footprint import memory_model
    from loratui.engine.families.models import resolve_model

    monkeypatch.setenv("LORATUI_CACHE_DIR", str(tmp_path / "cache"))  # its own speed records
    settings = dict(base_model=str(tiny_model), resolution=64, steps=600, batch_size=2, sample_every=0)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs", defaults=settings)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, PresetScreen)
        # the screen's own look at the hardware is done (not wait_for_complete: a replan under
        # load cancels the first measurement, and waiting on a cancelled worker raises)
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers), 60, "the first plan")

        async def cards_on(gpu: str) -> str:
            # this machine has no GPU: the screen is told it has one, as detect_hardware would
            screen.hardware = Hardware(gpu, 80 * 2**30, 79 * 2**30, "bf16")
            screen.needs = {}
            screen.replan()
            await wait_for(pilot, lambda: len(screen.needs) == 3, 60, "the measured figures")
            await pilot.pause()
            return screen_text(app)

        text = await cards_on("NVIDIA H100 80GB HBM3")
        config = app.state.build_config({"preset": "pet"})
        per_image = memory_model(config, resolve_model(str(tiny_model)), "bf16").unet.flops_per_image
        assert screen.needs["pet"].flops_per_image == per_image > 0
        assert "~5 s on this GPU (est.)" in text  # the tiny model's work is nothing to an H100's peak

        speed.record_speed("NVIDIA H100 80GB HBM3", "bf16", 1e6)  # as if a run had reached 1 MFLOP/s
        plan = screen.plans["pet"]
        assert 1 < plan.images_per_step <= 2  # batch 2, with a short last batch where a bucket is odd
        assert plan.check_forwards > 0  # validation passes (samples are off here)
        minutes = round(run_flops(screen.needs["pet"], plan) / 1e6 / 60)
        assert minutes > round(per_image * plan.images_per_step * 600 / 1e6 / 60)  # fixed part and checks
        text = await cards_on("NVIDIA H100 80GB HBM3")
        assert f"~{minutes // 60} h {minutes % 60:02d} min on this GPU ·" in text and "(est.)" not in text

        assert "time n/a" in await cards_on("A GPU no table lists")
