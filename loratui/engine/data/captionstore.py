"""The caption store: one API over sidecar ``.txt`` files, ``metadata.csv`` and repeat folders.

Every edit is safe: writes are atomic (temp file, fsync, rename), and every operation, one
caption or a bulk edit, is recorded in a journal before any file changes, so it can be undone
and redone, even after a crash half-way through. The journal keeps each file's exact bytes
before and after, so undo restores a file byte for byte. It lives in the user state dir
(``journals/KEY/journal.json``, KEY from the folder's absolute path), never in the dataset,
which holds only the user's images and captions (older versions kept it in
``FOLDER/.loratui/``; such a journal is moved out on first use). An edit changes only the
caption text: the file's BOM, trailing line ending, mode and owner stay as they were. Nothing
outside the dataset folder is ever read or written through a caption path, and no file is
written through a symbolic link.

The sidecar ``.txt`` is authoritative (kohya). When ``metadata.csv`` has a row for an image,
the row is updated in the same operation, so the two never disagree after an edit.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from loratui.engine import atomic, paths
from loratui.engine.data.dataset import METADATA_NAME, is_inside, iter_image_paths, read_metadata_csv, repeats_for
from loratui.engine.errors import DatasetError
from loratui.engine.data.tags import dedupe_tags, join_tags, normalise_tag, split_tags, with_trigger_first

JOURNAL_DIR = ".loratui"  # where older versions kept the journal, inside the dataset
JOURNAL_NAME = "journal.json"
JOURNAL_VERSION = 1
MAX_HISTORY = 200  # operations kept for undo; the oldest are forgotten first


@dataclass(frozen=True)
class CaptionEntry:
    """One image and its caption as the store sees it."""

    rel: str  # POSIX path of the image, relative to the folder
    image: Path
    caption: str | None  # None: no caption (or an unreadable one)
    source: str  # "sidecar" | "metadata" | "none" | "unreadable"
    repeats: int = 1


@dataclass(frozen=True)
class OpResult:
    """What an operation did: its label and the caption files it changed."""

    label: str
    files: tuple[str, ...] = ()

    @property
    def changed(self) -> int:
        return len(self.files)


@dataclass
class _Change:
    file: str  # POSIX path relative to the folder (a .txt or metadata.csv)
    before: bytes | None  # None: the file did not exist
    after: bytes | None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "before": _enc(self.before), "after": _enc(self.after)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Change:
        return cls(str(data["file"]), _dec(data["before"]), _dec(data["after"]))


@dataclass
class _Op:
    label: str
    changes: list[_Change]
    t: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "t": self.t, "changes": [c.to_json() for c in self.changes]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Op:
        return cls(str(data["label"]), [_Change.from_json(c) for c in data["changes"]], float(data.get("t", 0)))


def _enc(data: bytes | None) -> dict[str, str] | None:
    # Text stays readable in the journal; anything that is not UTF-8 is kept exactly as base64.
    if data is None:
        return None
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _dec(data: dict[str, str] | None) -> bytes | None:
    if data is None:
        return None
    if "text" in data:
        return data["text"].encode("utf-8")
    return base64.b64decode(data["b64"])


def _write_error(exc: OSError, where: Path) -> DatasetError:
    return DatasetError(
        f"{exc.filename or where}: cannot write ({exc.strerror or exc})",
        "nothing was changed; free some space or fix the permissions and try again",
    )


def journal_path(folder: Path) -> Path:
    """Where the undo journal of dataset ``folder`` is kept: in the user state dir, keyed by
    the folder's absolute path (links resolved, so two ways to one folder share one history)."""
    key = hashlib.sha256(os.fsencode(str(folder.resolve()))).hexdigest()[:20]
    return paths.state_dir() / "journals" / key / JOURNAL_NAME


def keep_framing(before: bytes | None, text: bytes) -> bytes:
    """``text`` framed as the file it replaces was: its UTF-8 BOM and its line ending at the
    end (or their absence) kept, so an edit changes only the caption text."""
    if before is None:
        return text
    bom = b"\xef\xbb\xbf" if before.startswith(b"\xef\xbb\xbf") else b""
    stripped = before.rstrip(b" \t")
    ending = next((e for e in (b"\r\n", b"\n", b"\r") if stripped.endswith(e)), b"")
    return bom + text + (ending if text else b"")


