"""The samples gallery of the run view: every sample image the run saved, newest first, with
the highlighted one's picture under the list; Enter opens it large (the run view's viewer), so
a user over SSH sees how the samples evolve without copying files off the machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from loratui.widgets.preview import ImagePreview


def sample_label(step: int, path: str) -> str:
    """One line of the list: the step, then the file's name (its folder is the run's)."""
    return f"step {step:>5}  {Path(path).name}"


class SampleGallery(Vertical):
    """``show(samples)`` with ``(step, path)`` oldest first; posts ``Opened`` on Enter."""

    DEFAULT_CSS = """
    SampleGallery { height: 1fr; }
    SampleGallery #gallery-title { height: 1; color: $text-muted; }
    SampleGallery OptionList, SampleGallery OptionList:focus { height: auto; max-height: 4; border: none;
                                                                padding: 0; }
    SampleGallery ImagePreview { height: 1fr; }
    """

    class Opened(Message):
        """Enter on a sample: ``index`` in the samples, oldest first."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.samples: tuple[tuple[int, str], ...] = ()

    def compose(self) -> ComposeResult:
        yield Label("no sample yet", id="gallery-title")
        yield OptionList(id="gallery-list")
        yield ImagePreview(id="sample")

    @property
    def highlighted(self) -> int | None:
        """The highlighted sample's index (oldest first), or None."""
        option = self.query_one(OptionList).highlighted_option
        return None if option is None or option.id is None else int(option.id)

    def show(self, samples: Sequence[tuple[int, str]]) -> None:
        samples = tuple(samples)
        if samples == self.samples:
            return
        options = self.query_one(OptionList)
        was = self.highlighted
        on_newest = was is None or was == len(self.samples) - 1
        self.samples = samples
        options.clear_options()
        # newest first: the list's top is what just arrived
        options.add_options([Option(sample_label(step, path), id=str(n))
                             for n, (step, path) in reversed(list(enumerate(samples)))])
        keep = len(samples) - 1 if on_newest else was
        options.highlighted = len(samples) - 1 - keep if samples else None
        count = len(samples)
        self.query_one("#gallery-title", Label).update(
            f"samples ({count}) · ↑/↓ · Enter: open" if count > 1 else "sample · Enter: open" if count else
            "no sample yet")
        self._preview()

    def _preview(self) -> None:
        index = self.highlighted
        if index is not None and 0 <= index < len(self.samples):
            self.query_one(ImagePreview).show(Path(self.samples[index][1]))

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._preview()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Opened(int(event.option.id)))
