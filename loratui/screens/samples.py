"""One sample image of a run, as large as the terminal allows, with its step and full path;
←/→ page through the run's samples in order (how the LoRA learned, step by step)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from loratui.widgets.preview import ImagePreview


class SampleViewer(ModalScreen[None]):
    """The samples ``(step, path)``, oldest first, opened at ``index``."""

    DEFAULT_CSS = """
    SampleViewer { align: center middle; background: $background 60%; }
    SampleViewer > Vertical { width: 100%; height: 100%; border: thick $primary; background: $surface;
                              padding: 0 1; }
    SampleViewer #viewer-title { text-style: bold; height: 1; }
    SampleViewer Label { width: 100%; }
    SampleViewer #viewer-path { height: auto; color: $text-muted; }
    SampleViewer ImagePreview { height: 1fr; }
    SampleViewer #viewer-keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("left,k,h", "move(-1)", "Previous", id="samples.previous"),
        Binding("right,j,l", "move(1)", "Next", id="samples.next"),
        Binding("o", "copy_path", "Copy path", id="samples.copy"),
        Binding("escape,q,enter", "close", "Close", id="samples.close"),
    ]

    def __init__(self, samples: Sequence[tuple[int, str]], index: int) -> None:
        super().__init__()
        self.samples = list(samples)
        self.index = max(0, min(index, len(self.samples) - 1))

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("", id="viewer-title")
            yield Label("", id="viewer-path")
            yield ImagePreview(id="viewer-image")
            yield Label("←/→ previous/next · o copy the path · Esc close", id="viewer-keys")

    def on_mount(self) -> None:
        self._show()

    @property
    def path(self) -> Path:
        return Path(self.samples[self.index][1])

    def _show(self) -> None:
        step = self.samples[self.index][0]
        self.query_one("#viewer-title", Label).update(
            f"sample {self.index + 1} of {len(self.samples)} · step {step}")
        # folded, not cut: a path is one long word
        self.query_one("#viewer-path", Label).update(Text(str(self.path), overflow="fold"))
        self.query_one(ImagePreview).show(self.path)

    def action_move(self, delta: int) -> None:
        index = max(0, min(len(self.samples) - 1, self.index + delta))
        if index != self.index:
            self.index = index
            self._show()

    def action_copy_path(self) -> None:
        self.app.copy_to_clipboard(str(self.path))
        self.notify("copied to the clipboard where the terminal allows it", title="Sample path")

    def action_close(self) -> None:
        self.dismiss(None)
