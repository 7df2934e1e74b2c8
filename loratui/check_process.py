"""The full (pixel) check of a folder in a child process, for the wizard.

The pixel pass decodes every image. Run in a thread of the UI process it held the GIL between
keystrokes: on 2,000 images the caption review's keys waited behind it for its first seconds.
In a child process, at a lower priority, it takes the other core (or what the machine leaves)
and the UI thread keeps the interpreter to itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _lower_priority() -> None:
    try:
        os.nice(10)  # the UI is what the user waits on
    except OSError:
        pass


def _check(folder: Path, trigger: str | None, thresholds: Any) -> Any:
    from loratui.engine.data import lint

    return lint.check(folder, trigger=trigger, pixels=True, thresholds=thresholds)


def check_apart(folder: Path, trigger: str | None, thresholds: Any) -> Any:
    """``lint.check(folder, pixels=True)`` run in a child process (blocks the calling thread,
    which waits without the GIL). Where a child cannot run, or its answer cannot come back
    (an error that does not pickle), the check runs here instead, so errors read the same."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("spawn")  # never fork a process with threads
        with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_lower_priority) as pool:
            return pool.submit(_check, folder, trigger, thresholds).result()
    except Exception:
        return _check(folder, trigger, thresholds)
