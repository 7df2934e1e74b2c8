"""The run's one event stream: typed events, the bus that fans them out, and the JSONL file.

Every consumer (the CLI's Rich progress, ``events.jsonl``, the TUI) is a sink on one bus.
A sink that raises is dropped with a note on stderr; it never stops the run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class Event:
    """Base of all events: ``event`` names the kind, ``t`` is unix seconds."""

    event: ClassVar[str] = "event"
    t: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, **asdict(self)}


@dataclass
class RunStarted(Event):
    event: ClassVar[str] = "run_started"
    name: str
    run_dir: str
    config: dict[str, Any]
    total_steps: int
    start_step: int = 0
    schedule: str = ""


@dataclass
class PhaseProgress(Event):
    """Work before the first step (loading, caching latents), so a wait is never silent."""

    event: ClassVar[str] = "phase"
    phase: str
    done: int
    total: int


@dataclass
class StepLogged(Event):
    event: ClassVar[str] = "step"
    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    it_per_s: float
    eta_s: float
    mem_used: int
    mem_peak: int
    mem_total: int
    mem_kind: str
    # with regularisation images (--reg-folder): the step's mean loss on the training images and
    # on the class images apart (None when the step had none of that kind); ``loss`` is the
    # optimised mix, the class images' share weighted by prior_loss_weight
    instance_loss: float | None = None
    prior_loss: float | None = None


@dataclass
class CheckpointSaved(Event):
    event: ClassVar[str] = "checkpoint_saved"
    path: str
    step: int


@dataclass
class SampleSaved(Event):
    event: ClassVar[str] = "sample_saved"
    path: str
    step: int


@dataclass
class ValidationLogged(Event):
    """The validation loss at a checkpoint (held-out images, or training images at fixed noise)."""

    event: ClassVar[str] = "validation"
    step: int
    loss: float
    images: int
    held_out: bool


@dataclass
class RecommendationMade(Event):
    """Which checkpoint and strength to use, and why."""

    event: ClassVar[str] = "recommendation"
    step: int
    path: str
    strength: str
    reason: str
    overtrained: bool


@dataclass
class WarningRaised(Event):
    event: ClassVar[str] = "warning"
    message: str


@dataclass
class RunFinished(Event):
    event: ClassVar[str] = "run_finished"
    path: str
    step: int = 0


@dataclass
class RunStopped(Event):
    event: ClassVar[str] = "run_stopped"
    step: int
    checkpoint: str


@dataclass
class RunFailed(Event):
    event: ClassVar[str] = "run_failed"
    message: str
    hint: str = ""


Sink = Callable[[Event], None]


class EventBus:
    """Fans each event out to every sink; a failing sink is removed, never fatal."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self.sinks: list[Sink] = list(sinks or [])

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink(event)
            except Exception as exc:  # a consumer must never crash a run
                self.sinks.remove(sink)
                print(f"loratui: an event consumer failed and was detached: {exc!r}", file=sys.stderr)


class JsonlSink:
    """Appends each event as one JSON line, in one write, so followers see it at once.

    A line that cannot be written whole (a full disk) is cut back off, never left torn; the
    event is dropped and ``dropped`` counts it, and the next line is tried as usual (space may
    come back). Other write errors propagate (the bus detaches a failing sink).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.dropped = 0

    def __call__(self, event: Event) -> None:
        line = (json.dumps(event.to_dict(), default=str) + "\n").encode("utf-8")
        before = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # a short write: the disk filled in the middle of the line
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.dropped += 1

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Whole event lines from ``path`` after byte ``offset``, and the offset to read on from.

    A line still being written (no newline yet) is left for the next read.
    """
    events: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return events, offset
    end = data.rfind(b"\n")
    if end < 0:
        return events, offset
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from a killed writer; the next ones are still good
    return events, offset + end + 1
