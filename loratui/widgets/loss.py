"""The loss chart: a sparkline of the smoothed loss with its scale beside it (the highest and
lowest value drawn) and the steps it spans under it, and the current and minimum values above."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

AXIS_WIDTH = 8


class LossChart(Vertical):
    """Raw loss is noise at diffusion scale; the line shows its moving average."""

    DEFAULT_CSS = """
    LossChart { height: auto; }
    LossChart > Label { width: 1fr; }
    LossChart #loss-plot { height: 3; }
    LossChart #loss-axis { width: 8; height: 3; color: $text-muted; text-align: right; padding-right: 1; }
    LossChart Sparkline { height: 3; width: 1fr; margin: 0 0; }
    LossChart #loss-steps { height: 1; width: 1fr; color: $text-muted; padding-left: 8; }
    """

    def compose(self) -> ComposeResult:
        yield Label("loss: waiting for the first step", id="loss-values")
        with Horizontal(id="loss-plot"):
            yield Static("", id="loss-axis")
            yield Sparkline([], summary_function=fmean, id="loss-line")
        yield Label("", id="loss-steps")

    def show(self, raw: float | None, smoothed: Sequence[float], step: int = 0) -> None:
        """Draw the smoothed loss (its last points; ``step`` is the latest one's step)."""
        label = self.query_one("#loss-values", Label)
        axis = self.query_one("#loss-axis", Static)
        steps = self.query_one("#loss-steps", Label)
        if raw is None or not smoothed:
            label.update("loss: waiting for the first step")
            self.query_one(Sparkline).data = []
            axis.update("")
            steps.update("")
            return
        label.update(
            f"loss [b]{raw:.4f}[/]  smoothed [b]{smoothed[-1]:.4f}[/]  min [b]{min(smoothed):.4f}[/]"
        )
        if len(smoothed) < 2:  # one point is no line: a sparkline drew it as a solid block
            self.query_one(Sparkline).data = []
            axis.update("")
            steps.update("[dim]the line starts at the second step[/]")
            return
        self.query_one(Sparkline).data = list(smoothed)
        axis.update(f"{max(smoothed):.3g}\n\n{min(smoothed):.3g}")
        last = step or len(smoothed)
        first = max(1, last - len(smoothed) + 1)
        steps.update(f"step {first} … {last}")
