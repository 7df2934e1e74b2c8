"""A one-line choice among a few named values, for the keyboard: ←/→ (or Enter, Space) step
through them, Backspace/Delete go back to the default. Always one row high, so choosing never
moves the form around it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Choice(Widget, can_focus=True):
    """One of ``options``; ``value`` None means "not chosen": the default (shown dim) applies."""

    DEFAULT_CSS = """
    Choice { height: 1; width: 1fr; }
    Choice:focus { background: $accent 30%; }
    """
    BINDINGS = [
        Binding("left", "step(-1)", "Previous", id="choice.previous", show=False),
        Binding("right,enter,space", "step(1)", "Next", id="choice.next", show=False),
        Binding("backspace,delete", "reset", "Default", id="choice.default", show=False),
    ]

    value: reactive[str | None] = reactive(None)
    default: reactive[str] = reactive("")

    class Changed(Message):
        """The user stepped to another value (None: back to the default)."""

        def __init__(self, choice: Choice, value: str | None) -> None:
            super().__init__()
            self.choice = choice
            self.value = value

        @property
        def control(self) -> Choice:
            return self.choice

    def __init__(self, options: Sequence[str], value: str | None = None, default: str = "",
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.options = list(options)
        self.set_reactive(Choice.value, value if value in self.options else None)
        self.set_reactive(Choice.default, default)

    @property
    def shown(self) -> str:
        """The value in effect: the chosen one, else the default."""
        return self.value if self.value is not None else self.default

    def render(self) -> Text:
        shown = self.shown
        text = Text.assemble("◀ ", (shown or "?", "bold" if self.value is not None else ""), " ▶")
        if self.value is None:
            text.append("  default", "dim")
        if self.has_focus and shown in self.options:
            text.append(f"  {self.options.index(shown) + 1}/{len(self.options)} · ←/→", "dim")
        return text

    def _on_focus(self) -> None:
        self.refresh()

    def _on_blur(self) -> None:
        self.refresh()

    def action_step(self, delta: int) -> None:
        current = self.options.index(self.shown) if self.shown in self.options else -1
        self.value = self.options[(current + delta) % len(self.options)]
        self.post_message(self.Changed(self, self.value))

    def action_reset(self) -> None:
        if self.value is not None:
            self.value = None
            self.post_message(self.Changed(self, None))
