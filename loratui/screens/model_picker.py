"""Pick a base model: the models found in the usual places (looked for in a worker, in a
bounded set of folders), the built-in tiny model, or a file picker for a .safetensors file or
a diffusers folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label, OptionList
from textual.widgets.option_list import Option

from loratui.screens.dialogs import DIALOG_CSS

BROWSE = "browse"
TINY = "tiny"


class ModelPickerDialog(ModalScreen[str | None]):
    """The models on this machine; Enter picks one, Esc keeps the field as it is."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ModelPickerDialog") + """
    ModelPickerDialog > Vertical { width: 76; }
    ModelPickerDialog OptionList { height: auto; max-height: 14; }
    ModelPickerDialog #status { color: $text-muted; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="models.cancel")]

    def __init__(self, dataset: Path | None) -> None:
        super().__init__()
        self.dataset = dataset
        self.values: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Base model", classes="title")
            yield OptionList(
                Option(Text("Browse for a .safetensors file or a diffusers folder…", style="bold"), id=BROWSE),
                Option(Text.assemble("tiny", ("  built in: tries loratui on a CPU in minutes", "dim")), id=TINY),
                id="models",
            )
            yield Label("looking in the usual places…", id="status")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.look()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def look(self) -> None:
        from loratui.engine.families.discover import find_models

        found = find_models(self.dataset)
        self.app.call_from_thread(self._found, found)

    def _found(self, found: Iterable) -> None:
        options = self.query_one(OptionList)
        count = 0
        for n, model in enumerate(found):
            key = f"found-{n}"
            self.values[key] = model.value
            options.add_option(Option(Text.assemble(model.label, (f"  {model.where}", "dim")), id=key))
            count += 1
        where = "models/ folders, the Hugging Face cache, AUTOMATIC1111 and ComfyUI model folders"
        self.query_one("#status", Label).update(
            f"{count} model(s) found in {escape(where)}" if count else f"none found in {escape(where)}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        key = event.option.id or ""
        if key == BROWSE:
            start = self.dataset.parent if self.dataset else Path.home()
            self.app.push_screen(FilePickerDialog(start), self._browsed)
        elif key == TINY:
            self.dismiss(TINY)
        else:
            self.dismiss(self.values[key])

    def _browsed(self, path: str | None) -> None:
        if path:
            self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ModelTree(DirectoryTree):
    """Folders and .safetensors files; hidden entries left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (self._safe_is_dir(p) or p.suffix.lower() == ".safetensors")]


class FilePickerDialog(ModalScreen[str | None]):
    """A .safetensors file (Enter), or the highlighted diffusers folder (u)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="FilePickerDialog") + """
    FilePickerDialog > Vertical { width: 76; height: 90%; }
    FilePickerDialog ModelTree { height: 1fr; }
    FilePickerDialog #hint { color: $text-muted; }
    """
    BINDINGS = [
        Binding("u", "use_folder", "Use folder", id="files.folder"),
        Binding("backspace", "up", "Parent", id="files.up"),
        Binding("escape", "cancel", "Cancel", id="files.cancel"),
    ]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start if start.is_dir() else Path.home()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Pick a .safetensors checkpoint or a diffusers folder", classes="title")
            yield ModelTree(self.start, id="files")
            yield Label("", classes="error", id="error")
            yield Label("Enter: pick a file · u: use the highlighted folder · Backspace: parent · Esc: cancel",
                        id="hint")

    def on_mount(self) -> None:
        self.query_one(ModelTree).focus()

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def action_use_folder(self) -> None:
        node = self.query_one(ModelTree).cursor_node
        path = node.data.path if node is not None and node.data is not None else None
        if path is None or not ((path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file()):
            self.query_one("#error", Label).update("not a diffusers folder (no model_index.json in it)")
            return
        self.dismiss(str(path))

    def action_up(self) -> None:
        tree = self.query_one(ModelTree)
        tree.path = Path(tree.path).parent

    def action_cancel(self) -> None:
        self.dismiss(None)


class LoraPickerDialog(FilePickerDialog):
    """A LoRA to start from: a .safetensors file (Enter), or a run folder that saved one (u)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="LoraPickerDialog") + """
    LoraPickerDialog > Vertical { width: 76; height: 90%; }
    LoraPickerDialog ModelTree { height: 1fr; }
    LoraPickerDialog #hint { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Pick a LoRA (.safetensors) or a run folder to start from", classes="title")
            yield ModelTree(self.start, id="files")
            yield Label("", classes="error", id="error")
            yield Label("Enter: pick a file · u: use the highlighted run folder · Backspace: parent · Esc: cancel",
                        id="hint")

    def action_use_folder(self) -> None:
        from loratui.engine.errors import LoratuiError
        from loratui.engine.train.init_lora import resolve_init_lora

        node = self.query_one(ModelTree).cursor_node
        path = node.data.path if node is not None and node.data is not None else None
        if path is None or not path.is_dir():
            self.query_one("#error", Label).update("highlight a run folder first (or press Enter on a file)")
            return
        try:
            resolve_init_lora(str(path))
        except LoratuiError as exc:
            self.query_one("#error", Label).update(escape(exc.message))
            return
        self.dismiss(str(path))
