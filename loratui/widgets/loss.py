"""The loss chart: the smoothed training loss as a line and the validation losses as ◆ marks on
the same scale (its highest and lowest value beside it, the steps it spans under it), with the
current values and the legend above."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from loratui.widgets.plot import LINE_STYLE, MARK, MARK_STYLE, LinePlot

AXIS_WIDTH = 8
PLOT_ROWS = 4


class LossChart(Vertical):
    """Raw loss is noise at diffusion scale; the line shows its moving average. A training loss
    that rises while the validation loss falls (or the reverse) is only readable side by side."""

    DEFAULT_CSS = f"""
    LossChart {{ height: auto; }}
    LossChart > Label {{ width: 1fr; }}
    LossChart #loss-plot {{ height: {PLOT_ROWS}; }}
    LossChart #loss-axis {{ width: {AXIS_WIDTH}; height: {PLOT_ROWS}; color: $text-muted; text-align: right;
                           padding-right: 1; }}
    LossChart LinePlot {{ height: {PLOT_ROWS}; width: 1fr; }}
    LossChart #loss-steps {{ height: 1; width: 1fr; color: $text-muted; padding-left: {AXIS_WIDTH}; }}
    """

    def compose(self) -> ComposeResult:
        yield Label("loss: waiting for the first step", id="loss-values")
        with Horizontal(id="loss-plot"):
            yield Static("", id="loss-axis")
            yield LinePlot(id="loss-line")
        yield Label("", id="loss-steps")

    @property
    def plot(self) -> LinePlot:
        return self.query_one(LinePlot)

    def show(self, raw: float | None, smoothed: Sequence[float], step: int = 0,
             validation: Sequence[tuple[int, float]] = (), held_out: bool = False) -> None:
        """Draw the smoothed loss (its last points; ``step`` is the latest one's step) and the
        validation losses ``(step, loss)`` that fall in the steps it spans."""
        label = self.query_one("#loss-values", Label)
        axis = self.query_one("#loss-axis", Static)
        steps = self.query_one("#loss-steps", Label)
        if raw is None or not smoothed:
            label.update("loss: waiting for the first step")
            self.plot.show((), 0, 0)
            axis.update("")
            steps.update("")
            return
        text = f"[{LINE_STYLE}]loss[/] [b]{raw:.4f}[/]  smoothed [b]{smoothed[-1]:.4f}[/]  min [b]{min(smoothed):.4f}[/]"
        if validation:
            # not held out: measured on training images (the run had none to spare), say so
            text += f"  [{MARK_STYLE}]{MARK} val{'' if held_out else ' (train imgs)'}[/] [b]{validation[-1][1]:.4f}[/]"
        label.update(text)
        if len(smoothed) < 2:  # one point is no line
            self.plot.show((), 0, 0)
            axis.update("")
            steps.update("[dim]the line starts at the second step[/]")
            return
        last = step or len(smoothed)
        first = max(1, last - len(smoothed) + 1)
        marks = [(s, v) for s, v in validation if first <= s <= last]
        plot = self.plot
        plot.show(smoothed, first, last, marks)
        axis.update(f"{plot.hi:.3g}" + "\n" * (PLOT_ROWS - 1) + f"{plot.lo:.3g}")
        steps.update(f"step {first} … {last}")
