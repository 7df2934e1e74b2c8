"""``loratui queue run``: the queue's entries trained one after another (one per GPU).

Each entry becomes a normal run folder, trained by a child ``loratui train`` in its own session
(as ``train --detach`` starts one), so a crash of a run never takes the queue down and an SSH
drop or a killed queue never kills a run. The queue file says which entry is running and in
which folder *before* the run starts, so a restarted ``queue run`` finds it and

- follows it when its process still trains (the queue died, the run did not),
- resumes it (``train --resume RUN_DIR``, bit-identical from its last checkpoint) when both
  died (a reboot), and
- marks it done or failed when it ended while no queue watched,

then runs the rest. Nothing runs twice: a new run folder is only ever made for a queued entry.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loratui.engine import atomic
from loratui.engine.errors import LoratuiError
from loratui.engine.runs.queue import Entry, RunnerLock, RunQueue
from loratui.engine.runs.registry import (
    CONFIG, effective_status, process_start_time, read_state, request_stop, run_process_alive,
)

LOG = "output.log"  # as train --detach: the child's own output, beside its events


@dataclass
class Job:
    """A run the queue waits for: its own child, or (proc None) one an earlier queue started."""

    entry: Entry
    run_dir: Path
    devices: list[str | None]
    proc: subprocess.Popen | None = None
    stop_asked: bool = field(default=False)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return run_process_alive(read_state(self.run_dir)) or child_alive(self.entry)


def child_alive(entry: Entry) -> bool:
    """True while the process a queue started for ``entry`` still runs (it may not have written
    its state.json yet: starting Python and torch takes seconds)."""
    return run_process_alive({"pid": entry.pid, "pid_start_time": entry.pid_start_time})


def available_devices(parallel: int | None = None) -> list[str | None]:
    """One slot per GPU this process may use (their CUDA ids), or ``parallel`` CPU slots (default 1)."""
    count = 0
    if Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/kfd").exists():  # else no GPU: spare torch's import
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return [None] * max(1, parallel or 1)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()][:count] if visible else [str(i) for i in range(count)]
    return ids[: parallel] if parallel else ids


class QueueRunner:
    """Drains ``queue`` on ``devices``, telling ``say`` what happens (one line each)."""

    def __init__(self, queue: RunQueue, devices: list[str | None], say: Callable[[str], None],
                 poll_s: float = 0.25) -> None:
        self.queue = queue
        self.free = list(devices)
        self.total = len(devices)
        self.cuda = any(d is not None for d in devices)
        self.say = say
        self.poll_s = poll_s
        self.jobs: list[Job] = []
        self.failed = 0
        self.pausing = False

    def run(self) -> int:
        """Run until nothing is queued or running (or a pause is asked); the number of failed entries."""
        lock = RunnerLock(self.queue.folder)
        lock.acquire()  # one line when another `queue run` is alive
        try:
            # entries a runner before us left running: first, in queue order
            waiting = [e.id for e in self.queue.entries() if e.status == "running"]
            while True:
                self._reap()
                if not self.pausing:
                    waiting = self._fill(waiting)
                for job in self.jobs:  # a run still starting up when the pause came is asked once it runs
                    if self.pausing and not job.stop_asked:
                        job.stop_asked = request_stop(job.run_dir)
                if not self.jobs and (self.pausing or not waiting and not self._queued()):
                    return self.failed
                time.sleep(self.poll_s)
        finally:
            lock.release()

    def pause(self) -> None:
        """Ask every run to save a checkpoint and stop; their entries stay running, to be resumed."""
        self.pausing = True
        for job in self.jobs:
            job.stop_asked = request_stop(job.run_dir)
        self.say(f"pausing: {len(self.jobs)} run(s) save a checkpoint and stop; `loratui queue run` resumes them")

    # -- starting ------------------------------------------------------------------------

    def _queued(self) -> list[Entry]:
        return [e for e in self.queue.entries() if e.status == "queued"]

    def _fill(self, waiting: list[int]) -> list[int]:
        """Start entries while devices are free, strictly in order; the recovered ids still waiting."""
        while True:
            recovered = bool(waiting)
            if recovered:
                entry = next((e for e in self.queue.entries() if e.id == waiting[0]), None)
                if entry is None or entry.status != "running":  # removed or settled meanwhile
                    waiting = waiting[1:]
                    continue
            else:
                queued = self._queued()
                if not queued:
                    return waiting
                entry = queued[0]
            need = self._devices_needed(entry)
            if need > self.total:
                self._settle(entry, "failed", f"it needs {need} GPUs; this machine has {self.total}")
                waiting = waiting[1:] if recovered else waiting
                continue
            if need > len(self.free):
                return waiting  # in order: the next entry waits for enough free GPUs
            if recovered:
                waiting = waiting[1:]
            else:
                claimed = self.queue.claim(entry.id)
                if claimed is None:
                    continue
                entry = claimed
            devices, self.free = self.free[:need], self.free[need:]
            job = self._start(entry, devices)
            if job is None:
                self.free.extend(devices)
            else:
                self.jobs.append(job)

    def _devices_needed(self, entry: Entry) -> int:
        if not self.cuda:
            return 1  # CPU slots: a run takes one
        gpus = entry.config.get("gpus") or 1
        return gpus if isinstance(gpus, int) and gpus > 0 else 1

    def _start(self, entry: Entry, devices: list[str | None]) -> Job | None:
        run_dir = Path(entry.run_dir) if entry.run_dir else None
        if run_dir is not None and (run_dir / CONFIG).is_file():
            status = effective_status(read_state(run_dir))
            if status == "running" or child_alive(entry):  # the queue died, its run did not: follow it
                self.say(f"{entry.name}: still training in {run_dir}; following it")
                return Job(entry, run_dir, devices)
            if status in ("finished", "failed"):  # it ended while no queue watched
                self._finish(Job(entry, run_dir, devices))
                return None
            self.say(f"{entry.name}: resuming {run_dir} from its last checkpoint")
            return Job(entry, run_dir, devices, self._spawn(entry, run_dir, devices, "--resume", str(run_dir)))
        try:
            from loratui.engine.config import build_config, dump_toml

            with _cwd(entry.cwd):
                values = {**entry.config, **({"notify": entry.notify} if entry.notify else {})}
                config = build_config(None, file_values=values, file_label=f"queue entry {entry.id}")
                if run_dir is None:
                    from loratui.engine.train.launch import prepare_run_dir

                    run_dir = prepare_run_dir(config).resolve()
                    # recorded before the run starts: a restarted queue resumes this folder
                    self.queue.update(entry.id, run_dir=str(run_dir))
                else:
                    run_dir.mkdir(parents=True, exist_ok=True)  # made, never started: start it there
            atomic.write_text(run_dir / CONFIG, dump_toml(config))
        except (LoratuiError, OSError) as exc:
            self._settle(entry, "failed", str(exc))
            return None
        self.say(f"{entry.name}: started in {run_dir}" + _on(devices))
        return Job(entry, run_dir, devices, self._spawn(entry, run_dir, devices, "--start-prepared", str(run_dir)))

    def _spawn(self, entry: Entry, run_dir: Path, devices: list[str | None], *args: str) -> subprocess.Popen:
        env = dict(os.environ)
        if devices and devices[0] is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
        with open(run_dir / LOG, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loratui", "train", *args, "--json"],
                cwd=entry.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,  # its own session: an SSH drop or a killed queue leaves it training
            )
        with contextlib.suppress(LoratuiError):  # a queue restarted before the run writes its state follows it
            self.queue.update(entry.id, pid=proc.pid, pid_start_time=process_start_time(proc.pid))
        return proc

    # -- ending --------------------------------------------------------------------------

    def _reap(self) -> None:
        for job in [j for j in self.jobs if not j.alive()]:
            self.jobs.remove(job)
            self.free.extend(job.devices)
            self._finish(job)

    def _finish(self, job: Job) -> None:
        state = read_state(job.run_dir)
        status = effective_status(state)
        entry = job.entry
        if status == "finished":
            self._settle(entry, "done", str(state.get("lora") or job.run_dir))
        elif status == "stopped" and job.stop_asked:
            self.say(f"{entry.name}: paused at step {state.get('step', 0)}; `loratui queue run` resumes it")
        elif status == "stopped":
            self._settle(entry, "stopped", f"stopped at step {state.get('step', 0)}; "
                                           f"`loratui train --resume {job.run_dir}` continues it")
        elif status == "failed":
            self._settle(entry, "failed", str(state.get("message") or "the run failed"))
        else:
            code = job.proc.returncode if job.proc is not None else None
            self._settle(entry, "failed", _last_error(job.run_dir)
                         or f"its process ended (exit code {code}) before the run finished; see {job.run_dir / LOG}")

    def _settle(self, entry: Entry, status: str, message: str) -> None:
        if status == "failed":
            self.failed += 1
        with contextlib.suppress(LoratuiError):  # removed from the queue meanwhile: nothing to record
            self.queue.update(entry.id, status=status, message=message, ended_at=time.time())
        self.say(f"{entry.name}: {status}: {message}")


def _on(devices: list[str | None]) -> str:
    ids = [d for d in devices if d is not None]
    return f" on GPU {','.join(ids)}" if ids else ""


def _last_error(run_dir: Path) -> str | None:
    with contextlib.suppress(OSError):
        lines = (run_dir / LOG).read_text(errors="replace").strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        if errors:
            return errors[-1].removeprefix("error: ")
    return None


@contextlib.contextmanager
def _cwd(folder: str) -> Iterator[None]:
    """Resolve an entry's relative paths (a base model path) from where it was added."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)
