"""Paths shown in narrow places without cutting a name in two.

A path is read from its end (the folder or file name is what matters), so a short box shows
``…/loratui/demo-dataset``, not ``oot/.cache/loratui/demo-data``; and a long path that must be
shown whole wraps after a ``/``, not in the middle of ``demo.safetensors`` (issue 13).
"""

from __future__ import annotations

import os
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from loratui.widgets.ordered_keys import Field

ELLIPSIS = "…"


def _pieces(path: str) -> list[str]:
    """``path`` cut after each separator: ``/a/b/c.txt`` → ``["/", "a/", "b/", "c.txt"]``."""
    pieces: list[str] = []
    current = ""
    for char in path:
        current += char
        if char == "/" or char == os.sep:
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def path_tail(path: str, width: int) -> str:
    """``path`` in at most ``width`` cells, keeping its end: whole trailing names after ``…/``
    (``…/loratui/demo-dataset``); only a last name too long for the width is cut, from its
    start (its end holds the extension)."""
    if width <= 0:
        return ""
    if cell_len(path) <= width:
        return path
    shown = ""
    pieces = _pieces(path)
    for piece in reversed(pieces[1:]):  # the first piece is never after a separator
        if cell_len(piece + shown) > width - 2:
            break
        shown = piece + shown
    if shown:
        return ELLIPSIS + "/" + shown
    name = pieces[-1]
    while name and cell_len(ELLIPSIS + name) > width:
        name = name[1:]
    return ELLIPSIS + name


def wrap_pieces(pieces: list[tuple[str, str]], width: int) -> list[str]:
    """``pieces`` — (joiner, text) pairs, each text kept whole, its joiner put before it only
    where it continues a line — in lines of at most ``width`` cells. A text wider than a line
    is the only thing cut."""
    width = max(1, width)
    lines: list[str] = []
    line = ""
    for joiner, piece in pieces:
        if line and cell_len(line + joiner + piece) <= width:
            line += joiner + piece
            continue
        if line:
            lines.append(line)
            line = ""
        while cell_len(piece) > width:  # one name wider than the line: no better place to cut
            lines.append(piece[:width])
            piece = piece[width:]
        line = piece
    if line or not lines:
        lines.append(line)
    return lines


def wrap_path(path: str, width: int) -> list[str]:
    """``path`` in lines of at most ``width`` cells, broken after separators (a name longer
    than a line is the only thing cut)."""
    return wrap_pieces([("", piece) for piece in _pieces(path)], width)


class PathText:
    """A Rich renderable: ``path`` (after ``indent`` spaces) wrapped at its separators to the
    width it is drawn at, so it stays right when the terminal is resized; with ``tail``, one line
    that keeps the path's end. ``name_style`` sets the last name apart (the folder's own).
    ``before`` and ``after`` make it a command (``loratui sample`` PATH ``--prompt …``): each is
    kept whole, on the path's line where it fits, else on a line of its own."""

    def __init__(self, path: str, indent: int = 0, style: str | Style = "", name_style: str | Style = "",
                 tail: bool = False, before: str = "", after: str = "") -> None:
        self.path = path
        self.indent = indent
        self.style = style
        self.name_style = name_style
        self.tail = tail
        self.before = before
        self.after = after

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        pad = " " * min(self.indent, max(0, options.max_width - 8))
        width = options.max_width - len(pad)
        if self.tail:
            lines = [path_tail(self.path, width)]
        else:
            pieces = [("", piece) for piece in _pieces(self.path)]
            if pieces and self.before:
                pieces[0] = (" ", pieces[0][1])
            lines = wrap_pieces(([("", self.before)] if self.before else []) + pieces
                                + ([(" ", self.after)] if self.after else []), width)
        name = _pieces(self.path)[-1] if self.path else ""
        for n, line in enumerate(lines):
            text = Text(pad + line, style=self.style, no_wrap=True, overflow="crop", end="\n")
            if self.name_style and n == len(lines) - 1 and name and line.endswith(name):
                text.stylize(self.name_style, len(text) - len(name))
            yield text


class PathField(Field):
    """A path field that, when it has not the focus and the path is longer than the box, shows
    the path's end (``…/loratui/demo-dataset``); with the focus it is the ordinary field."""

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y != 0 or self.has_focus or not self.value or cell_len(self.value) <= width:
            return super().render_line(y)
        console = self.app.console
        text = Text(path_tail(self.value, width), no_wrap=True, overflow="crop", end="")
        segments: list[Segment] = list(console.render(text, self.app.console_options.update_width(width + 1)))
        return Strip(segments).crop(0, width + 1).extend_cell_length(width + 1).apply_style(self.rich_style)

    def on_focus(self, _event: Any) -> None:
        self.refresh()

    def on_blur(self, _event: Any) -> None:
        self.refresh()
