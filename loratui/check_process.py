"""The full (pixel) check of a folder in a child process, for the wizard.

The pixel pass decodes every image. Run in a thread of the UI process it held the GIL between
keystrokes: on 2,000 images the caption review's keys waited behind it for its first seconds.
In a child process, at a lower priority, it takes the other core (or what the machine leaves)
and the UI thread keeps the interpreter to itself. The child is stopped when the wait is
cancelled (the app quitting), which a thread could not be.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.1  # how often the waiting thread looks for a cancel


def _check(folder: Path, trigger: str | None, thresholds: Any) -> Any:
    from loratui.engine.data import lint

    return lint.check(folder, trigger=trigger, pixels=True, thresholds=thresholds)


def _child(send: Any, folder: Path, trigger: str | None, thresholds: Any) -> None:
    try:
        os.nice(10)  # the UI is what the user waits on
    except OSError:
        pass
    try:
        send.send((True, _check(folder, trigger, thresholds)))
    except BaseException:  # the parent runs the check itself and raises the error there
        send.send((False, None))


def check_apart(folder: Path, trigger: str | None, thresholds: Any,
                cancelled: Callable[[], bool] = lambda: False) -> Any:
    """``lint.check(folder, pixels=True)`` run in a child process; the calling thread waits
    without the GIL, and gets None if ``cancelled()`` turns true first (the child is stopped).
    Where the child fails or cannot run, the check runs here instead, so errors read the same."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that has threads
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, folder, trigger, thresholds), daemon=True)
    try:
        child.start()
        send.close()
        while not receive.poll(POLL_S):
            if cancelled():
                return None
            if not child.is_alive() and not receive.poll(0):
                raise ChildProcessError("the check's process ended without an answer")
        ok, report = receive.recv()
    except Exception:
        ok, report = False, None
    finally:
        if child.pid is not None:  # started: stop it if it still runs (cancelled, or done)
            if child.is_alive():
                child.terminate()
            child.join(5)
        receive.close()
    return report if ok else _check(folder, trigger, thresholds)
