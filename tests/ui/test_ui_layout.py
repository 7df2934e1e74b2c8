"""Nothing cut off at 80×24, and figures that say what they are (issue 13, defects 6 and 11):
the caption footer and tag label whole, every preset card's last line, the loss chart's scale
and steps, the memory bar's peak tick named, the sample label apart from its neighbour."""

from __future__ import annotations

import re
from pathlib import Path

from ui_helpers import async_test, screen_text, settle, wait_for

from loratui.app import build_app


@async_test
async def test_the_caption_step_shows_every_footer_key_and_the_whole_tag_label(photos: Path) -> None:
    app = build_app(photos, start="captions")
    async with app.run_test(size=(80, 24)) as pilot:
        captions = app.screen
        await wait_for(pilot, lambda: captions.store is not None and captions.current is not None, 20, "the store")
        await pilot.pause(0.2)
        rows = screen_text(app).splitlines()
        footer = rows[-1]
        for entry in ("^n Next", "esc Back", "e Edit", "Undo/redo", "t Trigger", "f Filter", "a Auto-caption",
                      "? Help"):
            assert entry in footer, footer
        assert any("tags · Tab here: d/r" in row for row in rows)
        # d/r act on the highlighted tag: offered (and in the footer) only in the tag panel
        assert "Remove/replace tag" not in footer
        await pilot.press("tab")
        await pilot.pause(0.2)
        assert "Remove/replace tag" in screen_text(app).splitlines()[-1]


@async_test
async def test_every_preset_card_shows_its_last_line(photos: Path) -> None:
    app = build_app(photos, start="captions", defaults=dict(base_model="tiny", resolution=64))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "store", None) is not None, 20, "the store")
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: len(getattr(app.screen, "plans", {})) == 3, 30, "the plans")
        await settle(pilot)
        await pilot.pause(0.3)
        cards = list(app.screen.query("PresetCard"))
        heights = {card.outer_size.height for card in cards}
        assert len(heights) == 1, heights  # all alike
        for card in cards:
            width = card.content_region.width
            needed = card.get_content_height(card.content_region.size, card.content_region.size, width)
            assert card.content_region.height >= needed, (card.id, card.content_region, needed)


@async_test
async def test_the_run_view_labels_its_chart_and_memory_marker(tmp_path: Path, photos: Path) -> None:
    import test_ui_snapshots as snaps  # its fixed run history (a module import: no tests collected twice)

    run_dir = tmp_path / "runs" / "demo"
    snaps.write_run(run_dir, photos / "demo_00.png")
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 20, "the replay")
        await pilot.pause(0.2)
        snap = app.screen.snapshot
        text = screen_text(app)
        assert f"{max(snap.smoothed):.3g}" in text and f"{min(snap.smoothed):.3g}" in text, text  # the scale
        assert "step 1 … 60" in text, text
        assert re.search(r"│ peak \d", text), text
        row = next(r for r in text.splitlines() if "samples (" in r)  # the gallery's label, apart
        assert re.search(r"(^|\S {2,}|^\s*)samples \(\d+\)", row) and "batchsamples" not in row, row


@async_test
async def test_the_caption_count_says_what_it_counts(photos: Path) -> None:
    # at the default 512 px every demo image is too small to train on: none is usable, though
    # all six have captions (it read "6 images · 0 captioned"; the check counts them all now)
    app = build_app(photos)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "6 images · " in screen_text(app), 20, "the summary")
        text = screen_text(app)
        assert "6 images · 0 usable · 6 captioned" in text, text
        assert "0 captioned" not in text
