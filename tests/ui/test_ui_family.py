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