def clean_caption(text: str) -> str:
    """A caption as stored: surrounding whitespace trimmed (kohya strips it too), and line
    breaks as ``\n``: a bare ``\r`` would not survive a CSV reader in text mode."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


class CaptionStore:
    """Captions of the images in one dataset folder, with undoable edits."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise DatasetError(f"{root}: no such folder", "check the path")
        self.root = root
        self.notes: list[str] = []  # things the user should be told (a broken metadata.csv, …)
        self._journal_notes: list[str] = []
        self._entries: dict[str, CaptionEntry] = {}
        self._folder_key = str(root.resolve())
        self._journal_path = journal_path(root)
        self._done: list[_Op] = []
        self._undone: list[_Op] = []
        self._load_journal()
        self.reload()

    # -- reading ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read every caption again from disk."""
        self.notes = list(self._journal_notes)
        self._metadata_ok = True
        try:
            metadata = read_metadata_csv(self.root)
        except DatasetError as exc:
            metadata = {}
            self._metadata_ok = False  # never rewrite a file we could not read
            self.notes.append(f"{exc.message}; it is ignored and left as it is")
        entries = {}
        for path in iter_image_paths(self.root):
            rel = path.relative_to(self.root).as_posix()
            entries[rel] = self._read_entry(path, rel, metadata.get(rel))
        self._entries = entries
        self._metadata_rows = metadata

    def _read_entry(self, image: Path, rel: str, from_csv: str | None) -> CaptionEntry:
        sidecar = image.with_suffix(".txt")
        repeats = repeats_for(rel)
        if sidecar.is_file() and is_inside(sidecar, self.root):
            try:
                text = sidecar.read_bytes().decode("utf-8-sig")
            except (UnicodeDecodeError, OSError):  # another encoding, or no permission to read it
                return CaptionEntry(rel, image, None, "unreadable", repeats)
            return CaptionEntry(rel, image, clean_caption(text), "sidecar", repeats)
        if from_csv is not None:
            return CaptionEntry(rel, image, from_csv, "metadata", repeats)
        return CaptionEntry(rel, image, None, "none", repeats)

    @property
    def entries(self) -> list[CaptionEntry]:
        """Every image, in folder order."""
        return list(self._entries.values())

    def entry(self, rel: str) -> CaptionEntry:
        """The entry of image ``rel`` (DatasetError when the folder has no such image)."""
        try:
            return self._entries[rel]
        except KeyError:
            raise DatasetError(f"{self.root / rel}: not an image of this dataset", "check the name") from None

    def caption(self, rel: str) -> str | None:
        """The caption of image ``rel``, or None."""
        return self.entry(rel).caption

    def tag_frequencies(self) -> list[tuple[str, int]]:
        """Each tag and how many captions have it, most common first (tags compared normalised)."""
        counts: Counter[str] = Counter()
        spelled: dict[str, Counter[str]] = {}
        for e in self._entries.values():
            for tag in dedupe_tags(split_tags(e.caption or "")):
                key = normalise_tag(tag)
                counts[key] += 1
                spelled.setdefault(key, Counter())[tag] += 1
        rows = [(spelled[k].most_common(1)[0][0], n) for k, n in counts.items()]
        return sorted(rows, key=lambda r: (-r[1], r[0].casefold()))

    def find(self, tag: str | None = None, text: str | None = None) -> list[str]:
        """Images whose caption has ``tag`` (a whole tag) and contains ``text`` (any case).

        Give one or both; with neither, every image is found.
        """
        key = normalise_tag(tag) if tag else None
        needle = text.casefold() if text else None
        found = []
        for rel, e in self._entries.items():
            cap = e.caption or ""
            if key is not None and key not in {normalise_tag(t) for t in split_tags(cap)}:
                continue
            if needle is not None and needle not in cap.casefold():
                continue
            found.append(rel)
        return found

    # -- operations (each one undoable) -------------------------------------------------------

    def set_caption(self, rel: str, text: str) -> OpResult:
        """Set the caption of one image (a new sidecar if it had none)."""
        self.entry(rel)
        return self._apply(f"edit {rel}", {rel: clean_caption(text)})

    def set_captions(self, captions: dict[str, str], label: str = "set captions") -> OpResult:
        """Set many captions as one operation (auto-captioning uses this)."""
        for rel in captions:
            self.entry(rel)
        return self._apply(label, {rel: clean_caption(t) for rel, t in captions.items()})

    def add_trigger(self, trigger: str, rels: Iterable[str] | None = None) -> OpResult:
        """Put ``trigger`` first in every caption, once (images without a caption get it alone)."""
        trigger = " ".join(trigger.split())
        if not trigger or "," in trigger:
            raise DatasetError(f"trigger word {trigger!r} is empty or has a comma", "use one word or phrase")
        return self._bulk(f"add trigger {trigger!r}", lambda c: with_trigger_first(c or "", trigger), rels, True)

    def remove_tag(self, tag: str, rels: Iterable[str] | None = None) -> OpResult:
        """Remove ``tag`` (compared normalised) from every caption."""
        key = normalise_tag(tag)
        return self._bulk(
            f"remove tag {tag!r}", lambda c: join_tags([t for t in split_tags(c) if normalise_tag(t) != key]), rels
        )

    def replace_tag(self, old: str, new: str, rels: Iterable[str] | None = None) -> OpResult:
        """Replace tag ``old`` with ``new`` everywhere (no duplicate if ``new`` is there already)."""
        key = normalise_tag(old)
        new = new.strip()

        def edit(caption: str) -> str:
            tags = split_tags(caption)
            if not any(normalise_tag(t) == key for t in tags):
                return caption
            swapped = [new if normalise_tag(t) == key else t for t in tags]
            return join_tags(dedupe_tags([t for t in swapped if t]))

        return self._bulk(f"replace tag {old!r} with {new!r}", edit, rels)

    def dedupe_tags(self, rels: Iterable[str] | None = None) -> OpResult:
        """Drop repeated tags in every caption (the first one stays)."""

        def edit(caption: str) -> str:
            tags = split_tags(caption)
            kept = dedupe_tags(tags)
            return caption if kept == tags else join_tags(kept)

        return self._bulk("remove duplicate tags", edit, rels)

    def add_prefix(self, prefix: str, rels: Iterable[str] | None = None) -> OpResult:
        """Put ``prefix`` (text, as typed) before every caption that does not start with it."""
        if not prefix.strip():
            return OpResult("add prefix")
        return self._bulk(f"add prefix {prefix!r}", lambda c: c if c.startswith(prefix) else prefix + c, rels)

    def add_suffix(self, suffix: str, rels: Iterable[str] | None = None) -> OpResult:
        """Put ``suffix`` (text, as typed) after every caption that does not end with it."""
        if not suffix.strip():
            return OpResult("add suffix")
        return self._bulk(f"add suffix {suffix!r}", lambda c: c if c.endswith(suffix) else c + suffix, rels)

    def write_metadata_csv(self) -> OpResult:
        """Write every caption to ``metadata.csv`` (``filename,prompt``), replacing it; undoable."""
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["filename", "prompt"])
        for rel, e in self._entries.items():
            if e.caption is not None:
                writer.writerow([rel, e.caption])
        path = self.root / METADATA_NAME
        self._check_writable(METADATA_NAME)
        before = path.read_bytes() if path.is_file() else None
        after = buf.getvalue().encode("utf-8")
        if before == after:
            return OpResult(f"write {METADATA_NAME}")
        return self._commit(_Op(f"write {METADATA_NAME}", [_Change(METADATA_NAME, before, after)]))

    # -- undo and redo ------------------------------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def history(self) -> list[str]:
        """Labels of the operations that can be undone, oldest first."""
        return [op.label for op in self._done]

    def undo(self) -> OpResult | None:
        """Undo the last operation; None when there is nothing to undo."""
        if not self._done:
            return None
        op = self._done[-1]
        self._verify(op, forward=False)
        self._done.pop()
        self._undone.append(op)
        self._save_journal()
        self._write_files([(c.file, c.before) for c in op.changes])
        self.reload()
        return OpResult(f"undo {op.label}", tuple(c.file for c in op.changes))

    def redo(self) -> OpResult | None:
        """Redo the last undone operation; None when there is nothing to redo."""
        if not self._undone:
            return None
        op = self._undone[-1]
        self._verify(op, forward=True)
        self._undone.pop()
        self._done.append(op)
        self._save_journal()
        self._write_files([(c.file, c.after) for c in op.changes])
        self.reload()
        return OpResult(f"redo {op.label}", tuple(c.file for c in op.changes))

    # -- the machinery ------------------------------------------------------------------------

    def _bulk(
        self,
        label: str,
        edit: Callable[[str], str],
        rels: Iterable[str] | None,
        include_uncaptioned: bool = False,
    ) -> OpResult:
        targets = list(rels) if rels is not None else list(self._entries)
        new: dict[str, str] = {}
        for rel in targets:
            e = self.entry(rel)
            if e.source == "unreadable":
                continue  # never overwrite what we could not read; the user must fix it first
            if e.caption is None and not include_uncaptioned:
                continue
            after = clean_caption(edit(e.caption or ""))
            if after != (e.caption or "") or e.caption is None:
                new[rel] = after
        return self._apply(label, new)

    def _apply(self, label: str, captions: dict[str, str]) -> OpResult:
        """Turn new captions into file changes (sidecars and metadata.csv rows) and commit them."""
        changes: list[_Change] = []
        csv_updates: dict[str, str] = {}
        for rel, text in captions.items():
            sidecar_rel = PurePosixPath(rel).with_suffix(".txt").as_posix()
            self._check_writable(sidecar_rel)
            path = self.root / sidecar_rel
            try:
                before = path.read_bytes() if path.is_file() else None
            except OSError as exc:  # undo needs the old bytes: never replace what we cannot read
                raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})",
                                   "nothing was changed; fix its permissions and try again") from None
            after = keep_framing(before, text.encode("utf-8"))
            if before != after:
                changes.append(_Change(sidecar_rel, before, after))
            if rel in self._metadata_rows and self._metadata_rows[rel] != text:
                csv_updates[rel] = text
        if csv_updates and self._metadata_ok:
            change = self._metadata_change(csv_updates)
            if change is not None:
                changes.append(change)
        if not changes:
            return OpResult(label)
        return self._commit(_Op(label, changes))

    def _metadata_change(self, updates: dict[str, str]) -> _Change | None:
        """metadata.csv with the prompt of the rows in ``updates`` replaced; other cells kept."""
        path = self.root / METADATA_NAME
        self._check_writable(METADATA_NAME)
        before = path.read_bytes()
        text = before.decode("utf-8-sig")
        bom = "\ufeff" if before.startswith(b"\xef\xbb\xbf") else ""
        rows = list(csv.reader(io.StringIO(text, newline="")))
        names = [h.strip().lower() for h in rows[0]]
        file_col = names.index("filename")
        text_col = next(names.index(n) for n in ("prompt", "caption", "text") if n in names)
        for row in rows[1:]:
            if len(row) > max(file_col, text_col):
                name = row[file_col].strip().replace("\\", "/")
                if name in updates:
                    row[text_col] = updates[name]
        buf = io.StringIO(newline="")
        csv.writer(buf, lineterminator="\r\n" if "\r\n" in text else "\n").writerows(rows)
        after = (bom + buf.getvalue()).encode("utf-8")
        return None if after == before else _Change(METADATA_NAME, before, after)

    def _commit(self, op: _Op) -> OpResult:
        # Write-ahead: the journal knows the operation before any file changes, so a crash
        # half-way leaves every file old or new (atomic writes) and the whole op undoable.
        done, undone = list(self._done), list(self._undone)
        self._done.append(op)
        del self._done[:-MAX_HISTORY]
        self._undone.clear()
        try:
            self._save_journal()
        except OSError as exc:
            self._done, self._undone = done, undone
            raise _write_error(exc, self._journal_path) from None
        try:
            self._write_files([(c.file, c.after) for c in op.changes])
        except Exception as exc:
            # A failed write (disk full, permissions): put back what was written, forget the op.
            self._write_files([(c.file, c.before) for c in op.changes], best_effort=True)
            self._done, self._undone = done, undone
            try:
                self._save_journal()
            except OSError:
                pass  # the op stays in the journal; undoing it later is harmless (files are "before")
            self.reload()
            if isinstance(exc, OSError):
                raise _write_error(exc, self.root) from None
            raise
        self.reload()
        return OpResult(op.label, tuple(c.file for c in op.changes))

    def _verify(self, op: _Op, forward: bool) -> None:
        """Refuse to undo/redo over a file someone changed since (that edit would be lost)."""
        for c in op.changes:
            self._check_writable(c.file)
            path = self.root / c.file
            current = path.read_bytes() if path.is_file() else None
            if current not in (c.before, c.after):
                verb = "redo" if forward else "undo"
                raise DatasetError(
                    f"{path}: changed since '{op.label}'; {verb} would overwrite that change",
                    "edit the caption by hand instead",
                )

    def _write_files(self, writes: list[tuple[str, bytes | None]], best_effort: bool = False) -> None:
        for rel, data in writes:
            try:
                self._check_writable(rel)
                path = self.root / rel
                current = path.read_bytes() if path.is_file() else None
                if current == data:
                    continue  # already so (a resumed or rolled-back op): no needless write
                if data is None:
                    path.unlink()
                else:  # a caption is the user's file: its mode and owner stay as they were
                    atomic.write_bytes(path, data, keep_owner=True)
            except (OSError, DatasetError):
                if not best_effort:
                    raise

    def _check_writable(self, rel: str) -> None:
        """Caption paths must stay in the folder and must not be links (writes would follow)."""
        pure = PurePosixPath(rel)
        path = self.root / rel
        if pure.is_absolute() or ".." in pure.parts or not rel:
            raise DatasetError(f"{rel}: outside the dataset folder {self.root}", "loratui only edits files inside it")
        if path.is_symlink():
            raise DatasetError(f"{path}: is a link; loratui does not write through links", "replace it with a file")
        if not is_inside(path, self.root):  # a linked folder on the way out
            raise DatasetError(f"{rel}: outside the dataset folder {self.root}", "loratui only edits files inside it")
        if JOURNAL_DIR in pure.parts:
            raise DatasetError(f"{rel}: not a caption file", "loratui keeps its journal there")

    def _load_journal(self) -> None:
        legacy = self.root / JOURNAL_DIR / JOURNAL_NAME
        source = self._journal_path
        if not source.is_file():
            if not (legacy.is_file() and not legacy.is_symlink()):
                return
            source = legacy  # an older version's journal, inside the dataset: moved out below
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
            if data.get("version") != JOURNAL_VERSION:
                raise ValueError("unknown version")
            if source == self._journal_path and data.get("folder", self._folder_key) != self._folder_key:
                raise ValueError("it belongs to another folder")
            self._done = [_Op.from_json(o) for o in data["done"]]
            self._undone = [_Op.from_json(o) for o in data["undone"]]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            # The captions are safe on disk; only the undo history is lost, and we say so.
            self._journal_notes.append(f"{source}: unreadable undo history ({exc}); starting a new one")
            self._done, self._undone = [], []
            return
        if source == legacy:
            self._move_out(legacy)

    def _move_out(self, legacy: Path) -> None:
        """Keep an older version's journal in the state dir and take it out of the dataset."""
        try:
            self._save_journal()
        except OSError:
            return  # the state dir is not writable now: read it from the dataset again next time
        with contextlib.suppress(OSError):
            legacy.unlink()
            legacy.parent.rmdir()  # only when nothing else is in it

    def _save_journal(self) -> None:
        data = {
            "version": JOURNAL_VERSION,
            "folder": self._folder_key,
            "done": [op.to_json() for op in self._done],
            "undone": [op.to_json() for op in self._undone],
        }
        atomic.write_text(self._journal_path, json.dumps(data, ensure_ascii=False))
