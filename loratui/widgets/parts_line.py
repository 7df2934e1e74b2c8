"""A line of ``·``-separated parts that wraps only between parts.

Rich and Textual wrap at any white space, and both count a no-break space as white space: the
run view's status broke between "ETA" and its time ("ETA / 0:46 after it") although a no-break
space joined them. Here each part is kept whole on its line; only a part wider than the line
itself is wrapped.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

SEPARATOR = " · "


class PartsLine:
    """A Rich renderable of ``parts`` (console markup) joined by `` · ``, wrapped between parts
    to the width it is drawn at."""

    def __init__(self, parts: list[str], separator: str = SEPARATOR) -> None:
        self.parts = [Text.from_markup(p) for p in parts]
        self.separator = separator

    def lines(self, width: int) -> list[Text]:
        """The rows at ``width`` cells."""
        rows: list[Text] = []
        row = Text()
        for part in self.parts:
            if row.cell_len and row.cell_len + len(self.separator) + part.cell_len > width:
                rows.append(row)
                row = Text()
            if row.cell_len:
                row.append(self.separator)
            row.append_text(part)
        rows.append(row)
        return rows

    def plain(self) -> str:
        """All the parts on one line, as plain text."""
        return self.separator.join(p.plain for p in self.parts)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for row in self.lines(options.max_width):
            row.no_wrap = row.cell_len <= options.max_width  # a lone part wider than the line folds
            yield row
