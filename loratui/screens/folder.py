"""Step 1: pick the folder. A tree of folders and images, recent folders, and for the folder
under the cursor a live summary from the dataset engine; errors block Next, warnings can be
accepted."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DirectoryTree, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from loratui.widgets.path_text import PathField, PathText
from loratui.widgets.stepbar import StepBar

# One lint at a time: a thread worker cannot be stopped mid-check, and two first checks at
# once would race to import transformers (for the CLIP token counts), which is not safe.
LINT_LOCK = threading.Lock()
RECENT_FILE = "recent.json"
RECENT_MAX = 8
SHOWN_FINDINGS = 6  # per severity in the summary; the caption step shows each image's


def recent_folders() -> list[Path]:
    """Folders picked before, newest first (those that still exist)."""
    from loratui.engine.paths import state_dir

    try:
        entries = json.loads((state_dir() / RECENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [Path(e) for e in entries if isinstance(e, str) and Path(e).is_dir()][:RECENT_MAX]


def remember_folder(folder: Path) -> None:
    """Put ``folder`` first in the recent list (best effort: a read-only home is no error)."""
    from loratui.engine import atomic
    from loratui.engine.paths import state_dir

    entries = [str(folder)] + [str(p) for p in recent_folders() if p != folder]
    try:
        state_dir().mkdir(parents=True, exist_ok=True)
        atomic.write_text(state_dir() / RECENT_FILE, json.dumps(entries[:RECENT_MAX]))
    except OSError:
        pass


def count_images(folder: Path, limit: int = 20000) -> int:
    """Images directly in ``folder`` or in its kohya repeat folders (cheap: no recursion)."""
    from loratui.engine.data.dataset import REPEAT_FOLDER, is_image_name

    count = seen = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                seen += 1
                if seen > limit:
                    break
                if entry.name.startswith("."):
                    continue
                if entry.is_file() and is_image_name(entry.name):
                    count += 1
                elif entry.is_dir() and REPEAT_FOLDER.match(entry.name):
                    with os.scandir(entry.path) as inner:
                        count += sum(1 for e in inner if e.is_file() and is_image_name(e.name))
    except OSError:
        return 0
    return count


@dataclass(frozen=True)
class FolderSummary:
    """What the summary panel shows for one folder."""

    folder: Path
    images: int
    report: Any = None  # a lint CheckReport (None when the folder has no images)
    sizes: tuple[int, int, int, int] | None = None  # min w, min h, max w, max h
    error: str = ""
    judged: str = ""  # what image sizes were judged for: "the tiny model at 64 px (…)"
    found_trigger: str = ""  # the first tag every caption shares (the CLI takes it as the trigger)


def thresholds_for(resolution: int) -> Any:
    """The lint thresholds for a run at ``resolution`` (the engine's rule, as `loratui check`
    and the training scan apply it)."""
    from loratui.engine.data.lint_rules import thresholds_for as engine_thresholds

    return engine_thresholds(resolution)


@dataclass(frozen=True)
class Judged:
    """The resolution the wizard's run on a folder would train at, and how to say it."""

    resolution: int
    label: str
    base_model: str = ""  # "tiny" when the folder is the demo dataset and no model was chosen


def judged_for(state: Any, folder: Path | None = None) -> Judged:
    """What ``loratui check`` judges ``folder`` by, for the wizard's choices so far: the preset's
    resolution for the base model's family (an override wins); the demo dataset, with no model
    chosen, for the tiny model it is made for."""
    from loratui.engine.errors import LoratuiError
    from loratui.engine.planning.judged import judged_resolution
    from loratui.engine.planning.presets import PRESETS

    folder = folder or state.folder
    override = state.overrides.get("resolution")
    set_here = isinstance(override, int)
    try:
        judged = judged_resolution(folder or ".", state.preset, state.base_model or None,
                                   override if set_here else None)
    except LoratuiError:  # the preset step names what is wrong with the choices
        return Judged(override if set_here else PRESETS[state.preset].resolution, "")
    source = state.origin("resolution") if set_here else f"preset {state.preset}"
    if judged.demo and not set_here:
        source = "the demo dataset is made for it"
    return Judged(judged.resolution, f"{judged.family} at {judged.resolution} px ({source})",
                  "tiny" if judged.demo else "")


