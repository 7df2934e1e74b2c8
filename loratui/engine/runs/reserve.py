"""A little disk space held back for a run's last words.

When another process fills the disk between saves, a run must still be able to say how it
ended: its ``state.json``, its last events, a clear error. A run therefore writes a small
reserve file when it starts and gives the space back the moment a write fails for lack of
space, or when it ends. Without it a full disk leaves ``state.json`` saying "running".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

RESERVE = ".reserve"
RESERVE_BYTES = 256 * 1024  # state.json, a few event lines and the run card take a few KB
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def is_disk_error(exc: BaseException) -> bool:
    """A full, read-only or forbidden disk (what freeing space or permissions fixes)."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRORS


class SpaceReserve:
    """``RUN_DIR/.reserve``: written at the start, released when space runs out or the run ends."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / RESERVE

    def hold(self) -> None:
        """Write the reserve (real blocks: zeros written, not a sparse file). A disk too full
        for it is not an error here: the run's first write will say so clearly."""
        try:
            with open(self.path, "wb") as fh:
                fh.write(b"\0" * RESERVE_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            self.release()

    def release(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass
