"""The check's findings as a dialog the user can act on: each finding with the `fix:` that
`loratui check` prints for it, and `x` to exclude a bad image from the dataset (moved, with its
caption, to the folder's hidden `.excluded/`, which training and the check skip) instead of
leaving the wizard to fix it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from loratui.screens.dialogs import DIALOG_CSS, Dialog, fit_width


def fix_for(code: str) -> str:
    """The fix `loratui check` prints for a finding's code ("" for a code without a rule)."""
    from loratui.engine.data.lint_rules import RULES

    rule = RULES.get(code)
    return rule.fix if rule else ""


def can_exclude(finding: Any) -> bool:
    """True for a finding about one image file (not the folder, a caption or a subfolder)."""
    from loratui.engine.data.dataset import is_image_name

    path = finding.path
    return bool(path) and path not in (".",) and not path.endswith("/") and is_image_name(path)


@dataclass
class FindingsAnswer:
    """What the user did: went on (accepted) or not, and the images moved out of the dataset."""

    accepted: bool
    excluded: list[str] = field(default_factory=list)


class FindingsDialog(Dialog[FindingsAnswer]):
    """The findings, each with its fix; `x` excludes the highlighted finding's image."""

    DEFAULT_CSS = DIALOG_CSS.format(name="FindingsDialog") + """
    FindingsDialog OptionList { height: auto; max-height: 12; margin-top: 1; }
    FindingsDialog #hint { color: $text-muted; margin-top: 1; }
    FindingsDialog #note { color: $success; margin-top: 1; }
    """
    flexible = ("#findings", 12)
    BINDINGS = [
        Binding("x", "exclude", "Exclude image", id="findings.exclude"),
        Binding("up", "move(-1)", "Previous", id="findings.up", show=False),
        Binding("down", "move(1)", "Next", id="findings.down", show=False),
        Binding("y", "answer(True)", "Yes", id="findings.yes"),
        Binding("n,escape", "answer(False)", "Close", id="findings.close"),
    ]

    def __init__(self, folder: Path, title: str, body: str, findings: Sequence[Any],
                 yes: str = "OK", no: str | None = None, excluded: Sequence[str] = ()) -> None:
        """``excluded``: the images excluded in the dialog before this one (the folder was
        checked again), said inside this one: a toast sat on its title."""
        super().__init__()
        self.folder, self.title_text, self.body = folder, title, body
        self.findings = list(findings)
        self.yes, self.no = yes, no
        self.before = list(excluded)
        self.excluded: list[str] = []
        self.name_answers(yes, no)  # one button: only y is offered (n and Esc still close it)

    def _prompt(self, finding: Any) -> Text:
        where = f"{finding.path}: " if finding.path not in ("", ".") else ""
        text = Text.from_markup(f"{escape(where + finding.message)}")
        fix = fix_for(finding.code)
        if fix:
            text.append(f"\n  fix: {fix}", style="dim")
        if can_exclude(finding):
            text.append("  (x: exclude)", style="dim italic")
        return text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            if self.body:
                yield Label(self.body, id="body")
            yield OptionList(*[Option(self._prompt(f), id=str(n)) for n, f in enumerate(self.findings)],
                             id="findings")
            yield Label("", classes="error", id="error")
            yield Label("", id="note")
            yield Label("", id="hint")
            with Horizontal(classes="buttons"):
                if self.no is not None:
                    yield Button(self.no, id="no")
                yield Button(self.yes, id="yes", variant="warning" if self.no is not None else "primary")

    def on_mount(self) -> None:
        texts = [self.title_text, self.body]
        for f in self.findings:
            texts += [f"{f.path}: {f.message}      ", f"  fix: {fix_for(f.code)}  (x: exclude)"]
        self.query_one(Vertical).styles.width = fit_width(*texts)
        self.query_one(OptionList).highlighted = 0
        self._say_error("")
        self._show_note()
        self._show_hint()
        self.query_one("#yes", Button).focus()  # Enter answers, as in every dialog; ↑/↓ and x act on the list

    def _highlighted(self) -> Any:
        option = self.query_one(OptionList).highlighted_option
        return None if option is None else self.findings[int(option.id or 0)]

    def hint(self) -> str:
        """The keys that act on the highlighted finding: `x` only when it names an image (a
        dataset-level warning, such as too few images, has nothing to exclude)."""
        keys = ["↑/↓ pick"] if self.query_one(OptionList).option_count > 1 else []
        finding = self._highlighted()
        if finding is not None and can_exclude(finding):
            keys.append("x: exclude that image (moved with its caption to .excluded/ in the folder; it will not train)")
        return " · ".join(keys)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show_hint()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`x` is offered (footer and key) only while the highlighted finding names an image."""
        if action != "exclude":
            return True
        try:
            finding = self._highlighted()
        except Exception:  # not composed yet
            return False
        return finding is not None and can_exclude(finding)

    def _show_note(self) -> None:
        """What was excluded so far, here and in the dialog before: where it went."""
        note = self.query_one("#note", Label)
        names = [*self.before, *self.excluded]
        note.update(escape(f"excluded: {', '.join(names)} (now in {self.folder.name}/.excluded/)") if names else "")
        note.display = bool(names)
        self.call_after_refresh(self.fit_to_screen)

    def _say_error(self, text: str) -> None:
        """A line in red under the list (none: no line at all, a row the list can use)."""
        error = self.query_one("#error", Label)
        error.update(text)
        error.display = bool(text)
        self.call_after_refresh(self.fit_to_screen)

    def _show_hint(self) -> None:
        hint = self.query_one("#hint", Label)
        text = self.hint()
        hint.update(text)
        hint.display = bool(text)
        self.refresh_bindings()
        self.call_after_refresh(self.fit_to_screen)  # the hint's lines change what the list may take

    @property
    def items(self) -> list[str]:
        """The findings still listed, as lines of text."""
        shown = {option.id for option in self.query_one(OptionList).options}
        return [str(self._prompt(f)) for n, f in enumerate(self.findings) if str(n) in shown]

    def action_move(self, delta: int) -> None:
        options = self.query_one(OptionList)
        if options.option_count:
            options.highlighted = ((options.highlighted or 0) + delta) % options.option_count

    def action_exclude(self) -> None:
        from loratui.engine.data.dataset import exclude_image
        from loratui.engine.errors import LoratuiError

        options = self.query_one(OptionList)
        option = options.highlighted_option
        if option is None:
            return
        finding = self.findings[int(option.id or 0)]
        if not can_exclude(finding):
            self._say_error("only an image can be excluded; fix this one in the folder")
            return
        try:
            exclude_image(self.folder, finding.path)
        except (LoratuiError, OSError) as exc:
            self._say_error(escape(getattr(exc, "message", None) or str(exc)))
            return
        self._say_error("")
        self.excluded.append(finding.path)
        # every finding about that image goes with it
        present = {option.id for option in options.options}
        for n, other in enumerate(self.findings):
            if other.path == finding.path and str(n) in present:
                options.remove_option(str(n))
        self._show_note()  # said here: a toast sat on the dialog's title
        if options.option_count == 0:
            self.dismiss(FindingsAnswer(True, self.excluded))
        else:
            self._show_hint()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(FindingsAnswer(event.button.id == "yes", self.excluded))

    def action_answer(self, value: bool) -> None:
        self.dismiss(FindingsAnswer(value, self.excluded))
