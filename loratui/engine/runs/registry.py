"""Run directories: naming, ``state.json``, the lock, stop requests and the run registry."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratui.engine import atomic, faults
from loratui.engine.errors import RunError
from loratui.engine.events import Event, StepLogged
from loratui.engine.paths import state_dir

STATE = "state.json"
EVENTS = "events.jsonl"
CONFIG = "config.toml"
LOCK = ".lock"
STOP_REQUEST = "stop.request"


def next_run_dir(output_dir: Path, base_name: str) -> Path:
    """``output_dir/base_name`` if free, else the next free ``base_name-vN``.

    A ConfigError naming the folder and the fix when no run folder can be made in
    ``output_dir`` (a file, no permission, a read-only disk)."""
    from loratui.engine.runs.output_dir import check_output_dir

    check_output_dir(output_dir)
    base_name = re.sub(r"[^A-Za-z0-9._-]+", "-", base_name).strip("-.") or "lora"
    candidate = output_dir / base_name
    n = 2
    while candidate.exists():
        candidate = output_dir / f"{base_name}-v{n}"
        n += 1
    return candidate


def remove_failed_start(run_dir: Path) -> bool:
    """Remove ``run_dir`` when its run failed before its first step and left nothing to keep.

    A start that fails (a model that will not load, a dataset error found while planning)
    says why in one line; a folder left behind would only hold that error and push the next
    run's name to ``-v2``. A folder with a step done, a LoRA or a checkpoint is kept. True
    when the folder was removed.
    """
    import shutil

    state = read_state(run_dir)
    if state.get("status") != "failed" or _whole(state.get("step")) > 0:
        return False
    if any(run_dir.glob("*.safetensors")) or (run_dir / "checkpoints").exists() or (run_dir / "samples").exists():
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return not run_dir.exists()


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's ``state.json`` ({} when there is none, or it is unreadable or not a JSON object)."""
    try:
        return load_state(run_dir)
    except RunError:
        return {}


def load_state(run_dir: Path) -> dict[str, Any]:
    """The run's ``state.json``, {} when there is none; a RunError naming it when it is damaged.

    For commands that act on one run (``--resume``, ``stop``): a state that cannot be read is
    told, not taken for "no state". Views over many runs use ``read_state`` and go on.
    """
    path = run_dir / STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not valid JSON"
        raise RunError(f"{path}: cannot be read ({problem})", _STATE_FIX.format(run_dir=run_dir)) from None
    if not isinstance(state, dict):
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(state), "null")
        raise RunError(f"{path}: not a run state (a JSON {kind}, not an object)",
                       _STATE_FIX.format(run_dir=run_dir))
    return state


# state.json only records progress; the checkpoints and config.toml hold the run
_STATE_FIX = "delete that file (the checkpoints are kept), then loratui train --resume {run_dir}"


