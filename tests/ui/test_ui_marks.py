"""The image list's marks say what the check found, from the first check on, and keep saying it
through a save and an undo; a legend says what they mean (issue 13, defect 5)."""

from __future__ import annotations

from pathlib import Path

from ui_helpers import async_test, screen_text, settle, wait_for

from loratui.app import build_app
from loratui.screens.captions import LEGEND


def marks(app) -> list[str]:
    """The mark of each image row in the list (``▊ ✓ demo_00.png``)."""
    rows = [row.split() for row in screen_text(app).splitlines() if row.startswith("▊ ")]
    return [r[1] for r in rows if len(r) > 2 and r[1] in "✓·!✗" and r[2].endswith(".png")]


def children_cpu() -> float:
    """CPU seconds of this process's ended child processes."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@async_test
async def test_marks_follow_the_check_not_the_saves(photos: Path) -> None:
    # review opens without a report: the check comes after the list is drawn. At the default
    # 512 px every 96-128 px demo image is too small, an error (✗) for each.
    app = build_app(photos, start="captions")
    children = children_cpu()
    async with app.run_test(size=(80, 24)) as pilot:
        captions = app.screen
        await wait_for(pilot, lambda: captions.store is not None and bool(captions.findings), 30, "the check")
        await settle(pilot)
        await pilot.pause(0.2)
        # the full check ran in a child process (inside Textual its start used to fail, and the
        # check ran in a thread that held the keys' GIL and that quitting waited ~2 s for)
        assert children_cpu() > children + 0.05
        before = marks(app)
        assert before == ["✗"] * 6, screen_text(app)
        assert LEGEND in screen_text(app)
        await pilot.press("e", "x", "enter")
        await wait_for(pilot, lambda: (photos / "demo_00.txt").read_text().rstrip("\n").endswith("x"), 10, "the save")
        await settle(pilot)
        await pilot.pause(0.2)
        assert marks(app) == before
        await pilot.press("u")
        await wait_for(pilot, lambda: not (photos / "demo_00.txt").read_text().rstrip("\n").endswith("x"), 10, "undo")
        await settle(pilot)
        await pilot.pause(0.2)
        assert marks(app) == before


@async_test
async def test_a_clean_image_is_ticked(photos: Path) -> None:
    app = build_app(photos, start="captions", defaults=dict(resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        captions = app.screen
        await wait_for(pilot, lambda: captions.store is not None and captions.current is not None, 30, "the store")
        await settle(pilot)
        await pilot.pause(0.2)
        assert marks(app) == ["✓"] * 6, screen_text(app)
