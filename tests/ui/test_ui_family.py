"""The preset step says which model family it took the base model for."""

from __future__ import annotations

from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app


@async_test
async def test_the_preset_step_names_the_detected_family(photos: Path, tmp_path: Path) -> None:
    settings = dict(base_model="tiny-sdxl", resolution=64, steps=6, batch_size=2, sample_every=0)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs", defaults=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "SDXL at 64 px" in screen_text(app), 60, "the SDXL family")
        app.screen.query_one("#base_model").value = "tiny"
        await wait_for(pilot, lambda: "SD-1.5 at 64 px" in screen_text(app), 60, "the SD-1.5 family")


@async_test
async def test_an_older_slower_plan_never_overwrites_a_newer_one(photos: Path, tmp_path: Path) -> None:
    # A thread worker cancelled by a newer replan still runs to its end (CI saw "SDXL" stay on
    # screen after the field said "tiny"): its result arrives late and must be dropped.
    settings = dict(base_model="tiny-sdxl", resolution=64, steps=6, batch_size=2, sample_every=0)
    app = build_app(photos, start="preset", output_dir=tmp_path / "runs", defaults=settings)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: "SDXL at 64 px" in screen_text(app), 60, "the SDXL family")
        screen = app.screen
        sdxl_plans = list(screen.plans.values())
        screen.query_one("#base_model").value = "tiny"
        await wait_for(pilot, lambda: "SD-1.5 at 64 px" in screen_text(app), 60, "the SD-1.5 family")
        screen._planned(screen._generation - 1, app.state.folder, sdxl_plans)  # the late arrival
        await pilot.pause()
        assert "SD-1.5 at 64 px" in screen_text(app)
