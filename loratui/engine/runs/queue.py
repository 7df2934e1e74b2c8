"""The run queue: training runs waiting their turn, kept on disk in the user state dir.

``queue.json`` holds the entries; every change is a read-modify-write under an exclusive lock
(``queue.json.lock``, held for milliseconds) and lands with an atomic rename, so ``queue add``
from one terminal and a running ``queue run`` never lose each other's changes, and a crash (or
a reboot) leaves the old file or the new one. The entries one ``--sweep`` queued share a sweep
id (``sweep``, numbered apart from the entries) and each keeps its own values (``sweep_values``),
so ``queue compare`` finds them again. An entry's status is ``queued``, ``running`` (a
run folder was or is being made for it), ``done``, ``failed`` or ``stopped``; a ``running``
entry whose runner is gone is resumed by the next ``queue run`` (see ``queue_runner``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from loratui.engine import atomic
from loratui.engine.errors import RunError
from loratui.engine.paths import state_dir

QUEUE_FILE = "queue.json"
RUNNER_LOCK = "queue-run.lock"
STATUSES = ("queued", "running", "done", "failed", "stopped")


@dataclass
class Entry:
    """One queued run: the config it trains (resolved when it was added) and what became of it."""

    id: int
    name: str
    config: dict[str, Any]
    cwd: str
    args: list[str] = field(default_factory=list)  # the `train` arguments it was added with, for people
    status: str = "queued"
    run_dir: str | None = None
    pid: int | None = None  # the process training it (with its start time: a reused pid never counts)
    pid_start_time: int | None = None
    message: str | None = None
    notify: str | None = None  # may hold a token: passed to the run in its environment, never printed
    added_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    sweep: int | None = None  # the sweep it was queued by (one `queue add --sweep`), if any
    sweep_values: dict[str, str] = field(default_factory=dict)  # its values, as given: {"lr": "1e-4"}

    def public(self) -> dict[str, Any]:
        """The entry as ``queue list --json`` shows it (no notification URL: it may hold a token)."""
        data = asdict(self)
        data.pop("notify")
        return data


class RunQueue:
    """The queue file in ``folder`` (default: the user state dir)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else state_dir()
        self.path = self.folder / QUEUE_FILE

    def entries(self) -> list[Entry]:
        """Every entry, in queue order (atomic writes: a read never sees half a change)."""
        return [_entry(raw, self.path) for raw in self._read()["entries"]]

    def get(self, entry_id: int) -> Entry:
        for entry in self.entries():
            if entry.id == entry_id:
                return entry
        raise RunError(f"queue entry {entry_id}: no such entry", "see `loratui queue list`")

    def add(self, name: str, config: dict[str, Any], cwd: str, args: list[str] | None = None,
            notify: str | None = None) -> Entry:
        """Append one entry; returns it with its id."""
        return self.add_many([(name, config, list(args or []))], cwd, notify)[0]

    def add_many(self, items: list[tuple[str, dict[str, Any], list[str]]], cwd: str,
                 notify: str | None = None, sweep_values: list[dict[str, str]] | None = None) -> list[Entry]:
        """Append several entries at once: all of them or, on an error, none.

        With ``sweep_values`` (one per item: a sweep's combinations) they share a new sweep id.
        """
        with self._edit() as data:
            sweep = None
            if sweep_values:
                sweep = data["next_sweep"] = int(data.get("next_sweep") or 0) + 1
            added = []
            for n, (name, config, args) in enumerate(items):
                data["next_id"] += 1
                entry = Entry(data["next_id"], name, config, cwd, args, notify=notify, added_at=time.time(),
                              sweep=sweep, sweep_values=dict(sweep_values[n]) if sweep_values else {})
                data["entries"].append(asdict(entry))
                added.append(entry)
        return added

    def remove(self, entry_id: int, runner_alive: bool) -> Entry:
        """Take an entry off the queue. A run the live runner is training is refused; its folder stays."""
        with self._edit() as data:
            for i, raw in enumerate(data["entries"]):
                entry = _entry(raw, self.path)
                if entry.id != entry_id:
                    continue
                if entry.status == "running" and runner_alive:
                    raise RunError(
                        f"queue entry {entry_id} ({entry.name}) is training now",
                        f"stop it first with `loratui stop {entry.run_dir}`"
                        if entry.run_dir else "wait until it has started, then `loratui stop` it",
                    )
                del data["entries"][i]
                return entry
        raise RunError(f"queue entry {entry_id}: no such entry", "see `loratui queue list`")

    def update(self, entry_id: int, **values: Any) -> Entry:
        """Change fields of one entry (the runner's bookkeeping)."""
        with self._edit() as data:
            for raw in data["entries"]:
                if raw.get("id") == entry_id:
                    raw.update(values)
                    return _entry(raw, self.path)
        raise RunError(f"queue entry {entry_id}: no such entry (removed meanwhile)", "see `loratui queue list`")

    def claim(self, entry_id: int) -> Entry | None:
        """Mark a queued entry running; None when it is no longer queued (removed meanwhile)."""
        with self._edit() as data:
            for raw in data["entries"]:
                if raw.get("id") == entry_id and raw.get("status") == "queued":
                    raw.update(status="running", started_at=time.time())
                    return _entry(raw, self.path)
        return None

    # -- the file -------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"next_id": 0, "entries": []}
        except (OSError, ValueError) as exc:
            raise _damaged(self.path, exc) from None
        if not isinstance(data, dict) or not isinstance(data.get("entries"), list) \
                or not isinstance(data.get("next_id"), int):
            raise _damaged(self.path, None)
        return data

    @contextlib.contextmanager
    def _edit(self) -> Iterator[dict[str, Any]]:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{QUEUE_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one read-modify-write: milliseconds
            data = self._read()
            yield data
            atomic.write_json(self.path, data)  # private (0600): an entry may carry a notify token
        finally:
            os.close(fd)


def _entry(raw: Any, path: Path) -> Entry:
    known = {f.name for f in fields(Entry)}
    try:
        entry = Entry(**{k: v for k, v in raw.items() if k in known})
    except (TypeError, AttributeError):
        raise _damaged(path, None) from None
    if entry.status not in STATUSES:
        raise _damaged(path, None)
    return entry


def _damaged(path: Path, exc: Exception | None) -> RunError:
    problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a loratui queue"
    return RunError(f"{path}: cannot be read ({problem})",
                    "move it aside to start an empty queue; the run folders it named are kept")


class RunnerLock:
    """Held by the one live ``queue run``; the system drops it when that process ends, however it ends."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (Path(folder) if folder is not None else state_dir()) / RUNNER_LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the runs it starts
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                pid = self.path.read_text().strip() or "?"
                raise RunError(f"another `loratui queue run` is running (pid {pid})",
                               "it runs the whole queue: follow it with `loratui queue list`") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def check(self) -> None:
        """The one-line RunError of ``acquire`` when a live ``queue run`` holds the lock; else nothing."""
        self.acquire()
        self.release()

    def held_elsewhere(self) -> bool:
        """True when a live ``queue run`` (not this process) holds the lock."""
        try:
            self.check()
        except RunError:
            return True
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def expand_sweeps(sweeps: list[str]) -> list[list[tuple[str, str]]]:
    """``["lr=1e-4,2e-4", "rank=8,16"]`` → every combination, as (key, value) pairs in order.

    No sweeps gives one empty combination. A ConfigError for a sweep that is not ``KEY=V1,V2…``.
    """
    from itertools import product

    from loratui.engine.errors import ConfigError

    axes: list[list[tuple[str, str]]] = []
    for sweep in sweeps:
        key, sep, values = sweep.partition("=")
        key = key.strip().lstrip("-")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not items:
            raise ConfigError(f"--sweep {sweep}: not KEY=VALUE,VALUE…", "e.g. --sweep lr=1e-4,2e-4 --sweep rank=8,16")
        if any(key == axis[0][0] for axis in axes):
            raise ConfigError(f"--sweep {key}: given twice", f"list every value once: --sweep {key}=A,B,C")
        axes.append([(key, value) for value in dict.fromkeys(items)])
    return [list(combo) for combo in product(*axes)]


def add_to_queue(config: Any, cwd: Path | None = None, args: list[str] | None = None,
                 notify: str | None = None, queue: RunQueue | None = None) -> Entry:
    """Queue one run of ``config`` (a RunConfig), as ``loratui queue add`` does; the wizard's entry point.

    The dataset and output folder are made absolute against ``cwd`` (default: the current
    folder), so the queue runs it the same from wherever ``queue run`` is started.
    """
    cwd = (cwd or Path.cwd()).resolve()
    name, data = stored_config(config, cwd)
    return (queue or RunQueue()).add(name, data, str(cwd), args, notify or getattr(config, "notify", None))


def stored_config(config: Any, cwd: Path) -> tuple[str, dict[str, Any]]:
    """The entry name and the JSON-ready config of a RunConfig, its folders absolute against ``cwd``.

    The notification URL is left out (it may hold a token): the entry keeps it apart, unlisted.
    """
    data = config.model_dump(mode="json")
    data.pop("notify", None)
    for key in ("dataset", "output_dir"):
        data[key] = str((cwd / os.path.expanduser(data[key])).resolve())
    return config.name or Path(data["dataset"]).name, data