def _whole(value: Any) -> int:
    """A count from state.json, 0 when it is not one (a damaged file must not end a listing)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def pid_alive(pid: int | None) -> bool:
    """True when a process with ``pid`` exists (a zombie counts as gone)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot: ``/proc/PID/stat`` field 22).

    A pid is reused once its process ends; a pid with its start time is not, so the pair
    names one process for good. None where it cannot be read (no such process, no /proc).
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        # the command name (field 2) may hold spaces and ')': count from its last ')'
        return int(text.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def run_process_alive(state: dict[str, Any]) -> bool:
    """True when the process ``state`` names still runs and is the one that wrote it.

    The recorded ``pid_start_time`` must match, so a pid the system has given to another
    process since never counts. A state without one (written before loratui recorded it,
    or where there is no /proc) is judged by the pid alone.
    """
    pid = state.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or not pid_alive(pid):
        return False
    recorded = state.get("pid_start_time")
    return recorded is None or process_start_time(pid) == recorded


def effective_status(state: dict[str, Any]) -> str:
    """The status to show: a 'running' run whose process is gone (or is another) is 'stale'."""
    status = state.get("status", "unknown")
    if status == "running" and not run_process_alive(state):
        return "stale"
    return status


class StateWriter:
    """An event sink that keeps ``state.json`` current.

    A step's progress is written at most once a second, and on a background thread: an atomic
    write waits for two fsyncs (4-12 ms on the development machine), which a training step
    must not wait for. Every other update (status, checkpoint, the last step) is written before
    it returns. Writes happen one at a time, each of the state as it is when it starts, so a
    late progress write never hides a newer status."""

    def __init__(self, run_dir: Path, base: dict[str, Any]) -> None:
        self.path = run_dir / STATE
        self.state = dict(base)
        if isinstance(base.get("pid"), int):  # what `stop` checks before it signals the pid
            self.state["pid_start_time"] = process_start_time(base["pid"])
        self._last_write = 0.0  # when the last progress write was asked for (time.monotonic)
        self._writing = threading.Lock()  # one write at a time: snapshot and write in order
        self._due = threading.Event()  # a progress write is asked for
        self._closed = False
        self._failed: OSError | None = None  # a background write's error, raised at the next step
        self._writer: threading.Thread | None = None

    def update(self, **values: Any) -> None:
        """Record ``values`` and write them now; on a full disk they are kept and written with
        the next update (the run's end releases its space reserve first, so the last word gets
        written)."""
        self.state.update(values, updated_at=time.time())
        self._write()

    def _write(self) -> None:
        with self._writing:
            faults.maybe_slow("state")
            try:
                atomic.write_json(self.path, dict(self.state))
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepLogged):
            if self._failed is not None:  # the bus detaches this sink, as when a write here failed
                failed, self._failed = self._failed, None
                raise failed
            self.state.update(step=event.step, total_steps=event.total_steps, loss=event.loss)
            if event.step == event.total_steps:
                self.update()
            elif time.monotonic() - self._last_write >= 1.0:
                self._last_write = time.monotonic()
                self.state["updated_at"] = time.time()
                self._write_soon()
        elif event.event == "checkpoint_saved":
            self.update(last_checkpoint=event.path)  # type: ignore[attr-defined]

    def _write_soon(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._background, name="loratui-state", daemon=True)
            self._writer.start()
        self._due.set()

    def _background(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._closed:
                return
            try:
                self._write()
            except OSError as exc:
                self._failed = exc

    def close(self) -> None:
        """Finish a progress write under way (the run's end: its last update is written already)."""
        self._closed = True
        self._due.set()
        if self._writer is not None:
            self._writer.join()


class RunLock:
    """An exclusive lock on a run directory, so two processes never write one run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunError(
                    f"{self.path.parent}: another loratui process is using this run",
                    "wait for it, or `loratui stop` it first",
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def request_stop(run_dir: Path) -> bool:
    """Ask a run to checkpoint and stop: a request file, and SIGTERM to its process.

    SIGTERM goes only to the process that wrote ``state.json`` (its pid *and* its start
    time match), never to a process that has the pid since; a run whose state records no
    start time gets the request file alone, which the run polls every step. Returns False
    when the run is not running (nothing to stop).
    """
    state = read_state(run_dir)
    if effective_status(state) != "running":
        return False
    atomic.write_text(run_dir / STOP_REQUEST, str(time.time()))
    if state.get("pid_start_time") is not None:
        _terminate(state["pid"], state["pid_start_time"])
    return True


def _terminate(pid: int, start_time: int) -> None:
    """SIGTERM to ``pid`` if it is still the process that started at ``start_time``.

    Through a pidfd where there is one: opened before the check, it keeps naming the
    process that had the pid then, so a pid reused between the check and the signal is
    never hit.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (not Linux, or a kernel before 5.3)
            if process_start_time(pid) == start_time:
                os.kill(pid, signal.SIGTERM)
            return
        try:
            if process_start_time(pid) == start_time:
                signal.pidfd_send_signal(fd, signal.SIGTERM)
        finally:
            os.close(fd)


@dataclass
class RunSummary:
    """A row of ``loratui runs``."""

    run_dir: Path
    name: str
    status: str
    step: int
    total_steps: int
    updated_at: float


def registry_path() -> Path:
    return state_dir() / "runs.json"


def register_run(run_dir: Path) -> None:
    """Remember ``run_dir`` in the user's run registry (best effort: never fails a run)."""
    with contextlib.suppress(OSError, ValueError):
        path = registry_path()
        runs = json.loads(path.read_text()) if path.is_file() else []
        entry = str(run_dir.resolve())
        if entry not in runs:
            runs.append(entry)
        atomic.write_json(path, runs[-500:])


def list_runs(extra_roots: list[Path] | None = None) -> list[RunSummary]:
    """The registered runs plus any run directory under ``extra_roots``, newest first."""
    seen: dict[Path, None] = {}
    with contextlib.suppress(OSError, ValueError):
        for entry in json.loads(registry_path().read_text()):
            seen[Path(entry)] = None
    for root in extra_roots or []:
        for state_file in list(root.glob(f"*/{STATE}")) + list(root.glob(f"*/*/{STATE}")):
            seen[state_file.parent.resolve()] = None
    rows = []
    for run_dir in seen:
        try:
            state = load_state(run_dir)
        except RunError:  # listed as damaged; the other runs are still shown
            with contextlib.suppress(OSError):
                rows.append(RunSummary(run_dir, run_dir.name, "damaged", 0, 0, (run_dir / STATE).stat().st_mtime))
            continue
        if not state:
            continue
        updated = state.get("updated_at")
        rows.append(
            RunSummary(
                run_dir,
                str(state.get("name") or run_dir.name),
                effective_status(state) if isinstance(state.get("status", ""), str) else "damaged",
                _whole(state.get("step")),
                _whole(state.get("total_steps")),
                float(updated) if isinstance(updated, (int, float)) and not isinstance(updated, bool) else 0.0,
            )
        )
    return sorted(rows, key=lambda r: r.updated_at, reverse=True)
