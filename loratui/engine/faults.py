"""Fault injection points, so the reliability tests can prove the engine heals.

``LORATUI_FAULTS`` lists faults as ``kind@where``, comma separated, each fired once:

- ``nan@7``          the loss at step 7 is NaN (the step is skipped; repeats roll back)
- ``oom@3``          CUDA out of memory in step 3's forward pass (the micro-batch halves)
- ``disk_full@save:4``  ENOSPC while writing the step-4 files (clear error, nothing partial)
- ``disk_full@sample``  ENOSPC while writing a sample image (a warning; the run goes on)
- ``torch_disk_full@save:4``  torch.save of the step-4 ``optimizer.pt`` fails as it does on a
  real full disk: ``RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos …``
- ``kill@step:5``    SIGKILL in the middle of step 5 (after backward, before the update)
- ``kill@save:4``    SIGKILL half way through writing the step-4 checkpoint
- ``kill@export``    SIGKILL half way through writing the final LoRA
- ``slow@cache``     every image takes 0.5 s longer to cache (kept, not fired once)
- ``slow@state``     every write of state.json takes 0.5 s longer (kept)

Unset (the normal case) every check is a dictionary lookup that finds nothing.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "LORATUI_FAULTS"
_pending: set[str] = set()


def load() -> None:
    """Read the fault list from the environment (called once at the start of a run)."""
    _pending.clear()
    for item in os.environ.get(ENV, "").split(","):
        if item.strip():
            _pending.add(item.strip())


def fires(fault: str) -> bool:
    """True (once) when ``fault`` (e.g. ``"nan@7"``) was asked for."""
    if fault in _pending:
        _pending.discard(fault)
        return True
    return False


def maybe_kill(where: str) -> None:
    """SIGKILL this process when ``kill@<where>`` was asked for: no cleanup runs, like a crash."""
    if fires(f"kill@{where}"):
        os.kill(os.getpid(), signal.SIGKILL)


def maybe_disk_full(where: str) -> None:
    """Raise ENOSPC when ``disk_full@<where>`` was asked for."""
    if fires(f"disk_full@{where}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def maybe_torch_disk_full(where: str) -> None:
    """Raise what torch.save raises on a full disk when ``torch_disk_full@<where>`` was asked for.

    Not an OSError: torch's zip writer reports a short write as a RuntimeError (the text below
    is torch 2.x's, measured on a full tmpfs), so the run must recognise it by its words.
    """
    if fires(f"torch_disk_full@{where}"):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def maybe_slow(where: str, seconds: float = 0.5) -> None:
    """Sleep at ``where`` every time while ``slow@<where>`` is set (a slow disk or GPU), so a
    test can deliver a real signal in the middle of that phase."""
    if f"slow@{where}" in _pending:
        import time

        time.sleep(seconds)


def maybe_oom(step: int) -> None:
    """Raise torch's out-of-memory error when ``oom@<step>`` was asked for."""
    if fires(f"oom@{step}"):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory (injected by LORATUI_FAULTS)")
