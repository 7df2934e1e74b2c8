"""The preset step's pickers (ctrl+o). A base model: the models found in the usual places
(looked for in a worker, in a bounded set of folders), the built-in tiny model, or a file
picker for a .safetensors file or a diffusers folder. And for the Advanced path fields: a LoRA
or run folder to start from, and a folder (the class images, where runs go)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DirectoryTree, Label, OptionList, Static
from textual.widgets.option_list import Option

from loratui.screens.dialogs import DIALOG_CSS, Dialog
from loratui.widgets.path_text import PathText

BROWSE = "browse"
TINY = "tiny"


class ModelPickerDialog(Dialog[str | None]):
    """The models on this machine; Enter picks one, Esc keeps the field as it is."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ModelPickerDialog") + """
    ModelPickerDialog > Vertical { width: 76; }
    ModelPickerDialog OptionList { height: auto; max-height: 14; }
    ModelPickerDialog #status { color: $text-muted; margin-top: 1; }
    ModelPickerDialog #hint { color: $text-muted; }
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
            yield Label("Enter: use the highlighted one · Esc: keep the field as it is", id="hint")

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


class FolderTree(DirectoryTree):
    """Folders only; hidden ones left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and self._safe_is_dir(p)]


def picker_css(name: str) -> str:
    """A picker's style: a tall dialog, its tree taking the room left by the title and hint."""
    return DIALOG_CSS.format(name=name) + f"""
    {name} > Vertical {{ width: 76; height: 90%; }}
    {name} .title {{ margin-bottom: 0; }}
    {name} #where {{ margin-bottom: 1; }}
    {name} DirectoryTree {{ height: 1fr; }}
    {name} #hint {{ color: $text-muted; }}
    """


class FilePickerDialog(Dialog[str | None]):
    """A .safetensors file (Enter), or the highlighted diffusers folder (u). Subclasses say
    what they pick: ``heading``, ``hint``, the tree they show and which folders they take."""

    DEFAULT_CSS = picker_css("FilePickerDialog")
    BINDINGS = [
        Binding("u", "use_folder", "Use folder", id="files.folder"),
        Binding("backspace", "up", "Parent", id="files.up"),
        Binding("escape", "cancel", "Cancel", id="files.cancel"),
    ]
    heading = "Pick a .safetensors checkpoint or a diffusers folder"
    hint = "Enter: pick a file · u: use the highlighted folder · Backspace: parent · Esc: cancel"

    def __init__(self, start: Path) -> None:
        super().__init__()
        # absolute: shown above the tree, whose root line names only the last folder
        self.start = start.resolve() if start.is_dir() else Path.home()

    def make_tree(self) -> DirectoryTree:
        return ModelTree(self.start, id="files")

    def folder_problem(self, path: Path) -> str | None:
        """Why the highlighted folder cannot be used (None: it can)."""
        if not ((path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file()):
            return f"{path.name}/: not a diffusers folder (no model_index.json in it)"
        return None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(escape(self.heading), classes="title")
            yield Static(self._where(self.start), id="where")  # the tree's root line names only the folder
            yield self.make_tree()
            yield Label("", classes="error", id="error")
            yield Label(escape(self.hint), id="hint")

    def on_mount(self) -> None:
        self.query_one("#files").focus()

    def on_tree_node_highlighted(self, _event: DirectoryTree.NodeHighlighted) -> None:
        self.query_one("#error", Label).update("")  # it was about the entry the cursor left

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def action_use_folder(self) -> None:
        node = self.query_one("#files", DirectoryTree).cursor_node
        path = node.data.path if node is not None and node.data is not None else None
        if path is None or not path.is_dir():
            self.query_one("#error", Label).update("highlight a folder first (or press Enter on a file)")
            return
        problem = self.folder_problem(path)
        if problem is not None:
            self.query_one("#error", Label).update(escape(problem))
            return
        self.dismiss(str(path))

    @staticmethod
    def _where(path: Path) -> PathText:
        return PathText(str(path), tail=True, style="dim")

    def action_up(self) -> None:
        tree = self.query_one("#files", DirectoryTree)
        tree.path = Path(tree.path).parent
        self.query_one("#where", Static).update(self._where(Path(tree.path)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class LoraPickerDialog(FilePickerDialog):
    """A LoRA to start from: a .safetensors file (Enter), or a run folder that saved one (u)."""

    DEFAULT_CSS = picker_css("LoraPickerDialog")
    heading = "Pick a LoRA (.safetensors) or a run folder to start from"
    hint = "Enter: pick a file · u: use the highlighted run folder · Backspace: parent · Esc: cancel"

    def folder_problem(self, path: Path) -> str | None:
        from loratui.engine.errors import LoratuiError
        from loratui.engine.train.init_lora import resolve_init_lora

        try:
            resolve_init_lora(str(path))
        except LoratuiError as exc:
            return exc.message
        return None


class FolderPickerDialog(FilePickerDialog):
    """A folder (the class images, where runs go): Enter opens one, u uses the highlighted one."""

    DEFAULT_CSS = picker_css("FolderPickerDialog")
    hint = "Enter: open a folder · u: use the highlighted folder · Backspace: parent · Esc: cancel"

    def __init__(self, start: Path, heading: str) -> None:
        super().__init__(start)
        self.heading = heading

    def make_tree(self) -> DirectoryTree:
        return FolderTree(self.start, id="files")

    def folder_problem(self, path: Path) -> str | None:
        return None
