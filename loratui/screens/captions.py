"""Step 2: review captions, built for the keyboard.

j/k (or the arrows) move, Enter or e edits the caption in place, Enter saves, Esc cancels.
Every change goes through the CaptionStore (atomic writes, a journal, undo u / redo U), in a
worker, one at a time, so a slow disk never blocks a key. Beside the caption: the picture,
the findings for this image, and a panel of tag frequencies for the bulk actions.
"""

from __future__ import annotations

import gc

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, OptionList, ProgressBar, Static, TextArea
from textual.widgets.option_list import Option

from loratui.widgets.ordered_keys import OrderedKeys
from loratui.widgets.preview import ImagePreview
from loratui.widgets.stepbar import StepBar

FILTERS = (
    ("all", "all"),
    ("uncaptioned", "no caption"),
    ("no_trigger", "no trigger"),
    ("findings", "findings"),
)
CAPTION_CODES = frozenset({
    "missing_caption", "empty_caption", "orphan_caption", "unreadable_caption", "caption_too_long",
    "trigger_missing", "caption_conflict",
})
TAGS_SHOWN = 300
LEGEND = "✓ ok · empty ! warn ✗ error"  # the image list's marks (· no caption), under it
UNDO = Binding.Group("Undo/redo", compact=True)
TAG = Binding.Group("Remove/replace tag", compact=True)
PREVIEW_DELAY_S = 0.06  # the picture follows once j/k rests this long; the text at once


