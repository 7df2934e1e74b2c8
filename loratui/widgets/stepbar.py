"""The one-line bar at the top of every step: where you are in the wizard."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from loratui.widgets.path_text import path_tail

STEPS = (("folder", "Folder"), ("captions", "Captions"), ("preset", "Preset"), ("run", "Train"))


class StepBar(Widget):
    """``1 Folder › 2 Captions › 3 Preset › 4 Train`` with the current step highlighted."""

    DEFAULT_CSS = """
    StepBar { height: 1; width: 1fr; background: $panel; color: $text-muted; }
    """

    def __init__(self, current: str, detail: str = "") -> None:
        super().__init__()
        self.current = current
        self.detail = detail

    def set_detail(self, detail: str) -> None:
        self.detail = detail
        self.refresh()

    def render(self) -> Text:
        text = Text(" loratui  ", style="bold")
        for n, (key, label) in enumerate(STEPS, 1):
            if n > 1:
                text.append(" › ", style="dim")
            style = "bold reverse" if key == self.current else ""
            text.append(f" {n} {label} ", style=style)
        if self.detail:
            room = max(0, self.size.width - text.cell_len - 2)
            detail = path_tail(self.detail, room)  # a folder's own name, not a word cut in two
            text.append("  " + detail, style="italic")
        return text
