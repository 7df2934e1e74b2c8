"""The image preview: textual-image draws Kitty or Sixel graphics where the terminal has them,
and half-block colour cells everywhere else (tmux, most SSH terminals, tests).

textual-image asks the terminal what it can draw when it is first imported, which must happen
before Textual takes the terminal over: ``prepare_graphics()`` does that, and the CLI calls it
before the app starts. Decoding happens in a thread worker, so a big JPEG never blocks a key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Center, Middle
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
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.path: Path | None = None
        self._picture: Widget | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
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
            self._set(None, "no image")
            return
        if delay:
            self._timer = self.set_timer(delay, lambda: self._start(path))
        else:
            self._start(path)

    def _start(self, path: Path) -> None:
        self._timer = None
        if path == self.path:
            self.run_worker(
                lambda: self._load(path), thread=True, exclusive=True, group="preview", exit_on_error=False
            )

    def _load(self, path: Path) -> None:
        try:
            image = load_thumbnail(path)
        except Exception as exc:  # any unreadable file: say so in place of the picture
            image, note = None, f"cannot show {path.name}: {type(exc).__name__}"
        else:
            note = ""
        if get_current_worker().is_cancelled or path != self.path:
            return
        self.app.call_from_thread(self._set, image, note)

    def _set(self, image: Any, note: str) -> None:
        label = self.query_one("#preview-note", Label)
        if image is None:
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
