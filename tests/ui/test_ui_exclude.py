"""A corrupt image no longer blocks the wizard: the findings show the fix `loratui check`
prints, and `x` excludes the image (issue 13, defect 13)."""

from __future__ import annotations

import re
from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.engine.data.dataset import EXCLUDED_DIR, iter_image_paths
from loratui.screens.captions import CaptionsScreen
from loratui.screens.findings import FindingsDialog


@async_test
async def test_x_excludes_a_corrupt_image_and_the_wizard_goes_on(photos: Path) -> None:
    from loratui.engine.data.lint_rules import RULES

    data = (photos / "demo_02.png").read_bytes()
    (photos / "demo_02.png").write_bytes(data[: len(data) // 3])  # truncated: an error
    caption = (photos / "demo_02.txt").read_text()
    app = build_app(photos, defaults=dict(base_model="tiny", resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "6 images" in screen_text(app), 20, "the summary")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsDialog), 30, "the errors dialog")
        assert "error(s) first" in screen_text(app)
        dialog = app.screen
        codes = {f.code for f in dialog.findings}
        assert "corrupt_image" in codes
        # the fix `loratui check` prints, beside the finding
        assert any(f"fix: {RULES['corrupt_image'].fix}" in item for item in dialog.items)
        index = next(n for n, f in enumerate(dialog.findings) if f.code == "corrupt_image")
        for _ in range(index):
            await pilot.press("down")
        await pilot.press("x")
        # moved with its caption into the hidden folder the reader and the check skip
        assert (photos / EXCLUDED_DIR / "demo_02.png").read_bytes() == data[: len(data) // 3]
        assert (photos / EXCLUDED_DIR / "demo_02.txt").read_text() == caption
        assert not (photos / "demo_02.png").exists() and not (photos / "demo_02.txt").exists()
        assert photos / "demo_02.png" not in iter_image_paths(photos)
        # checked again: only the warnings are left (five images is few), and on it goes
        await wait_for(pilot, lambda: "warning(s)?" in screen_text(app), 30, "the warnings dialog")
        # which says where the image went, inside it: a toast sat on its title
        await wait_for(pilot, lambda: "excluded: demo_02.png (now in photos/.excluded/)"
                       in " ".join(re.sub(r"[█▀▄▔▁│]", " ", screen_text(app)).split()), 5, "the note")
        assert not app._notifications
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, CaptionsScreen), 10, "the captions step")


@async_test
async def test_the_summary_shows_each_findings_fix(photos: Path) -> None:
    from loratui.engine.data.lint_rules import RULES

    (photos / "demo_01.txt").write_text("")
    app = build_app(photos, defaults=dict(base_model="tiny", resolution=64))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "6 images" in screen_text(app), 20, "the summary")
        summary = str(app.screen.query_one("#summary").render())
        assert "empty" in summary and f"fix: {RULES['empty_caption'].fix}" in summary.replace("\n", " ")


@async_test
async def test_accept_and_continue_after_excluding_does_not_ask_again(photos: Path) -> None:
    """x on a duplicate, then "Accept and continue": the folder is checked again (it changed), and
    the wizard goes on; it asked about the same warnings a second time."""
    import shutil

    shutil.copy2(photos / "demo_00.png", photos / "demo_copy.png")
    shutil.copy2(photos / "demo_00.txt", photos / "demo_copy.txt")
    app = build_app(photos, defaults=dict(base_model="tiny", resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "7 images" in screen_text(app), 20, "the summary")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsDialog), 30, "the warnings dialog")
        dialog = app.screen
        assert {f.code for f in dialog.findings} == {"duplicate", "too_few_images"}
        index = next(n for n, f in enumerate(dialog.findings) if f.code == "duplicate")
        copy = dialog.findings[index].path
        for _ in range(index):
            await pilot.press("down")
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: isinstance(app.screen, CaptionsScreen), 30, "the captions step")
        assert (photos / EXCLUDED_DIR / copy).exists()
        assert app.state.report.images == 6  # the run is planned from the folder as checked again
        assert any(copy in n.message for n in app._notifications)  # no dialog followed to say it in
