"""`loratui queue`: runs one after another that survive the queue's death (and a reboot), sweeps.

The queue test trains real tiny runs in child processes, as `queue run` does for a user: the
queue process is SIGKILLed twice, once alone (an OOM kill, a `kill -9`: its run trains on) and
once with its run (a reboot), and each restart must pick up exactly where things stood.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loratui.cli import app

# tiny runs: 64 px, two images, no samples, no validation (the --config file), a checkpoint each step
TINY = ["--preset", "pet", "--base-model", "tiny", "--resolution", "64", "--batch-size", "1",
        "--sample-every", "0", "--save-every", "1"]


@pytest.fixture
def queue_home(tmp_path, monkeypatch) -> Path:
    """A private state dir (so a private queue) and the --config file that turns validation off."""
    monkeypatch.setenv("LORATUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quiet.toml").write_text('validation = "off"\n')
    return tmp_path


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def dataset(folder: Path) -> Path:
    from loratui.engine.data.demo import make_demo_dataset

    return make_demo_dataset(folder, count=2)


def events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def named(run_dir: Path, event: str) -> list[dict]:
    return [e for e in events(run_dir) if e["event"] == event]


def wait_for(check, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def started(queue_home):
    """The queue processes a test starts; whatever still runs at its end (theirs and their runs') is ended."""
    procs: list[subprocess.Popen] = []
    yield procs
    from loratui.engine.runs.queue import RunQueue
    from loratui.engine.runs.registry import run_process_alive

    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for entry in RunQueue().entries():  # a failed assertion must not leave a run training
        if run_process_alive({"pid": entry.pid, "pid_start_time": entry.pid_start_time}):
            os.kill(entry.pid, signal.SIGKILL)


def start_queue(home: Path, log: str, procs: list) -> subprocess.Popen:
    out = open(home / log, "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "loratui", "queue", "run"], cwd=home, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    procs.append(proc)
    return proc


def run_dir_of(entry_id: int) -> Path | None:
    from loratui.engine.runs.queue import RunQueue

    entry = RunQueue().get(entry_id)
    return Path(entry.run_dir) if entry.run_dir else None


@pytest.mark.slow  # three tiny runs through a killed queue
def test_queue_survives_its_kill_and_a_reboot_and_runs_nothing_twice(queue_home, started):
    from loratui.engine.runs.queue import RunQueue

    photos, doomed = dataset(queue_home / "photos"), dataset(queue_home / "doomed")
    common = ["--config", "quiet.toml", *TINY, "--output", "runs"]
    (queue_home / "broken.safetensors").write_bytes(b"not a LoRA")
    # A and B from one sweep; an entry whose dataset vanishes before its turn; a run that fails; C
    cli("queue", "add", str(photos), *common, "--steps", "2", "--sweep", "seed=1,2")
    cli("queue", "add", str(doomed), *common, "--steps", "2")
    cli("queue", "add", str(photos), *common, "--steps", "2", "--name", "fails", "--init-lora", "broken.safetensors")
    cli("queue", "add", str(photos), *common, "--steps", "2", "--name", "last")
    shutil.rmtree(doomed)
    assert [e.name for e in RunQueue().entries()] == ["photos-seed1", "photos-seed2", "doomed", "fails", "last"]

    # 1. the queue alone is killed as A starts (kill -9, the OOM killer), before A has written
    # anything of its own: A trains on
    first = start_queue(queue_home, "queue1.log", started)
    a_pid = wait_for(lambda: RunQueue().get(1).pid, "A's process")
    a = run_dir_of(1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    # 2. restarted, it follows A (never starts it again), then starts B; a reboot kills both mid-B
    second = start_queue(queue_home, "queue2.log", started)
    b = wait_for(lambda: run_dir_of(2), "B's run folder")
    wait_for(lambda: [e for e in named(b, "checkpoint_saved") if e["step"] == 1], "B's step-1 checkpoint")
    b_pid = json.loads((b / "state.json").read_text())["pid"]
    for pid in (second.pid, b_pid):
        os.kill(pid, signal.SIGKILL)
    second.wait()
    wait_for(lambda: not Path(f"/proc/{b_pid}").exists() or "Z" in Path(f"/proc/{b_pid}/stat").read_text().split()[2],
             "B's process to end", 10)
    assert not named(b, "run_finished"), "B finished before the reboot: the test proves nothing"
    assert "following it" in (queue_home / "queue2.log").read_text()

    # 3. after the reboot: B resumes from its checkpoint, the two bad entries fail, C runs
    # (two at a time, as on two GPUs: the slots are the scheduler's, whatever the device)
    third = subprocess.run([sys.executable, "-m", "loratui", "queue", "run", "--parallel", "2"], cwd=queue_home,
                           capture_output=True, text=True, timeout=600)
    assert third.returncode == 1, third.stdout + third.stderr  # entries failed, the rest ran
    assert "resuming" in third.stdout, third.stdout
    entries = RunQueue().entries()
    assert [e.status for e in entries] == ["done", "done", "failed", "failed", "done"], [e.message for e in entries]
    assert "doomed" in entries[2].message and entries[2].run_dir is None  # no run folder was made
    assert "broken.safetensors" in entries[3].message  # the run's own one-line error
    assert json.loads((Path(entries[3].run_dir) / "state.json").read_text())["status"] == "failed"

    # nothing ran twice: four run folders; A and C started once, B twice (the second from step 1)
    c = Path(entries[4].run_dir)
    assert sorted(p.name for p in (queue_home / "runs").iterdir()) == ["fails", "last", "photos-seed1", "photos-seed2"]
    assert [e["start_step"] for e in named(a, "run_started")] == [0]
    assert [e["start_step"] for e in named(b, "run_started")] == [0, 1]
    assert [e["start_step"] for e in named(c, "run_started")] == [0]
    for run in (a, b, c):
        assert len(named(run, "run_finished")) == 1
        assert json.loads((run / "state.json").read_text())["status"] == "finished"
    assert json.loads((a / "state.json").read_text())["pid"] == a_pid  # A's own process finished it
    b_steps = [e["step"] for e in named(b, "step")]
    assert b_steps.count(1) == 1 and b_steps[-1] == 2, b_steps  # resumed after step 1: not done again


def test_sweeps_queue_the_product_each_named_for_its_values(queue_home):
    from loratui.engine.runs.queue import RunQueue

    photos = dataset(queue_home / "photos")
    out = cli("queue", "add", str(photos), "--config", "quiet.toml", *TINY, "--steps", "2",
              "--sweep", "lr=1e-4,2e-4", "--sweep", "rank=8,16")
    entries = RunQueue().entries()
    assert [e.name for e in entries] == ["photos-lr1e-4-rank8", "photos-lr1e-4-rank16",
                                         "photos-lr2e-4-rank8", "photos-lr2e-4-rank16"], out
    assert [(e.config["lr"], e.config["rank"]) for e in entries] == [(1e-4, 8), (1e-4, 16), (2e-4, 8), (2e-4, 16)]
    assert all(e.config["dataset"] == str(photos.resolve()) for e in entries)
    listed = json.loads(cli("queue", "list", "--json"))
    assert [row["status"] for row in listed] == ["queued"] * 4 and "notify" not in listed[0]
    cli("queue", "remove", "2", "3")
    assert [e.id for e in RunQueue().entries()] == [1, 4]


def test_queue_add_mistakes_are_one_line_and_queue_nothing(queue_home):
    from loratui.engine.runs.queue import RunQueue

    photos = dataset(queue_home / "photos")
    for args, words in [
        (["--lr", "fast"], "--lr"),
        (["--bogus", "1"], "--bogus"),
        (["--resume", "runs/x"], "--resume"),
        (["--resolution", "7"], "multiple of 8"),
        (["--sweep", "colour=red,blue"], "--colour"),
        (["--sweep", "rank"], "KEY=VALUE"),
        (["--sweep", "rank=8,16", "--sweep", "lr=1e-4,oops"], "--lr"),  # one bad combination: none queued
    ]:
        output = cli("queue", "add", str(photos), *TINY, *args, code=1)
        assert output.startswith("error: ") and len(output.strip().splitlines()) == 1 and words in output, output
    assert RunQueue().entries() == []


def test_a_second_queue_run_refuses_in_one_line(queue_home):
    from loratui.engine.runs.queue import RunnerLock

    lock = RunnerLock()
    lock.acquire()
    try:
        refused = subprocess.run([sys.executable, "-m", "loratui", "queue", "run"], cwd=queue_home,
                                 capture_output=True, text=True, timeout=60)
    finally:
        lock.release()
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"error: another `loratui queue run` is running (pid {os.getpid()}) "
                                      "(it runs the whole queue: follow it with `loratui queue list`)")


def test_the_wizard_queues_a_config_and_its_notify_url_stays_private(queue_home):
    from tinyrun import tiny_config

    from loratui.engine.runs.queue import RunQueue, add_to_queue

    photos = dataset(queue_home / "photos")
    config = tiny_config(Path("photos"), Path("out"), notify="json://localhost:9/secret-token")
    entry = add_to_queue(config)  # relative folders, as the wizard may hold them
    assert entry.name == "photos" and entry.config["dataset"] == str(photos.resolve())
    assert entry.config["output_dir"] == str((queue_home / "out").resolve())
    stored = RunQueue().get(entry.id)
    assert stored.notify == "json://localhost:9/secret-token" and "notify" not in stored.config
    assert "secret-token" not in cli("queue", "list", "--json") + cli("queue", "list")
    assert (RunQueue().path.stat().st_mode & 0o777) == 0o600  # the file that holds it is the user's alone
