"""The loss chart: a sparkline of the smoothed loss with its current and minimum values."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


class LossChart(Vertical):
    """Raw loss is noise at diffusion scale; the line shows its moving average."""

    DEFAULT_CSS = """
    LossChart { height: auto; }
    LossChart > Label { width: 1fr; }
    LossChart > Sparkline { height: 3; margin: 0 0; }
    """

    def compose(self) -> ComposeResult:
        yield Label("loss: waiting for the first step", id="loss-values")
        yield Sparkline([], summary_function=fmean, id="loss-line")

    def show(self, raw: float | None, smoothed: Sequence[float]) -> None:
        """Draw the last points of the smoothed loss (``raw`` is the latest step's loss)."""
        label = self.query_one("#loss-values", Label)
        if raw is None or not smoothed:
            label.update("loss: waiting for the first step")
            self.query_one(Sparkline).data = []
            return
        label.update(
            f"loss [b]{raw:.4f}[/]  smoothed [b]{smoothed[-1]:.4f}[/]  min [b]{min(smoothed):.4f}[/]"
        )
        self.query_one(Sparkline).data = list(smoothed)
