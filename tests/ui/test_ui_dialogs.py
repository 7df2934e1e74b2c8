"""Dialogs never cut off their words, at 80×24 or narrower, and list what they ask about
inside them (issue 13, defects 3 and 9)."""

from __future__ import annotations

import re
import resource
from pathlib import Path

import pytest
from textual.app import App
from ui_helpers import async_test, screen_text, settle, wait_for

from loratui.app import build_app
from loratui.screens.dialogs import ChoiceDialog, ConfirmDialog, InputDialog
from loratui.screens.findings import FindingsDialog

STOP_BODY = "It saves a checkpoint first; `loratui train --resume` continues it."
WARNINGS_BODY = "You can fix them later and check again, or accept them now and train anyway."


def words(text: str) -> list[str]:
    return [w for w in re.split(r"\s+", text) if w]


def shown_words(app: App) -> str:
    """The screen's text with the dialog's frame removed, joined as one line of words."""
    return " ".join(words(re.sub(r"[█▀▄▔▁│]", " ", screen_text(app))))


@pytest.mark.parametrize("size", [(80, 24), (48, 20)])
@async_test
async def test_a_dialog_wraps_its_words_instead_of_cutting_them_off(size: tuple[int, int]) -> None:
    app = App()
    async with app.run_test(size=size) as pilot:
        app.push_screen(ConfirmDialog("Stop this run?", STOP_BODY, yes="Stop", no="Keep training",
                                      items=["photos/a_rather_long_file_name_0001.png: blurry (sharpness 12)"]))
        await pilot.pause(0.2)
        shown = shown_words(app)
        for text in (STOP_BODY, "photos/a_rather_long_file_name_0001.png: blurry (sharpness 12)"):
            # each word in order; a long word may be broken across lines only at its own width
            assert " ".join(words(text)) in shown or all(w in shown for w in words(text)[:-1]), shown
        assert "Keep training" in shown and "Stop" in shown
        box = app.screen.query_one("Vertical")
        assert box.region.right <= size[0] and box.region.x >= 0


@async_test
async def test_every_dialog_fits_its_longest_line_at_80_columns() -> None:
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        for dialog, text in (
            (ConfirmDialog("Continue with 3 warning(s)?", WARNINGS_BODY, yes="Accept and continue", no="Stay here"),
             WARNINGS_BODY),
            (InputDialog("Replace the tag 'a very long tag, with words' everywhere with:", "x"),
             "Replace the tag 'a very long tag, with words' everywhere with:"),
            (ChoiceDialog("Auto-caption 3 image(s) without a caption", [("blip", "BLIP base: short captions, CPU ok")],
                          body="Captions are written beside the images; none is overwritten."),
             "Captions are written beside the images; none is overwritten."),
        ):
            app.push_screen(dialog)
            await pilot.pause(0.2)
            assert " ".join(words(text)) in shown_words(app), shown_words(app)
            # its own keys at the bottom (the footer is mounted with the dialog: drawn a frame later)
            keys = ("y Accept and continue", "n Stay here") if isinstance(dialog, ConfirmDialog) else ("esc Cancel",)
            await wait_for(pilot, lambda: all(k in (screen_text(app).splitlines() or [""])[-1] for k in keys), 5, "its keys")
            app.pop_screen()
            await pilot.pause(0.05)


@async_test
async def test_a_one_button_dialog_offers_only_its_button_and_still_closes_on_esc() -> None:
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list[bool | None] = []
        app.push_screen(ConfirmDialog("Saved", "The run folder is open.", yes="OK", no=None), answers.append)
        await wait_for(pilot, lambda: "y OK" in (screen_text(app).splitlines() or [""])[-1], 5, "its key")
        footer = screen_text(app).splitlines()[-1]
        assert "No" not in footer and "esc" not in footer, footer
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert answers == [False]


@pytest.mark.parametrize("resolution", [64, 512])
@async_test
async def test_the_findings_dialog_lists_the_findings_itself(photos: Path, resolution: int) -> None:
    """At 64 px six images only warn (Continue?); at 512 px each is too small: an error list
    (it was a toast over the very list it pointed to)."""
    app = build_app(photos, defaults=dict(base_model="tiny", resolution=resolution))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "6 images · " in screen_text(app), 20, "the summary")
        await settle(pilot)
        folder_screen = app.screen
        children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsDialog), 30, "the findings dialog")
        # drawn, with its own keys in the footer
        answer = f"y {app.screen.yes}"  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: answer in (screen_text(app).splitlines() or [""])[-1], 5, "its keys")
        # the full check decoded the images in a child process, not in a thread beside the keys
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert after.ru_utime + after.ru_stime > children_cpu.ru_utime + children_cpu.ru_stime + 0.05
        report = folder_screen.summary.report  # type: ignore[attr-defined]
        findings = report.warnings if resolution == 64 else report.errors
        assert findings and not (report.errors if resolution == 64 else [])
        items = app.screen.items  # type: ignore[attr-defined]
        assert all(any(f.message in item for item in items) for f in findings)
        first = " ".join(words(findings[0].message))
        assert first in shown_words(app)  # on screen, inside the dialog
        assert "listed on the right" not in screen_text(app) and not app._notifications
        footer = screen_text(app).splitlines()[-1]  # the dialog's keys, not the step's under it
        assert answer in footer and "Next" not in footer, footer
        if resolution == 512:  # one button (OK): its footer offers that one answer, not "n Close" beside it
            assert "n " not in footer.replace(answer, ""), footer
            await pilot.press("n")  # unnamed, it still closes the dialog, as Esc does
            await wait_for(pilot, lambda: app.screen is folder_screen, 5, "closed")


@async_test
async def test_toasts_stay_off_the_caption_and_leave_when_help_opens(photos: Path) -> None:
    from textual.widgets._toast import Toast

    from loratui.screens.captions import CaptionEditor
    from loratui.screens.help import HelpScreen

    app = build_app(photos, start="captions")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        captions = app.screen
        await wait_for(pilot, lambda: captions.store is not None and captions.current is not None, 20, "the store")
        await pilot.press("u")  # "nothing to undo or redo"
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)), 5, "the toast")
        await pilot.pause(0.3)
        editor = captions.query_one(CaptionEditor).region
        for toast in app.screen.query(Toast):
            # above the caption and the findings under it (at the bottom they sat on those)
            assert toast.region.bottom <= editor.y, (toast.region, editor)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        await pilot.pause(0.2)
        assert not app._notifications and not app.screen.query(Toast)


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
@async_test
async def test_a_long_list_scrolls_inside_the_dialog_and_leaves_its_buttons_on_screen(
        tmp_path: Path, size: tuple[int, int]) -> None:
    """16 blurry photos at 80x24: the list took 12 rows and pushed the hint and both buttons past
    the screen's edge (only the footer still named y and n)."""
    from loratui.engine.data.lint import Finding

    findings = [Finding(f"p{n:02d}.png", "blurry", "warning", f"sharpness {27 + n} (under 40)") for n in range(16)]
    app = App()
    async with app.run_test(size=size) as pilot:
        app.push_screen(FindingsDialog(tmp_path, "Continue with 16 warning(s)?", "You can fix them later and "
                                       "check again.", findings, yes="Accept and continue", no="Stay here"))
        await wait_for(pilot, lambda: "Stay here" in " ".join(screen_text(app).splitlines()[:-1]), 5,
                       "the buttons above the footer")
        shown = shown_words(app)
        assert "it will not train)" in shown and "Accept and continue" in shown.split("n Stay here")[0], shown
        options = app.screen.query_one("#findings")
        assert options.size.height < 12 and options.max_scroll_y > 0  # the list gave up rows, and scrolls
        for _ in range(15):  # the last finding is reached from the keyboard, scrolled into view
            await pilot.press("down")
        await wait_for(pilot, lambda: "p15.png" in screen_text(app), 5, "the last finding")
        if size != (80, 24):  # at 60x20 the note's two rows are more than the list has left to give
            return
        (tmp_path / "p15.png").write_bytes(b"blurry")
        await pilot.press("x")  # excluded: said inside the dialog (a toast sat on its title), which still fits
        await wait_for(pilot, lambda: "excluded: p15.png" in shown_words(app), 5, "the note")
        await wait_for(pilot, lambda: "Stay here" in " ".join(screen_text(app).splitlines()[:-1]), 5,
                       "the buttons, still above the footer")
        assert not app._notifications and (tmp_path / ".excluded" / "p15.png").exists()

    app = App()
    async with app.run_test(size=(80, 40)) as pilot:  # room enough: the list's own 12 rows, no less
        app.push_screen(FindingsDialog(tmp_path, "Continue?", "", findings, yes="OK"))
        await wait_for(pilot, lambda: "OK" in screen_text(app), 5, "the dialog")
        await pilot.pause(0.2)
        assert app.screen.query_one("#findings").size.height >= 10


@async_test
async def test_a_confirm_dialogs_list_gives_up_rows_on_a_short_screen() -> None:
    app = App()
    async with app.run_test(size=(60, 16)) as pilot:
        app.push_screen(ConfirmDialog("Stop this run?", STOP_BODY, yes="Stop", no="Keep training",
                                      items=[f"warning {n}" for n in range(20)]))
        await wait_for(pilot, lambda: "Keep training" in " ".join(screen_text(app).splitlines()[:-1]), 5,
                       "the buttons above the footer")
        assert STOP_BODY.split()[-1] in shown_words(app)
