"""Atomic file writes: a temp file in the same folder, fsync, then rename over the target.

A reader (or a crash) sees either the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], keep_owner: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` atomically.

    On any exception the temp file is removed and ``target`` is left untouched. The temp file
    is private (0600) as ``mkstemp`` makes it; with ``keep_owner`` (a user's own files, such as
    captions) the new file gets the mode and owner of the file it replaces, or for a new file
    the mode the umask gives and, when run as root, the owner of its folder, as an editor would.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if keep_owner:
            _take_owner_and_mode(tmp_path, target)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes, keep_owner: bool = False) -> None:
    """Write ``data`` to ``target`` atomically (``keep_owner``: see ``atomic_path``)."""
    with atomic_path(target, keep_owner) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _take_owner_and_mode(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the mode and owner of ``target`` (or of a new file in its folder)."""
    try:
        old = os.stat(target)
        mode, uid, gid = stat.S_IMODE(old.st_mode), old.st_uid, old.st_gid
    except FileNotFoundError:
        folder = os.stat(target.parent)
        mode = 0o666 & ~_umask()
        root = getattr(os, "geteuid", lambda: -1)() == 0
        uid, gid = (folder.st_uid, folder.st_gid) if root else (-1, -1)
    if (uid, gid) != (-1, -1) and hasattr(os, "chown"):
        try:
            os.chown(tmp, uid, gid)
        except OSError:  # not ours to give away: keep at least the group where we may
            with contextlib.suppress(OSError):
                os.chown(tmp, -1, gid)
    os.chmod(tmp, mode)  # after chown, which may clear set-id bits


def _umask() -> int:
    # /proc tells without changing it; os.umask(…) would race with other threads
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
