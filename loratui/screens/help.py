"""The help screen (?): what this step is for, and every key it has."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Markdown, Static

from loratui.screens.dialogs import Dialog

GENERAL = """\
**Everywhere:** `ctrl+n` next step · `escape` back · `?` this help · `ctrl+p` command palette ·
`ctrl+q` quit. A run keeps going when you quit or your SSH link drops:
`loratui attach RUN_DIR` brings the live view back, `loratui runs` lists runs.
"""


class HelpScreen(Dialog[None]):
    """Lists the keys of the screen below it, with a paragraph on what that screen does."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; background: $background 60%; }
    HelpScreen > Vertical { width: 76; max-width: 100%; height: 90%; border: thick $primary;
                            background: $surface; padding: 0 1; }
    HelpScreen Markdown { margin: 0; padding: 0; }
    HelpScreen .title { text-style: bold; }
    """
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, target: Screen) -> None:
        super().__init__()
        self.target = target

    def compose(self) -> ComposeResult:
        from rich.table import Table

        about = getattr(self.target, "HELP", "") or ""
        keys = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        seen = set()
        # loratui's keys (they have ids) first, this step's before the app's; Textual's after.
        ranked = sorted(
            self.target.active_bindings.values(),
            key=lambda a: (a.binding.id is None, a.node is not self.target),
        )
        for active in ranked:
            binding = active.binding
            if not binding.description or (binding.action, binding.description) in seen:
                continue
            seen.add((binding.action, binding.description))
            keys.add_row(self.app.get_key_display(binding), binding.description)
        with Vertical():
            yield Label(f"Help: {self.target.title or 'loratui'}", classes="title")
            with VerticalScroll():
                yield Markdown(about)
                yield Static(keys)
                yield Markdown(GENERAL)

    def action_close(self) -> None:
        self.dismiss(None)
