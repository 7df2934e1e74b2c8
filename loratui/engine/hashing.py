"""Content hashes of files (a dataset's duplicate images, its identity, a parent LoRA, the latent
cache's keys)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# A run hashes each image twice (its identity in dataset.json, then its latent-cache key) and the
# lint a third time: one read serves them all while the file's size and mtime are unchanged
_SEEN: dict[tuple[str, int, int], str] = {}
_SEEN_MAX = 100_000


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's bytes, hex, read in 1 MiB blocks (once per file version in a process)."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    known = _SEEN.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[key] = value = digest.hexdigest()
    return value