def training_resolution(state: Any, folder: Path | None = None) -> int:
    """The resolution the wizard's run will train at (an override, else the preset's for the
    base model's family; the tiny model's for the demo dataset)."""
    return judged_for(state, folder).resolution


def found_trigger(folder: Path) -> str:
    """The first tag every caption of ``folder`` shares, which `loratui train` takes as the
    trigger word when none is named (the engine's rule); "" when there is none."""
    from loratui.engine.data.dataset import scan
    from loratui.engine.errors import LoratuiError
    from loratui.engine.planning.run_plan import detect_trigger

    try:
        return detect_trigger(scan(folder)) or ""
    except LoratuiError:  # the check says what is wrong with the folder
        return ""


def summarise(
    folder: Path, pixels: bool = False, trigger: str | None = None, on_progress=None, resolution: int = 512,
    judged: str = "", cancelled=None,
) -> FolderSummary | None:
    """Count, check (header pass unless ``pixels``) and measure the images of ``folder``; with
    no ``trigger``, the one its captions already start with is found and checked for.

    With ``pixels`` the check decodes every image in a child process (``check_apart``): in a
    thread of the UI process it held the GIL between keystrokes. None when ``cancelled()``
    turned true first."""
    from loratui.check_process import check_folder
    from loratui.engine.data.dataset import iter_image_paths
    from loratui.engine.errors import LoratuiError
    from loratui.engine.data.images import image_size

    if count_images(folder) == 0:
        return FolderSummary(folder, 0)
    found = "" if trigger else found_trigger(folder)
    try:
        with LINT_LOCK:
            report = check_folder(folder, trigger or found or None, thresholds_for(resolution), pixels,
                                  cancelled=cancelled or (lambda: False), on_progress=on_progress)
        if report is None:
            return None
    except LoratuiError as exc:
        return FolderSummary(folder, 0, error=str(exc))
    sizes = []
    for path in iter_image_paths(folder)[:5000]:
        try:
            sizes.append(image_size(path))
        except LoratuiError:
            continue
    box = None
    if sizes:
        areas = sorted(sizes, key=lambda s: s[0] * s[1])
        box = (*areas[0], *areas[-1])
    return FolderSummary(folder, report.images, report, box, judged=judged, found_trigger=found)


def finding_line(finding: Any) -> str:
    """One finding as a line of plain text: where (unless the whole folder), then what."""
    where = f"{finding.path}: " if finding.path not in ("", ".") else ""
    return f"{where}{finding.message}"


