"""The dataset folder: which images there are, their captions and their repeats.

Conventions (DESIGN.md): images with a sidecar ``x.txt`` caption (kohya; UTF-8), an optional
``metadata.csv`` (``filename,prompt``; lora-scripts) whose captions lose to a sidecar, and
kohya repeat folders (``10_mycat/`` repeats each image in it ten times). Nothing outside the
folder is ever read: every file the scan opens (image, sidecar caption, ``metadata.csv``) goes
through ``refuse_reason`` first, the one rule ``loratui check`` applies too, so a caption that
links to ``/etc/passwd`` can never end up in a LoRA's metadata.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from loratui.engine.data.masks import MASK_SUFFIX, is_mask_name, mask_file_for
from loratui.engine.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
METADATA_NAME = "metadata.csv"
REPEAT_FOLDER = re.compile(r"^(\d+)_(.+)$")
# Where the wizard moves an image the user excludes (with its caption), keeping its subfolder;
# hidden, so the scan here and ``loratui check`` skip it like every hidden entry, and the user
# can move it back by hand.
EXCLUDED_DIR = ".excluded"


@dataclass(frozen=True)
class ImageRecord:
    """One training image: where it is, its caption (or None) and how often it repeats."""

    path: Path
    rel: str  # POSIX path relative to the dataset folder
    caption: str | None
    repeats: int = 1
    caption_source: str = "none"  # "sidecar" | "metadata" | "none"


@dataclass
class Dataset:
    """What a scan of a dataset folder found."""

    folder: Path
    images: list[ImageRecord]
    notes: list[str] = field(default_factory=list)  # things the user should be told

    def require_images(self) -> "Dataset":
        """This dataset, or a DatasetError when the folder holds no images at all."""
        if not self.images:
            raise DatasetError(
                f"{self.folder}: no images found (looked for .jpg .jpeg .png .webp .bmp)",
                "point FOLDER at the folder that holds the photos",
            )
        return self


def is_image_name(name: str) -> bool:
    """True when ``name`` has one of the image extensions loratui trains on."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def is_inside(path: Path, folder: Path) -> bool:
    """True when ``path`` resolves (symlinks followed) to somewhere inside ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a link loop (Python < 3.13)
        return False
    return True


def refuse_reason(path: Path, folder: Path) -> str | None:
    """Why the dataset file ``path`` must not be read, or None when it may be.

    A file is read only when it resolves inside ``folder`` (a link out could carry a secret
    into the LoRA's caption metadata) and is a regular file (a FIFO or a device would block
    the read forever). ``stat`` itself never blocks, even on a FIFO.
    """
    try:
        mode = os.stat(path).st_mode  # first: a link loop is ELOOP here, not a crash in resolve()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not is_inside(path, folder):
        return "a link to a file outside the folder; not read"
    if not stat.S_ISREG(mode):
        return f"{_kind(mode)}, not a regular file; not read"
    return None


def exclude_image(folder: Path, rel: str) -> Path:
    """Move the image ``rel`` (relative to ``folder``) and its sidecar caption into
    ``folder/.excluded/`` (same subfolder; a free name if one is taken); returns the new image
    path. DatasetError for a path that is not an image file inside the folder."""
    path = folder / rel
    if not rel or rel.endswith("/") or not is_image_name(rel) or not path.is_file() or path.is_symlink() \
            or not is_inside(path, folder):
        raise DatasetError(f"{path}: not an image file inside the folder, so it cannot be excluded",
                           "move or delete it yourself")
    sub = Path(rel).parent
    target_dir = folder / EXCLUDED_DIR / sub
    target_dir.mkdir(parents=True, exist_ok=True)
    stem, n = path.stem, 1
    while (target_dir / f"{stem}{path.suffix}").exists() or (target_dir / f"{stem}.txt").exists():
        n += 1
        stem = f"{path.stem}-{n}"
    target = target_dir / f"{stem}{path.suffix}"
    caption = path.with_suffix(".txt")
    os.replace(path, target)  # a rename on the same disk: nothing is copied, nothing half-moved
    if caption.is_file() and not caption.is_symlink():
        os.replace(caption, target_dir / f"{stem}.txt")
    mask = mask_file_for(path)
    if mask.is_file() and not mask.is_symlink():
        os.replace(mask, target_dir / f"{stem}{MASK_SUFFIX}")
    return target


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a special file"


def iter_image_paths(folder: Path, skipped: list[str] | None = None) -> list[Path]:
    """Every image file under ``folder`` that may be read (sorted, hidden entries skipped).

    Image-named entries that ``refuse_reason`` turns down are left out; with ``skipped``
    given, a note naming each of them is appended to it.
    """
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        # os.walk skips a folder it cannot list without a word: the user must hear of it
        where = Path(exc.filename) if exc.filename else folder
        if where == folder:
            raise DatasetError(f"{folder}: cannot be read ({exc.strerror or exc})",
                               "fix its permissions (chmod u+rx) or pass another folder")
        if skipped is not None:
            skipped.append(f"skipped {where.relative_to(folder).as_posix()}/: a folder that cannot be read "
                           f"({exc.strerror or exc}); none of its images are trained")

    for root, dirs, files in os.walk(folder, onerror=unreadable, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not is_image_name(name) or is_mask_name(name):
                continue  # NAME.mask.png is the mask of NAME.jpg (data/masks.py), never trained on
            path = Path(root) / name
            reason = refuse_reason(path, folder)
            if reason is None:
                found.append(path)
            elif skipped is not None:
                skipped.append(f"skipped {path.relative_to(folder).as_posix()}: {reason}")
    return found


def repeats_for(rel: str) -> int:
    """The kohya repeat count of an image from its top-level folder name (``10_cat`` → 10)."""
    parts = Path(rel).parts
    if len(parts) > 1:
        match = REPEAT_FOLDER.match(parts[0])
        if match:
            return max(1, int(match.group(1)))
    return 1


def read_sidecar(image: Path, folder: Path | None = None) -> str | None:
    """The caption in ``image``'s ``.txt`` sidecar, stripped; None when there is none.

    With ``folder`` (the dataset), a sidecar that ``refuse_reason`` turns down is a
    DatasetError naming it, never read.
    """
    sidecar = image.with_suffix(".txt")
    if not os.path.lexists(sidecar):
        return None
    if folder is not None and (reason := refuse_reason(sidecar, folder)) is not None:
        raise DatasetError(f"{sidecar}: {reason}", "copy the caption into the dataset folder")
    if not sidecar.is_file():
        return None  # a dangling link or a FIFO read without a folder to judge it by
    try:
        # bytes.decode is strict at the end of the data; read_text drops a cut-off BOM
        return sidecar.read_bytes().decode("utf-8-sig").strip()
    except OSError as exc:  # no permission, an I/O error: the same answer as for an image
        raise DatasetError(
            f"{sidecar}: caption cannot be read ({exc.strerror or exc})", "fix its permissions or delete it"
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{sidecar}: caption is not UTF-8 text", "re-save it as UTF-8 or delete it"
        ) from exc


def read_metadata_csv(folder: Path) -> dict[str, str]:
    """Captions from ``metadata.csv`` (``filename,prompt``), keyed by POSIX relative path.

    A ``metadata.csv`` that ``refuse_reason`` turns down (a link out of the folder, a FIFO)
    is a DatasetError naming it, never read.
    """
    path = folder / METADATA_NAME
    if not os.path.lexists(path):
        return {}
    if (reason := refuse_reason(path, folder)) is not None:
        raise DatasetError(f"{path}: {reason}", "copy the captions into the dataset folder")
    try:
        # bytes, not read_text(): newline translation would rewrite \r inside quoted captions;
        # utf-8-sig because a BOM from Excel is not part of the header
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})", "fix its permissions or delete it") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text", "re-save it as UTF-8 CSV") from exc
    try:
        return _parse_metadata(path, text)
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a valid CSV file ({exc})", "fix or delete the file") from None


def _parse_metadata(path: Path, text: str) -> dict[str, str]:
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        return {}
    names = [h.strip().lower() for h in header]
    if "filename" not in names:
        raise DatasetError(
            f"{path}: the first row must name the columns 'filename,prompt'",
            "add the header row or delete the file",
        )
    file_col = names.index("filename")
    text_col = next((names.index(n) for n in ("prompt", "caption", "text") if n in names), None)
    if text_col is None:
        raise DatasetError(f"{path}: no 'prompt' column", "name the caption column 'prompt'")
    captions: dict[str, str] = {}
    for row in rows:
        if len(row) <= max(file_col, text_col):
            continue
        name = row[file_col].strip().replace("\\", "/")
        if name:
            captions[name] = row[text_col].strip()
    return captions


def scan(folder: str | os.PathLike[str]) -> Dataset:
    """Scan a dataset folder: images, captions (sidecar wins over metadata.csv) and repeats."""
    root = Path(folder)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder", "check the path")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder", "pass the folder that holds the images")
    images: list[ImageRecord] = []
    notes: list[str] = []
    meta_path = root / METADATA_NAME
    if os.path.lexists(meta_path) and (reason := refuse_reason(meta_path, root)):
        notes.append(f"skipped {METADATA_NAME}: {reason}")  # a refused file is told, not fatal
        metadata: dict[str, str] = {}
    else:
        metadata = read_metadata_csv(root)
    conflicts = 0
    for path in iter_image_paths(root, skipped=notes):
        rel = path.relative_to(root).as_posix()
        try:
            sidecar = read_sidecar(path, root)
        except DatasetError as exc:  # one bad caption file must not stop the whole scan
            notes.append(f"skipped {rel}: {exc}")
            continue
        from_csv = metadata.get(rel)
        if sidecar is not None:
            if from_csv is not None and from_csv != sidecar:
                conflicts += 1
            caption, source = sidecar, "sidecar"
        elif from_csv is not None:
            caption, source = from_csv, "metadata"
        else:
            caption, source = None, "none"
        images.append(ImageRecord(path, rel, caption, repeats_for(rel), source))
    if conflicts:
        notes.append(
            f"{conflicts} caption(s) in {METADATA_NAME} differ from the .txt beside the image; "
            "the .txt wins"
        )
    return Dataset(root, images, notes)
