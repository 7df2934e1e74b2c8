"""Small modal dialogs: confirm, ask for a line of text, pick one of a few choices.

A dialog never cuts off its own words: every line wraps inside it, the box is as wide as its
longest line needs (within 40 to 76 columns, never wider than the terminal), and what it talks
about (the warnings before "Continue?") is listed inside it, not behind it. Each dialog has a
footer of its own keys: the step's footer below it listed keys (`^n Next`) that do nothing there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, ScreenResultType
from textual.widgets import Button, Footer, Input, Label, OptionList
from textual.widgets.option_list import Option

from loratui.widgets.ordered_keys import Field

DIALOG_CSS = """
{name} {{ align: center middle; background: $background 60%; }}
{name} > Vertical {{
    width: 64; max-width: 100%; height: auto; max-height: 100%;
    border: thick $primary; background: $surface; padding: 1 2;
}}
{name} Label {{ width: 100%; }}
{name} .title {{ text-style: bold; margin-bottom: 1; }}
{name} .items {{ height: auto; max-height: 8; margin-top: 1; }}
{name} .buttons {{ height: auto; margin-top: 1; align-horizontal: right; }}
{name} .buttons Button {{ margin-left: 2; }}
{name} .error {{ color: $error; height: auto; }}
"""
MIN_WIDTH, MAX_WIDTH = 40, 76
FRAME = 8  # the thick border (2) and the padding (4), and a column each side to breathe


def fit_width(*texts: str, buttons: Sequence[str] = ()) -> int:
    """The dialog width its words need: the longest line (or the buttons' row), within bounds.

    Longer lines wrap; the terminal's own width caps it (``max-width: 100%``)."""
    longest = max((len(line) for text in texts for line in text.splitlines()), default=0)
    row = sum(max(16, len(label) + 4) + 2 for label in buttons)  # a Button is 16 wide at least
    return max(MIN_WIDTH, min(MAX_WIDTH, max(longest, row) + FRAME))


class Dialog(ModalScreen[ScreenResultType]):
    """A modal screen whose footer shows its own keys, over the footer of the screen below (whose
    keys it takes away while it is up)."""

    # the dialog's list (a selector) and the most rows it takes: where the screen is too short for
    # the whole dialog, the list gives up rows (it scrolls) so that the words and buttons below it
    # stay on screen; 16 findings at 80x24 pushed the hint and both buttons past the screen's edge
    flexible: tuple[str, int] | None = None

    def on_mount(self) -> None:  # Textual calls this as well as a subclass's own on_mount
        self.mount(Footer(show_command_palette=False))
        self.call_after_refresh(self.fit_to_screen)

    def on_resize(self) -> None:
        self.call_after_refresh(self.fit_to_screen)

    def fit_to_screen(self) -> None:
        """Give the ``flexible`` list the rows the screen leaves after the dialog's other parts."""
        if self.flexible is None or not self.is_mounted:
            return
        selector, most = self.flexible
        try:
            box = self.query_one(Vertical)
            flexible = self.query_one(selector)
        except Exception:  # not composed, or gone
            return
        others = sum(w.outer_size.height + w.styles.margin.top + w.styles.margin.bottom
                     for w in box.children if w is not flexible and w.display)
        frame = box.outer_size.height - box.size.height  # its border and padding
        footer = 1
        room = (self.size.height - footer - frame - others
                - flexible.styles.margin.top - flexible.styles.margin.bottom)
        rows = max(3, min(most, room))
        if flexible.styles.max_height is None or flexible.styles.max_height.value != rows:
            flexible.styles.max_height = rows

    def name_answers(self, yes: str, no: str | None) -> None:
        """The footer names the answer keys by the buttons they press ("y Accept and continue  n
        Stay here"), not a generic Yes/No; with one button only y is shown (n and Esc still close
        the dialog)."""
        labels = {"answer(True)": yes, "answer(False)": no or ""}
        for key, bindings in self._bindings.key_to_bindings.items():
            self._bindings.key_to_bindings[key] = [
                dataclasses.replace(binding, description=labels[binding.action],
                                    show=bool(labels[binding.action]) and binding.show)
                if binding.action in labels else binding
                for binding in bindings
            ]


class ConfirmDialog(Dialog[bool]):
    """Yes or no; Enter/y confirms, Esc/n cancels. ``items`` (the warnings it asks about) are
    listed inside it; with ``no=None`` it has one button (an acknowledgement)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmDialog")
    flexible = (".items", 8)
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(
        self, title: str, body: str = "", yes: str = "Yes", no: str | None = "No", items: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.title_text, self.body, self.yes, self.no, self.items = title, body, yes, no, list(items)
        self.name_answers(yes, no)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            if self.body:  # folded, not cut, where a path is longer than the box is wide
                yield Label(Text.from_markup(self.body, overflow="fold"), id="body")
            if self.items:
                with VerticalScroll(classes="items", can_focus=False):
                    for item in self.items:
                        yield Label(f"• {escape(item)}")
            with Horizontal(classes="buttons"):
                if self.no is not None:
                    yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="warning" if self.no is not None else "primary")

    def on_mount(self) -> None:
        texts = [self.title_text, self.body, *(f"• {item}" for item in self.items)]
        buttons = [self.yes] + ([self.no] if self.no is not None else [])
        self.query_one(Vertical).styles.width = fit_width(*texts, buttons=buttons)
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class InputDialog(Dialog[str | None]):
    """One line of text, checked by ``validate`` (returns an error message or None)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="InputDialog")
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="input.cancel")]

    def __init__(
        self,
        title: str,
        value: str = "",
        placeholder: str = "",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder
        self.check = validate or (lambda text: None if text.strip() else "type something first")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield Field(self.value, placeholder=self.placeholder, id="answer")
            yield Label("", classes="error", id="error")
            yield Label("[dim]Enter: OK · Esc: cancel[/]")

    def on_mount(self) -> None:
        self.query_one(Vertical).styles.width = fit_width(self.title_text, self.value + "  ", "x" * 48)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.check(event.value)
        if error:
            self.query_one("#error", Label).update(error)
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceDialog(Dialog[str | None]):
    """Pick one of a few named choices (id, text)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ChoiceDialog") + "ChoiceDialog OptionList { height: auto; max-height: 12; }"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: Sequence[tuple[str, str]], body: str = "") -> None:
        super().__init__()
        self.title_text, self.choices, self.body = title, list(choices), body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            if self.body:
                yield Label(self.body)
            yield OptionList(*[Option(text, id=key) for key, text in self.choices], id="choices")

    def on_mount(self) -> None:
        texts = [self.title_text, self.body, *(text + "    " for _key, text in self.choices)]
        self.query_one(Vertical).styles.width = fit_width(*texts)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