def settle_gc() -> None:
    """Keep the cyclic GC's passes from landing between a key and its paint.

    Thousands of long-lived list entries made its full passes the slowest thing between two
    keystrokes: what exists now moves out of its way (``gc.freeze``). And each key allocates
    tens of thousands of short-lived objects (strips, segments, styles), so at Python's default
    thresholds (700, 10, 10) a full pass over everything since the freeze came every hundred
    keys or so, 50-150 ms under load; rarer, larger young collections cost ~1 ms each instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


class CaptionEditor(OrderedKeys, TextArea):
    """The caption, edited in place: Enter saves, Esc cancels (captions are one line).

    Not priority bindings: those ran as soon as the app read Enter, before the characters typed
    just ahead of it had reached the editor, and saved the caption without them. OrderedKeys runs
    the editor's own Enter binding ahead of TextArea's newline, in its turn.
    """

    BINDINGS = [
        Binding("enter", "save", "Save", id="editor.save"),
        Binding("escape", "cancel", "Cancel", id="editor.cancel"),
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__("", soft_wrap=True, read_only=True, id=id)
        self.can_focus = False  # focusable only while editing: Tab skips it otherwise
        self.rel: str | None = None  # the image whose caption is being edited
        self.original = ""

    def action_save(self) -> None:
        self.screen.finish_edit(save=True)  # type: ignore[attr-defined]

    def action_cancel(self) -> None:
        self.screen.finish_edit(save=False)  # type: ignore[attr-defined]

    def on_blur(self) -> None:
        if not self.read_only:  # focus moved away mid-edit: keep what was typed
            self.screen.finish_edit(save=True)  # type: ignore[attr-defined]


class CaptionsScreen(Screen[None]):
    """Review and edit the captions of ``app.state.folder``."""

    TITLE = "Review captions"
    HELP = (
        "Move with **j/k** or the arrows. **Enter** or **e** edits the caption in place; **Enter** "
        "saves it (atomically), **Esc** cancels. **u** undoes and **U** redoes any change, one edit "
        "or a bulk one. **t** sets the trigger word and puts it first in every caption. In the tag "
        "panel (Tab to it) **d** removes the highlighted tag everywhere and **r** replaces it. **f** "
        "filters the list: uncaptioned, without the trigger word, with a finding. **a** auto-captions "
        "the images that have no caption. The marks in the list: **✓** captioned with no finding, **·** no "
        "caption yet, **!** a warning, **✗** an error (the check's findings show under the caption)."
    )
    DEFAULT_CSS = """
    CaptionsScreen #columns { height: 1fr; }
    CaptionsScreen #left { width: 32; }
    CaptionsScreen Footer.-compact FooterLabel { margin: 0 1 0 0; }
    CaptionsScreen Footer KeyGroup.-compact { padding-left: 0; }
    CaptionsScreen #filter { height: 1; color: $text-muted; padding: 0 1; }
    CaptionsScreen #images { height: 1fr; }
    CaptionsScreen #legend { height: 1; color: $text-muted; padding: 0 1; }
    CaptionsScreen #tags-label { height: 1; color: $text-muted; padding: 0 1; }
    CaptionsScreen #tags { height: 7; }
    CaptionsScreen #right { width: 1fr; }
    CaptionsScreen ImagePreview { height: 1fr; }
    CaptionsScreen #image-name { height: 1; width: 1fr; padding: 0 1; }
    CaptionsScreen CaptionEditor { height: 5; }
    CaptionsScreen CaptionEditor.editing { border: tall $accent; }
    CaptionsScreen #findings { height: 3; width: 1fr; padding: 0 1; }
    CaptionsScreen #autocaption { display: none; height: 1; }
    CaptionsScreen #autocaption.running { display: block; }
    """
    # Grouped, and the tag keys shown only in the tag panel: one at a time they ran past 80
    # columns and the footer cut its own last entries off (issue 13, defect 6).
    BINDINGS = [
        Binding("ctrl+n", "next", "Next", id="captions.next"),
        Binding("escape", "back", "Back", id="captions.back"),
        Binding("j", "move(1)", "Down", id="captions.down", show=False),  # as ↓/↑; named in Help
        Binding("k", "move(-1)", "Up", id="captions.up", show=False),
        Binding("e", "edit", "Edit", id="captions.edit"),
        Binding("u", "undo", "Undo", id="captions.undo", group=UNDO),
        Binding("U,ctrl+r", "redo", "Redo", id="captions.redo", group=UNDO),
        Binding("t", "trigger", "Trigger", id="captions.trigger"),
        Binding("d", "remove_tag", "Remove tag", id="captions.remove_tag", group=TAG),
        Binding("r", "replace_tag", "Replace tag", id="captions.replace_tag", group=TAG),
        Binding("f", "filter", "Filter", id="captions.filter"),
        Binding("a", "autocaption", "Auto-caption", id="captions.autocaption"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.folder: Path | None = None
        self.store: Any = None  # the CaptionStore (made in a worker)
        self._lock = threading.Lock()  # one store operation at a time
        self.entries: list[Any] = []  # CaptionEntry, folder order
        self.shown: list[int] = []  # indices into entries after the filter
        self.findings: dict[str, list[Any]] = {}  # image rel -> findings
        self.filter_mode = "all"
        self.tags: list[tuple[str, int]] = []
        self._shown: Any = None  # the entry on display beside the list

    def compose(self) -> ComposeResult:
        yield StepBar("captions")
        with Horizontal(id="columns"):
            with Vertical(id="left"):
                yield Label("", id="filter")
                yield OptionList(id="images")
                yield Label(LEGEND, id="legend")
                yield Label("tags · Tab here: d/r", id="tags-label")
                yield OptionList(id="tags")
            with Vertical(id="right"):
                yield ImagePreview(id="preview")
                yield Label("", id="image-name")
                yield ProgressBar(total=1, id="autocaption", show_eta=False)
                yield CaptionEditor(id="caption")
                yield Static("", id="findings")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p still opens it; Help says so

    # -- loading ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.query_one("#images", OptionList).focus()
        self.load_folder()

    def on_screen_resume(self) -> None:
        if self.app.state.folder != self.folder:  # type: ignore[attr-defined]
            self.load_folder()

    def load_folder(self) -> None:
        folder = self.app.state.folder  # type: ignore[attr-defined]
        self.folder = folder
        self.query_one(StepBar).set_detail(str(folder or ""))
        if folder is None:
            return
        self.findings = self._index(self.app.state.report)  # type: ignore[attr-defined]
        self.open_store(folder)

    @work(thread=True, exclusive=True, group="open", exit_on_error=False)
    def open_store(self, folder: Path) -> None:
        from loratui.engine.data.captionstore import CaptionStore

        with self._lock:
            store = CaptionStore(folder)
            entries, tags = store.entries, store.tag_frequencies()
        self.app.call_from_thread(self._opened, folder, store, entries, tags)
        if self.app.state.report is None or self.app.state.report.folder != folder:  # type: ignore[attr-defined]
            self.recheck(pixels=True)

    def _opened(self, folder: Path, store: Any, entries: list[Any], tags: list[tuple[str, int]]) -> None:
        if folder != self.folder:
            return
        self.store = store
        for note in store.notes:
            self.notify(note, severity="warning", timeout=8)
        self._refresh(entries, tags)

    @work(thread=True, exclusive=True, group="check", exit_on_error=False)
    def recheck(self, pixels: bool = False) -> None:
        """Re-run the lint (header pass after edits; the full one when no report came along)."""
        from textual.worker import get_current_worker

        from loratui.check_process import check_folder
        from loratui.screens.folder import LINT_LOCK, thresholds_for, training_resolution

        folder = self.folder
        state = self.app.state  # type: ignore[attr-defined]
        thresholds = thresholds_for(training_resolution(state))
        worker = get_current_worker()
        with LINT_LOCK:  # the pixel pass in a child process, away from the keys' GIL
            report = check_folder(folder, state.trigger or None, thresholds, pixels,
                                  cancelled=lambda: worker.is_cancelled)
        if report is None:  # cancelled: the app is closing or the folder changed
            return
        self.app.call_from_thread(self._checked, folder, report, pixels)

    def _checked(self, folder: Path, report: Any, full: bool) -> None:
        if folder != self.folder:
            return
        state = self.app.state  # type: ignore[attr-defined]
        if full or state.report is None:
            state.report = report
        else:
            # Keep the pixel findings of the full check; caption findings are fresh.
            kept = [f for f in state.report.findings if f.code not in CAPTION_CODES]
            state.report.findings = kept + [f for f in report.findings if f.code in CAPTION_CODES]
        self.findings = self._index(state.report)
        if self.entries:
            # the marks follow the check at once: drawn only on the next save, every ✓ seemed to
            # turn ✗ because of the save (issue 13, defect 5)
            self._refresh(self.entries, self.tags)
        else:
            self._show_current()

    @staticmethod
    def _index(report: Any) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for f in getattr(report, "findings", None) or []:
            rel = f.path
            if rel.endswith(".txt"):
                continue  # orphan captions have no image row to sit beside
            found.setdefault(rel, []).append(f)
        return found

    # -- the lists ----------------------------------------------------------------------------

    def _passes(self, entry: Any) -> bool:
        if self.filter_mode == "uncaptioned":
            return not entry.caption
        if self.filter_mode == "no_trigger":
            from loratui.engine.data.tags import has_trigger

            trigger = self.app.state.trigger  # type: ignore[attr-defined]
            return bool(trigger) and not has_trigger(entry.caption or "", trigger)
        if self.filter_mode == "findings":
            return entry.rel in self.findings
        return True

    def _prompt(self, entry: Any) -> Text:
        """The row's mark, as the legend under the list says: ✓ captioned and no finding, ·
        no caption, ! a warning, ✗ an error (a finding outranks the caption)."""
        mark, style = ("✓", "green") if entry.caption else ("·", "dim")
        if entry.rel in self.findings:
            worst = "error" if any(f.severity == "error" for f in self.findings[entry.rel]) else "warning"
            mark, style = ("✗", "red") if worst == "error" else ("!", "yellow")
        text = Text(f"{mark} ", style=style)
        text.append(entry.rel)
        return text

    def _refresh(self, entries: list[Any], tags: list[tuple[str, int]], keep: str | None = None) -> None:
        """Redraw both lists; the cursor stays on image ``keep`` (default: the current one)."""
        keep = keep or self.current_rel
        self.entries = entries
        self.tags = tags
        self.shown = [i for i, e in enumerate(entries) if self._passes(e)]
        images = self.query_one("#images", OptionList)
        images.set_options([Option(self._prompt(entries[i])) for i in self.shown])
        rels = [entries[i].rel for i in self.shown]
        if rels:
            images.highlighted = rels.index(keep) if keep in rels else 0
        captioned = sum(1 for e in entries if e.caption)
        label = dict(FILTERS)[self.filter_mode]
        self.query_one("#filter", Label).update(
            f"{len(self.shown)}/{len(entries)} · {captioned} captioned · {label}"
        )
        tag_list = self.query_one("#tags", OptionList)
        tag_index = tag_list.highlighted
        tag_list.set_options([Option(f"{n:>4}  {tag}", id=tag) for tag, n in tags[:TAGS_SHOWN]])
        if tags:
            tag_list.highlighted = min(tag_index or 0, len(tag_list.options) - 1)
        self._show_current()
        settle_gc()

    @property
    def current(self) -> Any:
        index = self.query_one("#images", OptionList).highlighted
        if index is None or index >= len(self.shown):
            return None
        return self.entries[self.shown[index]]

    @property
    def current_rel(self) -> str | None:
        entry = self.current
        return entry.rel if entry is not None else None

    @on(OptionList.OptionHighlighted, "#images")
    def _moved(self, event: OptionList.OptionHighlighted) -> None:
        if self.current is not self._shown:  # a click or a list key; j/k showed it already
            self._show_current()

    @on(OptionList.OptionSelected, "#images")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.action_edit()

    def _show_current(self) -> None:
        entry = self.current
        editor = self.query_one(CaptionEditor)
        if not editor.read_only:
            return  # never swap the text out from under the user mid-edit
        self._shown = entry
        name = self.query_one("#image-name", Label)
        findings = self.query_one("#findings", Static)
        if entry is None:
            name.update("no images match this filter" if self.entries else "", layout=False)
            editor.load_text("")
            findings.update("", layout=False)
            self.query_one(ImagePreview).show(None)
            return
        source = {"metadata": " · from metadata.csv", "unreadable": " · unreadable caption"}.get(entry.source, "")
        repeats = f" · ×{entry.repeats}" if entry.repeats != 1 else ""
        # Text, not markup: nothing to parse per key, and a name or message with [brackets]
        # shows as it is; fixed sizes, so no layout pass
        name.update(Text.assemble((entry.rel, "bold"), repeats + source), layout=False)
        editor.load_text(entry.caption or "")
        lines = Text()
        if not entry.caption:
            lines.append("no caption yet: e to write one, a to auto-caption", style="dim")
        for f in self.findings.get(entry.rel, [])[:4]:
            if lines:
                lines.append("\n")
            lines.append(f"{f.severity}:", style="red" if f.severity == "error" else "yellow")
            lines.append(f" {f.message}")
        findings.update(lines, layout=False)
        self.query_one(ImagePreview).show(entry.image, delay=PREVIEW_DELAY_S)

    def action_move(self, delta: int) -> None:
        images = self.query_one("#images", OptionList)
        if delta > 0:
            images.action_cursor_down()
        else:
            images.action_cursor_up()
        # Show it now, not when the list's OptionHighlighted message arrives: then the list and
        # the caption change before the same screen update, and a key costs one paint, not two
        # (the second waited up to a frame, 1/60 s, behind the first).
        if self.current is not self._shown:
            self._show_current()

    # -- editing ------------------------------------------------------------------------------

    def action_edit(self) -> None:
        entry = self.current
        if entry is None or self.store is None:
            return
        if entry.source == "unreadable":
            self.notify(f"{entry.rel}: its caption is not UTF-8 text; re-save it as UTF-8 first", severity="error")
            return
        editor = self.query_one(CaptionEditor)
        editor.rel, editor.original = entry.rel, entry.caption or ""
        editor.read_only = False
        editor.can_focus = True
        editor.add_class("editing")
        editor.focus()
        editor.move_cursor(editor.document.end)

    def finish_edit(self, save: bool) -> None:
        editor = self.query_one(CaptionEditor)
        if editor.read_only:
            return
        rel, text = editor.rel, editor.text
        editor.read_only = True
        editor.can_focus = False
        editor.remove_class("editing")
        if not save:
            editor.load_text(editor.original)
        self.query_one("#images", OptionList).focus()
        if save and rel is not None and text.strip() != editor.original.strip():
            self.run_op(lambda store: store.set_caption(rel, text), quiet=True)

    # -- store operations (a worker each, one at a time) --------------------------------------

    def run_op(self, op: Callable[[Any], Any], quiet: bool = False, recheck: bool = True) -> None:
        if self.store is None:
            self.notify("still reading the captions…")
            return
        self._store_op(op, quiet, recheck)

    @work(thread=True, group="store", exit_on_error=False)
    def _store_op(self, op: Callable[[Any], Any], quiet: bool, recheck: bool) -> None:
        with self._lock:
            result = op(self.store)
            entries, tags = self.store.entries, self.store.tag_frequencies()
        self.app.call_from_thread(self._op_done, result, entries, tags, quiet)
        if recheck:
            self.app.call_from_thread(self.recheck)

    def _op_done(self, result: Any, entries: list[Any], tags: list[tuple[str, int]], quiet: bool) -> None:
        self._refresh(entries, tags)
        if result is None:
            self.notify("nothing to undo or redo")
        elif not quiet or not result.changed:
            changed = f"{result.changed} file(s) changed" if result.changed else "nothing changed"
            self.notify(f"{result.label}: {changed}" + (" · u to undo" if result.changed and not
                        result.label.startswith(("undo", "redo")) else ""))

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.state == WorkerState.ERROR:
            exc = event.worker.error
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            hint = getattr(exc, "hint", "")
            self.notify(message + (f"\n{hint}" if hint else ""), severity="error", timeout=10)
            self.query_one("#autocaption").remove_class("running")

    def action_undo(self) -> None:
        self.run_op(lambda store: store.undo())

    def action_redo(self) -> None:
        self.run_op(lambda store: store.redo())

    def action_trigger(self) -> None:
        from loratui.screens.dialogs import InputDialog

        def check(text: str) -> str | None:
            text = text.strip()
            if not text or "," in text:
                return "one word or phrase, without commas"
            return None

        def answered(trigger: str | None) -> None:
            if trigger:
                self.app.state.trigger = trigger  # type: ignore[attr-defined]
                self.run_op(lambda store: store.add_trigger(trigger))

        self.app.push_screen(
            InputDialog("Trigger word: put first in every caption", self.app.state.trigger,  # type: ignore[attr-defined]
                        "a rare word, e.g. zxq", check),
            answered,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # d/r change every caption: only where the tag they act on is in view, the tag panel
        if action in ("remove_tag", "replace_tag"):
            focused = self.focused
            return focused is not None and focused.id == "tags"
        return True

    def _highlighted_tag(self) -> str | None:
        tags = self.query_one("#tags", OptionList)
        if tags.highlighted is None or not tags.options:
            self.notify("no tags yet", severity="warning")
            return None
        return str(tags.get_option_at_index(tags.highlighted).id)

    def action_remove_tag(self) -> None:
        tag = self._highlighted_tag()
        if tag is not None:
            self.run_op(lambda store: store.remove_tag(tag))

    def action_replace_tag(self) -> None:
        from loratui.screens.dialogs import InputDialog

        tag = self._highlighted_tag()
        if tag is None:
            return

        def answered(new: str | None) -> None:
            if new:
                self.run_op(lambda store: store.replace_tag(tag, new))

        self.app.push_screen(InputDialog(f"Replace the tag '{tag}' everywhere with:", tag), answered)

    def action_filter(self) -> None:
        keys = [k for k, _ in FILTERS]
        self.filter_mode = keys[(keys.index(self.filter_mode) + 1) % len(keys)]
        if self.filter_mode == "no_trigger" and not self.app.state.trigger:  # type: ignore[attr-defined]
            self.notify("no trigger word set yet (t sets one)", severity="warning")
        self._refresh(self.entries, self.tags)

    # -- auto-captioning ----------------------------------------------------------------------

    def action_autocaption(self) -> None:
        from loratui.screens.dialogs import ChoiceDialog

        missing = [e for e in self.entries if not e.caption and e.source != "unreadable"]
        if not missing:
            self.notify("every image has a caption already")
            return
        choices = [
            ("blip", "blip: a sentence per image (BLIP model)"),
            ("tagger", "tagger: booru-style tags (WD14-style model)"),
            ("filename", "filename: words from the file name (no model)"),
        ]

        def answered(name: str | None) -> None:
            if name:
                self.autocaption(name, [e.image for e in missing])

        self.app.push_screen(
            ChoiceDialog(f"Auto-caption {len(missing)} image(s) without a caption", choices,
                         "Models load from the local cache first; nothing is overwritten."),
            answered,
        )

    @work(thread=True, exclusive=True, group="autocaption", exit_on_error=False)
    def autocaption(self, name: str, paths: list[Path]) -> None:
        from loratui.engine.data.captioners import caption_paths, load_captioner
        from loratui.engine.data.tags import with_trigger_first

        bar = self.query_one("#autocaption", ProgressBar)
        self.app.call_from_thread(bar.add_class, "running")
        self.app.call_from_thread(bar.update, total=len(paths), progress=0)
        self.app.call_from_thread(self.notify, f"loading the {name} captioner…")
        captioner = load_captioner(name)
        trigger = self.app.state.trigger  # type: ignore[attr-defined]
        captions: dict[str, str] = {}
        failed = 0
        root = self.folder
        for batch in caption_paths(captioner, paths,
                                   lambda done, total: self.app.call_from_thread(bar.update, progress=done)):
            for item in batch:
                if item.caption:
                    text = with_trigger_first(item.caption, trigger) if trigger else item.caption
                    captions[item.path.relative_to(root).as_posix()] = text  # type: ignore[union-attr]
                else:
                    failed += 1
        self.app.call_from_thread(bar.remove_class, "running")
        if failed:
            self.app.call_from_thread(self.notify, f"{failed} image(s) got no caption", severity="warning")
        if captions:
            self.app.call_from_thread(
                self.run_op, lambda store: store.set_captions(captions, f"auto-caption {len(captions)} image(s)")
            )

    # -- Back / Next --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.step_before("captions")  # type: ignore[attr-defined]

    def action_next(self) -> None:
        if self.store is None:
            self.notify("still reading the captions…")
            return
        missing = sum(1 for e in self.entries if not e.caption)
        if not missing:
            self.app.step_after("captions")  # type: ignore[attr-defined]
            return
        from loratui.screens.dialogs import ConfirmDialog

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.step_after("captions")  # type: ignore[attr-defined]

        self.app.push_screen(
            ConfirmDialog(f"{missing} image(s) have no caption", "They train on the trigger word alone. "
                          "Continue anyway, or Stay and press a to auto-caption them?", yes="Continue", no="Stay"),
            answered,
        )
