"""Which dataset a run trains on, so a resume can tell when it would train on something else.

A run records ``RUN_DIR/dataset.json`` when it starts: the dataset folder's absolute path and,
for each image, its size, modification time, content hash, caption hash and repeats. A resume
compares the folder as it is now: images added, removed or changed, captions edited, repeats
changed, or the folder resolving to another path (a resume from another working directory).
Training on changed data makes a different LoRA, so a resume refuses with what changed, and
continuing anyway is a deliberate choice (``--allow-dataset-change``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from loratui.engine import atomic
from loratui.engine.errors import RunError
from loratui.engine.hashing import file_sha256

IDENTITY = "dataset.json"
SHOWN = 3  # names quoted per kind of change



def fingerprint(dataset: Any, known: dict[str, dict] | None = None) -> dict[str, Any]:
    """The identity of ``dataset`` (a scanned Dataset). An image whose size and mtime match
    ``known`` keeps its recorded hash instead of being read again."""
    known = known or {}
    files: dict[str, dict] = {}
    for record in dataset.images:
        stat = record.path.stat()
        seen = known.get(record.rel, {})
        same = seen.get("size") == stat.st_size and seen.get("mtime_ns") == stat.st_mtime_ns
        files[record.rel] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": seen["sha256"] if same and "sha256" in seen else file_sha256(record.path),
            "caption_sha256": hashlib.sha256((record.caption or "").encode("utf-8")).hexdigest(),
            "repeats": record.repeats,
        }
    return {"folder": str(Path(dataset.folder).resolve()), "files": files}


def identity(dataset: Any, reg: Any = None, old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The identity of a run's data: the dataset and, when it has them, its regularisation
    images (``reg``) under ``"reg"``; ``old`` (a recorded identity) spares re-reading files whose
    size and mtime did not change."""
    old = old or {}

    def known(recorded: dict | None, folder: Any) -> dict | None:
        same = recorded and recorded.get("folder") == str(Path(folder).resolve())
        return recorded.get("files") if same else None

    out = fingerprint(dataset, known(old, dataset.folder))
    if reg is not None:
        out["reg"] = fingerprint(reg, known(old.get("reg"), reg.folder))
    return out


def record_identity(run_dir: Path, dataset: Any, reg: Any = None) -> None:
    atomic.write_json(run_dir / IDENTITY, identity(dataset, reg))


def read_identity(run_dir: Path) -> dict[str, Any] | None:
    """The recorded identity; None for a run from before loratui recorded one (or a damaged one)."""
    try:
        data = json.loads((run_dir / IDENTITY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two identities, in words ("2 images added: a.png, b.png")."""
    out = []
    if old.get("folder") != new["folder"]:
        out.append(f"the dataset is now {new['folder']}, the run trained on {old.get('folder')}")
    before, now = old["files"], new["files"]
    kinds = {
        "added": sorted(set(now) - set(before)),
        "removed": sorted(set(before) - set(now)),
        "changed": sorted(k for k in set(now) & set(before) if now[k]["sha256"] != before[k].get("sha256")),
        "with a changed caption": sorted(k for k in set(now) & set(before)
                                         if now[k]["caption_sha256"] != before[k].get("caption_sha256")),
        "with changed repeats": sorted(k for k in set(now) & set(before)
                                       if now[k]["repeats"] != before[k].get("repeats")),
    }
    for kind, names in kinds.items():
        if names:
            shown = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
            out.append(f"{len(names)} image{'s' if len(names) != 1 else ''} {kind}: {shown}")
    old_reg, new_reg = old.get("reg"), new.get("reg")
    if old_reg is None and new_reg is not None:
        out.append(f"regularisation images from {new_reg['folder']} are new")
    elif old_reg is not None and new_reg is None:
        out.append(f"the run trained with regularisation images from {old_reg.get('folder')}")
    elif old_reg is not None and new_reg is not None:
        out += [f"regularisation images: {change}" for change in changes(old_reg, new_reg)]
    return out


def check_identity(run_dir: Path, dataset: Any, reg: Any = None) -> None:
    """On resume: the dataset (and regularisation images) must be the ones the run started on.
    Raises RunError naming what changed; a run without a recorded identity gets one now."""
    old = read_identity(run_dir)
    if old is None:
        record_identity(run_dir, dataset, reg)
        return
    found = changes(old, identity(dataset, reg, old))
    if found:
        raise RunError(
            f"{run_dir}: the dataset changed since this run started ({'; '.join(found)})",
            "put the files back as they were, or resume with --allow-dataset-change to train on the folder "
            "as it is now (a different LoRA), or start a new run",
        )


def accept_dataset(run_dir: Path, dataset: Any, reg: Any = None) -> list[str]:
    """``--allow-dataset-change``: take the dataset as it is now as the run's; what changed."""
    old = read_identity(run_dir)
    new = identity(dataset, reg, old)
    atomic.write_json(run_dir / IDENTITY, new)
    return changes(old, new) if old else []
