"""A line chart in braille dots with marks on it: the smoothed training loss as a line, the
validation losses as ◆ on the same scale, so the two can be read against each other in a few
terminal rows (a sparkline has no room for a second series, and its blocks hid any mark).

``plot_rows`` is the drawing, a pure function (tested without a terminal); ``LinePlot`` is the
widget that draws it at its size.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

# a braille cell is 2 dots wide and 4 high; the bit of each dot, by (x, y) in the cell
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
BRAILLE = 0x2800
LINE_STYLE = "cyan"
MARK_STYLE = "bold magenta"
MARK = "◆"


def value_range(line: Sequence[float], marks: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """The lowest and highest value the chart must hold (both series), never an empty span."""
    values = list(line) + [v for _s, v in marks]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
    return lo, hi


def plot_rows(
    line: Sequence[float],
    first_step: int,
    last_step: int,
    marks: Sequence[tuple[int, float]],
    width: int,
    height: int,
    lo: float,
    hi: float,
) -> list[Text]:
    """``height`` rows of ``width`` cells: ``line`` (values at evenly spaced steps from
    ``first_step`` to ``last_step``) as connected braille dots, each ``(step, value)`` of
    ``marks`` in that span as a ◆ over it."""
    width, height = max(1, width), max(1, height)
    dots_x, dots_y = width * 2, height * 4
    cells = [[0] * width for _ in range(height)]

    def y_dot(value: float) -> int:
        share = (hi - value) / (hi - lo) if hi > lo else 0.5
        return min(dots_y - 1, max(0, round(share * (dots_y - 1))))

    def put(x: int, y: int) -> None:
        cells[y // 4][x // 2] |= DOT_BITS[x % 2][y % 4]

    n = len(line)
    if n:
        previous: int | None = None
        for x in range(dots_x):
            # the points that fall in this dot column (at least the nearest one: a short run is
            # stretched across the width), averaged
            start = x * n // dots_x
            end = max(start + 1, (x + 1) * n // dots_x)
            bucket = line[start:end]
            y = y_dot(sum(bucket) / len(bucket))
            if previous is None:
                put(x, y)
            else:  # joined to the column before, so steep falls read as one line
                step = 1 if y >= previous else -1
                for yy in range(previous + step if y != previous else y, y + step, step):
                    put(x, yy)
            previous = y
    rows = [
        [(chr(BRAILLE + bits) if bits else " ", LINE_STYLE if bits else "") for bits in row] for row in cells
    ]
    span = max(1, last_step - first_step)
    for step, value in marks:
        if not first_step <= step <= last_step:
            continue
        x = round((step - first_step) / span * (dots_x - 1)) if last_step > first_step else dots_x - 1
        rows[y_dot(value) // 4][x // 2] = (MARK, MARK_STYLE)
    out = []
    for row in rows:
        text = Text()
        for char, style in row:
            text.append(char, style=style)
        out.append(text)
    return out


class LinePlot(Widget):
    """The chart at this widget's size; ``show`` gives it the data (and its value range)."""

    DEFAULT_CSS = """
    LinePlot { height: 4; width: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.line: tuple[float, ...] = ()
        self.marks: tuple[tuple[int, float], ...] = ()
        self.first_step = self.last_step = 0
        self.lo, self.hi = 0.0, 1.0

    def show(self, line: Sequence[float], first_step: int, last_step: int,
             marks: Sequence[tuple[int, float]] = ()) -> None:
        data = (tuple(line), first_step, last_step, tuple(marks))
        if data == (self.line, self.first_step, self.last_step, self.marks):
            return
        self.line, self.first_step, self.last_step, self.marks = data
        self.lo, self.hi = value_range(self.line, self.marks) if self.line or self.marks else (0.0, 1.0)
        self.refresh()

    def render(self) -> Text:
        if not self.line:
            return Text("")
        rows = plot_rows(self.line, self.first_step, self.last_step, self.marks,
                         self.size.width, self.size.height, self.lo, self.hi)
        return Text("\n").join(rows)
