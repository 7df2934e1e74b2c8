"""The image preview: textual-image draws Kitty or Sixel graphics where the terminal has them,
and half-block colour cells everywhere else (tmux, most SSH terminals, tests).

textual-image asks the terminal what it can draw when it is first imported, which must happen
before Textual takes the terminal over: ``prepare_graphics()`` does that, and the CLI calls it
before the app starts. Decoding happens in a thread worker, so a big JPEG never blocks a key.

Colour cells are made in that worker too, as ready lines for a widget of fixed size
(``CellPicture``): one picture replaces another by repainting its cells, with no layout pass and
no per-pixel work on the UI thread, which a key pressed meanwhile would wait behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Center, Middle
from textual.geometry import Size
from textual.strip import Strip
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label
from textual.worker import get_current_worker

THUMBNAIL_PX = 384  # plenty for any terminal cell grid; keeps every decode quick


def prepare_graphics() -> type[Widget]:
    """The image widget class for this terminal (import textual-image before the app starts)."""
    from loratui.widgets import graphics_query

    graphics_query.wait()  # the terminal's answer, asked in a thread since start-up
    from textual_image import renderable
    from textual_image.widget import HalfcellImage, Image

    # Unicode (not a terminal) and half cells both end up as colour cells: choose half cells,
    # the sharper of the two, so tests and pipes see what a tmux user sees.
    if renderable.Image in (renderable.TGPImage, renderable.SixelImage):
        return Image
    return HalfcellImage


def draws_pixels() -> bool:
    """True where the terminal draws real pixels (Kitty graphics or Sixel), not colour cells."""
    from textual_image.widget import HalfcellImage

    return prepare_graphics() is not HalfcellImage


def half_cells(image: Any, size: Size) -> tuple[list[Strip], int, int]:
    """``image`` in half-cell colour blocks fitted into a ``size`` area, its aspect kept: the
    lines, and the column and row the first line starts at (centred). Runs in any thread."""
    import io

    from rich.console import Console
    from rich.measure import Measurement
    from textual_image.renderable.halfcell import Image as HalfcellRenderable

    width, height = size
    if width <= 0 or height <= 0:
        return [], 0, 0
    console = Console(file=io.StringIO(), width=width, height=height, color_system="truecolor",
                      force_terminal=True, legacy_windows=False)
    unbounded = console.options.update(width=10 * width + 1000)

    def natural_width(rows: int) -> int:
        return Measurement.get(console, unbounded, HalfcellRenderable(image, "auto", rows)).maximum

    rows = height
    while rows > 1 and natural_width(rows) > width:  # too wide at full height: shorter, not squashed
        rows -= 1
    cells = max(1, min(width, natural_width(rows)))
    picture = HalfcellRenderable(image, "auto", rows)
    lines = console.render_lines(picture, console.options.update(width=cells, height=rows), pad=True)
    return [Strip(line, cells) for line in lines[:rows]], (width - cells) // 2, (height - rows) // 2


class CellPicture(Widget):
    """Ready lines of colour cells, drawn as they are: a fixed-size widget whose new picture
    repaints its own cells and nothing else."""

    DEFAULT_CSS = "CellPicture { width: 1fr; height: 1fr; }"

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Strip] = []
        self._left = self._top = 0
        self._drawn: tuple[Any, list[Strip]] = (None, [])  # (background style, the lines padded in it)

    def set_lines(self, lines: list[Strip], left: int, top: int) -> None:
        """Draw ``lines`` from column ``left`` and row ``top`` (the background elsewhere)."""
        self._lines, self._left, self._top = lines, left, top
        self._drawn = (None, [])
        self.refresh()

    def render_line(self, y: int) -> Strip:
        style = self.rich_style  # the background around the picture, as the screen's
        if self._drawn[0] != style:
            width = self.size.width
            self._drawn = (style, [
                Strip.join([Strip.blank(self._left, style), line,
                            Strip.blank(max(0, width - self._left - line.cell_length), style)])
                for line in self._lines
            ])
        row = y - self._top
        if 0 <= row < len(self._drawn[1]):
            return self._drawn[1][row]
        return Strip.blank(self.size.width, style)


def load_thumbnail(path: Path) -> Any:
    """The image at ``path`` decoded small and in RGB (JPEGs decode straight to a small size)."""
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        im.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))
        im = im.convert("RGB")
        im.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        return im


class ImagePreview(Widget):
    """One image, centred, scaled to fit; ``show(path)`` swaps it without blocking the UI."""

    DEFAULT_CSS = """
    ImagePreview { height: 1fr; width: 1fr; }
    ImagePreview Center, ImagePreview Middle { height: 1fr; width: 1fr; }
    ImagePreview .picture { width: auto; height: 1fr; max-width: 100%; }
    ImagePreview Label { color: $text-muted; }
    ImagePreview CellPicture { display: none; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path: Path | None = None
        self.drawn: Path | None = None  # the image on screen now (None: a note, or still loading)
        self._picture: Widget | None = None  # the graphics widget, where the terminal draws pixels
        self._cells: bool | None = None  # colour cells (made in the worker) or terminal graphics
        self._image: Any = None  # the decoded thumbnail, kept to redraw at a new size
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield CellPicture()
        with Middle():
            with Center():
                yield Label("no image", id="preview-note")

    def show(self, path: Path | None, delay: float = 0.0) -> None:
        """Show the image at ``path`` (None: show nothing), after ``delay`` seconds: while a key
        is held down the text follows at once and the picture once the cursor rests."""
        if path == self.path:
            return
        self.path = path
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if path is None:
            self._set(None, None, "no image")
            return
        if delay:
            self._timer = self.set_timer(delay, lambda: self._start(path))
        else:
            self._start(path)

    def _start(self, path: Path) -> None:
        self._timer = None
        if self._cells is None:
            self._cells = not draws_pixels()
        if path == self.path:
            size = self.size if self._cells else None
            self.run_worker(
                lambda: self._load(path, size), thread=True, exclusive=True, group="preview", exit_on_error=False
            )

    def on_resize(self) -> None:
        if not self._cells or self.path is None or self._timer is not None:
            return  # nothing drawn in cells, or the picture is still waiting for the keys to rest
        if self.drawn == self.path and self._image is not None:
            image, path, size = self._image, self.path, self.size
            self.run_worker(lambda: self._draw(image, path, size), thread=True, exclusive=True,
                            group="preview", exit_on_error=False)
        else:  # still loading, at the old size: load again for this one
            self._start(self.path)

    def _load(self, path: Path, size: Size | None) -> None:
        try:
            image = load_thumbnail(path)
        except Exception as exc:  # any unreadable file: say so in place of the picture
            image, note = None, f"cannot show {path.name}: {type(exc).__name__}"
        else:
            note = ""
        if get_current_worker().is_cancelled or path != self.path:
            return
        if image is not None and size is not None:
            self._draw(image, path, size)
        else:
            self.app.call_from_thread(self._set, path if image is not None else None, image, note)

    def _draw(self, image: Any, path: Path, size: Size) -> None:
        """Colour cells for ``image`` at ``size``, made here in the worker."""
        lines, left, top = half_cells(image, size)
        if get_current_worker().is_cancelled or path != self.path:
            return
        self.app.call_from_thread(self._set_cells, path, image, lines, left, top)

    def _set_cells(self, path: Path, image: Any, lines: list[Strip], left: int, top: int) -> None:
        if path != self.path:
            return
        picture = self.query_one(CellPicture)
        picture.set_lines(lines, left, top)
        if not picture.display:  # from a note to a picture: the one layout pass, not one per image
            picture.display = True
            self.query_one(Middle).display = False
        self._image, self.drawn = image, path

    def _set(self, path: Path | None, image: Any, note: str) -> None:
        label = self.query_one("#preview-note", Label)
        self._image, self.drawn = image, path
        if image is None:
            self.query_one(CellPicture).display = False
            self.query_one(Middle).display = True
            if self._picture is not None:
                self._picture.display = False
            label.update(note)
            label.display = True
            return
        label.display = False
        if self._picture is None:
            self._picture = prepare_graphics()(image, classes="picture")
            self.query_one(Center).mount(self._picture)
        else:
            self._picture.image = image  # type: ignore[attr-defined]
            self._picture.display = True
