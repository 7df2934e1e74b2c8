"""The full (pixel) check of a folder in a child process, for the wizard (the caption review,
and the folder step's Next, whose progress comes back from the child a few times a second).

The pixel pass decodes every image. Run in a thread of the UI process it held the GIL between
keystrokes: on 2,000 images the caption review's keys waited behind it for its first seconds.
In a child process, at a lower priority, it takes the other core (or what the machine leaves)
and the UI thread keeps the interpreter to itself. The child is stopped when the wait is
cancelled (the app quitting), which a thread could not be.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TRACKER_LOCK = threading.Lock()
POLL_S = 0.1  # how often the waiting thread looks for a cancel
PROGRESS_S = 0.1  # the child's progress reports, at most this often


def _check(folder: Path, trigger: str | None, thresholds: Any, on_progress: Any = None, pixels: bool = True) -> Any:
    from loratui.engine.data import lint

    return lint.check(folder, trigger=trigger, pixels=pixels, thresholds=thresholds, on_progress=on_progress)


def check_folder(folder: Path, trigger: str | None, thresholds: Any, pixels: bool,
                 cancelled: Callable[[], bool] = lambda: False,
                 on_progress: Callable[[str, int, int], None] | None = None) -> Any:
    """The wizard's check of ``folder``: the header pass right here (it reads no pixels), the full
    pixel pass apart (``check_apart``; None when ``cancelled()`` turned true first)."""
    if not pixels:
        return _check(folder, trigger, thresholds, on_progress, pixels=False)
    return check_apart(folder, trigger, thresholds, cancelled=cancelled, on_progress=on_progress)


def _child(send: Any, folder: Path, trigger: str | None, thresholds: Any, progress: bool) -> None:
    try:
        os.nice(10)  # the UI is what the user waits on
    except OSError:
        pass
    last = [0.0]

    def tell(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_S or done >= total:  # a few a second reach the parent
            last[0] = now
            send.send(("progress", stage, done, total))

    try:
        send.send(("done", True, _check(folder, trigger, thresholds, tell if progress else None)))
    except BaseException:  # the parent runs the check itself and raises the error there
        send.send(("done", False, None))


def _start_tracker() -> None:
    """Start multiprocessing's resource tracker, which every spawned child needs, with a real
    stderr. Inside a Textual app ``sys.stderr`` is a capture whose ``fileno()`` is -1, and the
    tracker's start failed on it ("bad value(s) in fds_to_keep"): every check then fell back to
    running in the UI process. The swap lasts the tracker's start, once per process."""
    from multiprocessing import resource_tracker

    with _TRACKER_LOCK:
        saved = sys.stderr
        try:
            usable = saved is not None and saved.fileno() >= 0
        except (AttributeError, OSError, ValueError):
            usable = False
        try:
            if not usable and sys.__stderr__ is not None:
                sys.stderr = sys.__stderr__
            resource_tracker.ensure_running()
        finally:
            sys.stderr = saved


def check_apart(folder: Path, trigger: str | None, thresholds: Any,
                cancelled: Callable[[], bool] = lambda: False,
                on_progress: Callable[[str, int, int], None] | None = None) -> Any:
    """``lint.check(folder, pixels=True)`` run in a child process; the calling thread waits
    without the GIL, and gets None if ``cancelled()`` turns true first (the child is stopped).
    ``on_progress(stage, done, total)`` is called in the calling thread, a few times a second.
    Where the child fails or cannot run, the check runs here instead, so errors read the same."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # never fork a process that has threads
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, folder, trigger, thresholds, on_progress is not None),
                            daemon=True)
    try:
        _start_tracker()
        child.start()
        send.close()
        while True:
            if cancelled():
                return None
            if receive.poll(POLL_S):
                message = receive.recv()
                if message[0] == "done":
                    break
                if on_progress is not None:
                    on_progress(*message[1:])
            elif not child.is_alive() and not receive.poll(0):
                raise ChildProcessError("the check's process ended without an answer")
        _done, ok, report = message
    except Exception:
        ok, report = False, None
    finally:
        if child.pid is not None:  # started: stop it if it still runs (cancelled, or done)
            if child.is_alive():
                child.terminate()
            child.join(5)
        receive.close()
    return report if ok else _check(folder, trigger, thresholds, on_progress)
