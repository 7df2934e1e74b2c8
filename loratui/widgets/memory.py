"""The memory meter: used and peak against the total, GPU memory or process RAM."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from loratui.progress import human_bytes


class MemoryMeter(Widget):
    """``GPU ████████····│····  5.1/24.0 GiB · │ peak 6.3 GiB``: the bar is used, the tick is the peak."""

    DEFAULT_CSS = """
    MemoryMeter { height: 1; width: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.used = self.peak = self.total = 0
        self.kind = ""

    def show(self, used: int, peak: int, total: int, kind: str) -> None:
        if (used, peak, total, kind) != (self.used, self.peak, self.total, self.kind):
            self.used, self.peak, self.total, self.kind = used, peak, total, kind
            self.refresh()

    def render(self) -> Text:
        if not self.total:
            return Text("memory: no reading yet", style="dim")
        label = "GPU" if self.kind == "cuda" else "RAM"
        # the tick is named where it is explained: "│ peak" (it stood unlabelled in the bar)
        figures = f" {human_bytes(self.used)}/{human_bytes(self.total)} · │ peak {human_bytes(self.peak)}"
        width = max(4, self.size.width - len(label) - len(figures) - 2)
        used_cells = min(width, round(width * self.used / self.total))
        peak_cell = min(width - 1, round(width * self.peak / self.total))
        share = self.peak / self.total
        colour = "red" if share > 0.9 else "yellow" if share > 0.75 else "green"
        text = Text(f"{label} ", style="bold")
        for i in range(width):
            if i < used_cells:
                text.append("█", style=colour)
            elif i == peak_cell:
                text.append("│", style="bold")
            else:
                text.append("·", style="dim")
        text.append(figures)
        return text
