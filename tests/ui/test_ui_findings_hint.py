"""The findings dialog offers `x` (its hint and its footer) only for a finding that names an
image: a dataset-level warning (too few images) has nothing to exclude, and the hint said it had."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from ui_helpers import async_test, screen_text, wait_for

from loratui.engine.data.lint import Finding
from loratui.screens.findings import FindingsDialog

EXCLUDE = "x: exclude that image"


@async_test
async def test_x_is_offered_only_when_the_highlighted_finding_names_an_image(tmp_path: Path) -> None:
    findings = [
        Finding(".", "too_few_images", "warning", "12 usable images; 15+ is advised"),
        Finding("cat_03.png", "blurry", "warning", "looks blurry"),
    ]
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(FindingsDialog(tmp_path, "Continue with 2 warning(s)?", "", findings, "Accept", "Stay"))
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsDialog), 5, "the dialog")
        dialog = app.screen
        await pilot.pause(0.05)
        def footer() -> str:
            return screen_text(app).splitlines()[-1]

        assert EXCLUDE not in screen_text(app) and "↑/↓ pick" in screen_text(app)
        assert "x Exclude" not in footer() and "y Accept" in footer() and "n Stay" in footer(), footer()
        await pilot.press("down")  # the blurry image
        await wait_for(pilot, lambda: EXCLUDE in screen_text(app), 5, "the x hint")
        await wait_for(pilot, lambda: "x Exclude image" in footer(), 5, "x in the footer")
        await pilot.press("up")
        await wait_for(pilot, lambda: EXCLUDE not in screen_text(app), 5, "the hint without x")
        await wait_for(pilot, lambda: "x Exclude" not in footer(), 5, "x gone from the footer")
        await pilot.press("x")  # on the folder-level finding: not offered, nothing moved
        await pilot.pause(0.05)
        assert len(dialog.items) == 2 and not (tmp_path / ".excluded").exists()

        # one dataset-level warning alone: no keys to explain at all
        dialog.dismiss(None)
        app.push_screen(FindingsDialog(tmp_path, "Continue with 1 warning(s)?", "", findings[:1], "Accept", "Stay"))
        await wait_for(pilot, lambda: "1 warning(s)" in screen_text(app), 5, "the second dialog")
        await pilot.pause(0.05)
        text = screen_text(app)
        assert EXCLUDE not in text and "↑/↓" not in text and "15+ is advised" in text
