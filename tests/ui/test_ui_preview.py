"""The image preview: one picture replaces another without a layout pass (a key pressed in the
caption review while the picture arrives waits behind any layout), keeps its aspect, and says
why when it cannot show a file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from textual.app import App, ComposeResult
from ui_helpers import async_test, screen_text, wait_for

from loratui.widgets.preview import ImagePreview


class PreviewApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ImagePreview(id="preview")


def picture(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def colours(app: App[None]) -> set[str]:
    """The colours of the picture's cells on screen."""
    strips = app.screen._compositor.render_strips()
    return {str(seg.style.color.triplet.hex) for strip in strips for seg in strip
            if seg.text == "▀" and seg.style and seg.style.color and seg.style.color.triplet}


@async_test
async def test_a_new_picture_repaints_without_a_layout_pass(tmp_path: Path) -> None:
    red = picture(tmp_path / "red.png", (32, 32), (255, 0, 0))
    blue = picture(tmp_path / "blue.png", (32, 32), (0, 0, 255))
    wide = picture(tmp_path / "wide.png", (256, 16), (0, 255, 0))
    app = PreviewApp()
    async with app.run_test(size=(40, 12)) as pilot:
        preview = app.query_one(ImagePreview)
        preview.show(red)
        await wait_for(pilot, lambda: preview.drawn == red, 10)
        await pilot.pause()
        assert colours(app) == {"#ff0000"}
        layouts: list[object] = []
        app.screen.screen_layout_refresh_signal.subscribe(app.screen, layouts.append)
        preview.show(blue)
        await wait_for(pilot, lambda: preview.drawn == blue, 10)
        await pilot.pause()
        assert colours(app) == {"#0000ff"}
        assert layouts == []  # the swap repainted the picture's cells, nothing was laid out again

        preview.show(wide)  # 16:1 in a 40×12 box: full width, a few rows, not squashed to fill it
        await wait_for(pilot, lambda: preview.drawn == wide, 10)
        await pilot.pause()
        rows = [line for line in screen_text(app).splitlines() if "▀" in line]
        assert len(rows) == 1 and 30 <= rows[0].count("▀") <= 40

        (tmp_path / "gone.png").write_bytes(b"not a picture")
        preview.show(tmp_path / "gone.png")
        await wait_for(pilot, lambda: "cannot show gone.png" in screen_text(app), 10)
        assert "▀" not in screen_text(app)
        preview.show(red)  # and back to a picture after the note
        await wait_for(pilot, lambda: preview.drawn == red, 10)
        await pilot.pause()
        assert colours(app) == {"#ff0000"}