def summary_markup(s: FolderSummary | None, checking: str = "") -> str:
    from rich.markup import escape

    from loratui.screens.findings import fix_for

    if s is None:
        return "[dim]Move to a folder to see what is in it.[/]"
    lines: list[str] = []  # the folder's path is above, in #summary-path (wrapped at its separators)
    if s.error:
        return "\n".join(lines + [f"[red]{s.error}[/]"])
    if s.images == 0 or s.report is None:
        return "\n".join(lines + ["No images here (jpg, jpeg, png, webp, bmp).", "Open a folder that holds your photos."])
    r = s.report
    if r.usable_images == r.images:
        lines.append(f"[b]{r.images}[/] images · [b]{r.captioned}[/] captioned")
    else:  # every captioned image is counted, usable or not ("7 images · 0 captioned" lied)
        lines.append(f"[b]{r.images}[/] images · [b]{r.usable_images}[/] usable · [b]{r.captioned}[/] captioned")
    if s.sizes:
        lines.append(f"sizes {s.sizes[0]}×{s.sizes[1]} to {s.sizes[2]}×{s.sizes[3]} px")
    if s.judged:  # as `loratui check` says it: the sizes are judged for this run
        lines.append(f"[dim]judged for {escape(s.judged)}[/]")
    if s.found_trigger:  # as `loratui train` takes it
        lines.append(f"trigger word [b]{escape(s.found_trigger)}[/]: every caption starts with it")
    lines.append("")
    if checking:
        lines.append(f"[yellow]{checking}[/]")
    if not r.findings:
        lines.append("[green]✓ no problems found[/]" + ("" if r.pixels_checked else " [dim](quick check)[/]"))
    for severity, colour, label in (("error", "red", "fix before training"),
                                     ("warning", "yellow", "you can accept")):
        found = [f for f in r.findings if f.severity == severity]
        if not found:
            continue
        plural = "s" if len(found) != 1 else ""
        lines.append(f"[{colour} b]{len(found)} {severity}{plural}: {label} {'these' if plural else 'it'}[/]")
        for f in found[:SHOWN_FINDINGS]:
            where = "" if f.path == "." else f"{f.path}: "
            lines.append(f"  [{colour}]•[/] {where}{f.message}")
        if len(found) > SHOWN_FINDINGS:
            lines.append(f"  … and {len(found) - SHOWN_FINDINGS} more")
        fixes = dict.fromkeys(fix_for(f.code) for f in found)  # each fix once, as `loratui check` says it
        lines += [f"  [dim]fix: {escape(fix)}[/]" for fix in fixes if fix]
    if not r.pixels_checked:
        lines += ["", "[dim]A full check (blur, duplicates, exposure) runs on Next.[/]"]
    return "\n".join(lines)


