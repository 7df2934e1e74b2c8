"""The output folder a run is made in: checked before any heavy work.

A run folder that cannot be made (``--output`` names a file, a folder without write
permission, a read-only disk) was an ``internal error: PermissionError`` (or
``NotADirectoryError``) after the model had loaded. It is one clear line naming the folder
and the fix, before the run folder is made.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from loratui.engine.errors import ConfigError


def check_output_dir(output_dir: Path) -> None:
    """A ConfigError unless a run folder can be made in ``output_dir`` (made if missing).

    The test is real: a folder is made and removed in the nearest folder that exists, so
    permissions, ACLs and read-only mounts all answer as they will for the run.
    """
    existing = output_dir
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{existing}: the output folder is a file, not a folder",
            f"pass --output a folder, e.g. --output {existing.parent / 'loratui-runs'}, or move the file",
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".loratui-probe-", dir=existing))
    except OSError as exc:
        why = "it is on a read-only disk" if exc.errno == errno.EROFS else f"{exc.strerror or exc}"
        raise ConfigError(
            f"{existing}: cannot make the run folder there ({why})",
            f"pass --output a folder you can write to, e.g. --output {Path.home() / 'loratui-runs'}, "
            "or fix its permissions",
        ) from None
