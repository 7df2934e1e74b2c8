"""Snapshots at 80×24 of the dialogs a user meets on the way (the choice, the errors and the
warnings), and of the run view with its validation marks and samples gallery."""

from __future__ import annotations

from pathlib import Path

from test_ui_snapshots import SIZE, fixed, open_findings, settings, write_run  # noqa: F401 (fixed: a fixture)
from ui_helpers import settle, wait_for

from loratui.app import build_app


def test_choice_dialog(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", start="captions", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.current is not None and app.state.report is not None, 30)
        await settle(pilot)
        await pilot.press("a")  # auto-caption the image without one: which captioner?
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChoiceDialog", 10)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_errors_dialog(snap_compare, fixed: Path) -> None:
    picture = fixed / "photos" / "demo_02.png"
    picture.write_bytes(picture.read_bytes()[:200])  # truncated: an error that blocks training
    app = build_app(fixed / "photos", defaults=settings())
    assert snap_compare(app, terminal_size=SIZE, run_before=open_findings)


def test_run_screen_with_validation_and_samples(snap_compare, fixed: Path) -> None:
    run_dir = fixed / "runs" / "demo"
    write_run(run_dir, fixed / "photos" / "demo_00.png")
    app = build_app(start="run", run_dir=run_dir)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 30)
        await wait_for(pilot, lambda: app.screen.query_one("#sample").drawn is not None, 10)
        await settle(pilot)
        await pilot.press("down", "enter")  # the older sample, opened large
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SampleViewer", 10)
        await wait_for(pilot, lambda: app.screen.query_one("#viewer-image").drawn is not None, 10)
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