class ImagesTree(DirectoryTree):
    """Folders and images only; hidden entries left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        from loratui.engine.data.dataset import is_image_name

        return [p for p in paths if not p.name.startswith(".") and (self._safe_is_dir(p) or is_image_name(p.name))]


class FolderScreen(Screen[None]):
    """Pick the dataset folder."""

    TITLE = "Pick folder"
    HELP = (
        "Move through the tree with the arrow keys (Enter opens a folder). The panel on the right "
        "shows what the folder under the cursor holds and what `loratui check` finds there. "
        "Errors must be fixed before training; warnings can be accepted. Each finding says how to fix "
        "it; in the list that **ctrl+n** shows, **x** excludes an image (it moves, with its caption, to "
        "the folder's hidden `.excluded/`, which training skips). Type a path in the box "
        "at the top to jump to it, or pick a recent folder."
    )
    DEFAULT_CSS = """
    FolderScreen #columns { height: 1fr; }
    FolderScreen #left { width: 2fr; }
    FolderScreen #path { margin: 0 0; }
    FolderScreen #recent { height: auto; max-height: 6; }
    FolderScreen #recent-label { color: $text-muted; padding: 0 1; }
    FolderScreen ImagesTree { height: 1fr; }
    FolderScreen #summary-box { width: 3fr; }
    FolderScreen #summary-path { margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", id="folder.next"),
        Binding("ctrl+l", "focus_path", "Type a path", id="folder.path"),
        Binding("ctrl+u", "parent", "Parent folder", id="folder.parent"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current: Path | None = None
        self.summary: FolderSummary | None = None
        self._debounce: Timer | None = None
        self._checking = False
        self._found_trigger = ""  # the trigger this step took from the captions (not typed)
        self._took_model = ""  # the model this step chose (tiny, for the demo dataset)
        self._excluded: list[str] = []  # images the last findings dialog excluded, said in the next one
        self._accepted: set[str] = set()  # the kinds of warning accepted in it, not asked about again

    def compose(self) -> ComposeResult:
        state = self.app.state  # type: ignore[attr-defined]
        root = self.app.browse_root  # type: ignore[attr-defined]
        yield StepBar("folder")
        with Horizontal(id="columns"):
            with Vertical(id="left"):
                yield PathField(str(state.folder or ""), placeholder="type a folder path, Enter", id="path", compact=True)
                recent = recent_folders()
                if recent:
                    yield Label("recent", id="recent-label")
                    yield OptionList(*[Option(PathText(str(p), tail=True), id=str(p)) for p in recent], id="recent")
                yield ImagesTree(root, id="tree")
            with VerticalScroll(id="summary-box", classes="panel"):
                yield Static("", id="summary-path")
                yield Static(summary_markup(None), id="summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ImagesTree).focus()
        folder = self.app.state.folder  # type: ignore[attr-defined]
        if folder is not None:
            self.look_at(folder)

    # -- the folder under the cursor ----------------------------------------------------------

    def look_at(self, folder: Path, delay: float = 0.0) -> None:
        """Summarise ``folder`` (after ``delay`` s, so holding an arrow key is cheap)."""
        if self._debounce is not None:
            self._debounce.stop()
        if folder == self.current and self.summary is not None and self.summary.folder == folder:
            return
        self.current = folder
        self.query_one(StepBar).set_detail(str(folder))
        if delay:
            self._debounce = self.set_timer(delay, lambda: self.refresh_summary(folder))
        else:
            self.refresh_summary(folder)

    def _run_trigger(self) -> str | None:
        """The trigger word the user gave (the one found in the captions is not theirs)."""
        trigger = self.app.state.trigger  # type: ignore[attr-defined]
        found = (self._found_trigger, self.app.found_trigger)  # type: ignore[attr-defined]
        return trigger if trigger and trigger not in found else None

    def _judged(self, folder: Path) -> Judged:
        """``judged_for`` with the user's choices (not the model this step chose for another folder)."""
        from dataclasses import replace

        state = self.app.state  # type: ignore[attr-defined]
        if self._took_model and state.base_model == self._took_model:
            state = replace(state, base_model="")
        return judged_for(state, folder)

    @work(thread=True, exclusive=True, group="summary", exit_on_error=False)
    def refresh_summary(self, folder: Path) -> FolderSummary:
        judged = self._judged(folder)
        summary = summarise(folder, pixels=False, trigger=self._run_trigger(), resolution=judged.resolution,
                            judged=judged.label)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, summary)
        return summary

    def _show(self, summary: FolderSummary, checking: str = "") -> None:
        if summary.folder != self.current:
            return
        self.summary = summary
        self.query_one("#summary-path", Static).update(
            PathText(str(summary.folder), style="dim", name_style="not dim bold"))
        self.query_one("#summary", Static).update(summary_markup(summary, checking))

    @on(DirectoryTree.NodeHighlighted)
    def highlighted(self, event: DirectoryTree.NodeHighlighted) -> None:
        entry = event.node.data
        if entry is None:
            return
        path = Path(entry.path)
        self.look_at(path if path.is_dir() else path.parent, delay=0.15)

    @on(OptionList.OptionHighlighted, "#recent")
    def recent_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.look_at(Path(str(event.option.id)), delay=0.15)

    @on(OptionList.OptionSelected, "#recent")
    def recent_selected(self, event: OptionList.OptionSelected) -> None:
        self.look_at(Path(str(event.option.id)))
        self.action_next()

    @on(Input.Submitted, "#path")
    def path_typed(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        if not path.is_dir():
            self.notify(f"{path}: no such folder", severity="error")
            return
        path = path.resolve()
        self.query_one(ImagesTree).path = path
        self.look_at(path)
        self.query_one(ImagesTree).focus()

    def action_focus_path(self) -> None:
        self.query_one("#path", Input).focus()

    def action_parent(self) -> None:
        tree = self.query_one(ImagesTree)
        parent = Path(tree.path).resolve().parent
        tree.path = parent
        self.look_at(parent)

    # -- Next: the full check, then on to the captions ----------------------------------------

    def action_next(self) -> None:
        if self.current is None:
            self.notify("Move to the folder that holds your photos first.", severity="warning")
            return
        if self._checking:
            return
        self._checking = True
        self.full_check(self.current, self._run_trigger())

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def full_check(self, folder: Path, trigger: str | None) -> None:
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if time.monotonic() - last[0] > 0.1:  # at most ten redraws a second
                last[0] = time.monotonic()
                if self.summary is not None and self.summary.folder == folder:
                    self.app.call_from_thread(self._show, self.summary, f"checking: {stage} {done}/{total}")

        worker = get_current_worker()
        try:
            judged = self._judged(folder)
            summary = summarise(folder, pixels=True, trigger=trigger, on_progress=progress,
                                resolution=judged.resolution, judged=judged.label,
                                cancelled=lambda: worker.is_cancelled)
            if summary is None:  # cancelled: the app is closing
                return
            if summary.images:
                remember_folder(folder)
        finally:
            if not worker.is_cancelled:
                self.app.call_from_thread(setattr, self, "_checking", False)
        self.app.call_from_thread(self._checked, summary)

    def _checked(self, summary: FolderSummary) -> None:
        if summary.folder != self.current:
            return
        self._show(summary)
        if summary.error or not summary.images:
            self.notify(summary.error or f"{summary.folder}: no images here", severity="error")
            return
        report = summary.report
        from loratui.screens.findings import FindingsAnswer, FindingsDialog

        excluded, self._excluded = self._excluded, []  # excluded in the dialog before: said in the next
        accepted, self._accepted = self._accepted, set()

        def answered(answer: FindingsAnswer | None) -> None:
            if answer is not None and answer.excluded:  # the folder changed: check it again
                self._excluded = [*excluded, *answer.excluded]
                # "Accept and continue" pressed after excluding: the check that follows asks again
                # only about a kind of warning not accepted (it asked the same question twice)
                self._accepted = {f.code for f in report.warnings} if answer.accepted and not report.errors else set()
                self.summary = None
                self._checking = True
                self.full_check(summary.folder, self._run_trigger())
            elif answer is not None and answer.accepted and not report.errors:
                self._go_on(summary)

        if report.errors:
            # A dialog that lists them, each with its fix (a toast sat on the very list it
            # pointed to), where a bad image can be excluded without leaving the wizard
            self.app.push_screen(FindingsDialog(
                summary.folder, f"Fix {len(report.errors)} error(s) first",
                "They block training: fix them, or press x to exclude an image, then ctrl+n again.",
                report.errors, yes="OK", no=None, excluded=excluded,
            ), answered)
            return
        if report.warnings and not {f.code for f in report.warnings} <= accepted:
            self.app.push_screen(FindingsDialog(
                summary.folder, f"Continue with {len(report.warnings)} warning(s)?",
                "You can fix them later and check again.", report.warnings,
                yes="Accept and continue", no="Stay here", excluded=excluded,
            ), answered)
            return
        if excluded:  # no dialog to say it in
            self.notify(f"{', '.join(excluded)} moved to {summary.folder.name}/.excluded/; it will not train",
                        title="Excluded")
        self._go_on(summary)

    def _go_on(self, summary: FolderSummary) -> None:
        state = self.app.state  # type: ignore[attr-defined]
        state.folder = summary.folder
        state.report = summary.report
        state.warnings_accepted = bool(summary.report.warnings)
        if not self._run_trigger():  # as `loratui train` does: the captions' shared first tag
            state.trigger = self._found_trigger = summary.found_trigger
        if not state.base_model or state.base_model == self._took_model:
            # the demo dataset was judged for the tiny model: the run trains that one
            state.base_model = self._took_model = self._judged(summary.folder).base_model
        self.app.step_after("folder")  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.state == WorkerState.ERROR:
            self._checking = False
            exc = event.worker.error
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.query_one("#summary", Static).update(f"[red]The check failed:[/] {message}")
            self.notify(message, severity="error", timeout=10)
