"""`loratui stop` signals the run's own process, never one that has its pid since (issue 14,
part 2). A run is named by its pid *and* the start time of that process (``pid_start_time``
in state.json, from /proc/PID/stat), which no later process can share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_kit import loratui, one_clear_line, state_of, wait_until

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="start times come from /proc"),
]


def _start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def bystander():
    """An unrelated process (a `sleep`) that a stale state.json will name by its pid."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    yield proc
    proc.kill()
    proc.wait()


def _running_state(run_dir: Path, pid: int, start_time: int | None) -> Path:
    run_dir.mkdir(parents=True)
    state = {"status": "running", "name": run_dir.name, "pid": pid, "step": 3, "total_steps": 12}
    if start_time is not None:
        state["pid_start_time"] = start_time
    (run_dir / "state.json").write_text(json.dumps(state))
    return run_dir


def test_stop_never_signals_a_process_that_reused_the_runs_pid(tmp_path, bystander):
    run_dir = _running_state(tmp_path / "run", bystander.pid, _start_time(bystander.pid) + 12345)
    result = loratui("stop", str(run_dir))
    time.sleep(0.3)  # a SIGTERM, had one been sent, would have ended `sleep` by now
    assert bystander.poll() is None, "loratui stop killed an unrelated process"
    line = one_clear_line(result)
    assert "not running" in line and "stale" in line and "--resume" in line, line
    assert not (run_dir / "stop.request").exists()


def test_runs_reports_a_reused_pid_as_stale(tmp_path, bystander):
    run_dir = _running_state(tmp_path / "run", bystander.pid, _start_time(bystander.pid) + 12345)
    result = loratui("runs", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {Path(r["run_dir"]).name: r["status"] for r in json.loads(result.stdout)}
    assert rows.get(run_dir.name) == "stale", result.stdout


def test_stop_still_signals_the_runs_own_process(tmp_path, bystander):
    """The matching pid and start time: this is the run's process, and it gets SIGTERM."""
    run_dir = _running_state(tmp_path / "run", bystander.pid, _start_time(bystander.pid))
    result = loratui("stop", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert wait_until(lambda: bystander.poll() is not None, timeout=10)
    assert bystander.returncode == -15  # SIGTERM
    assert (run_dir / "stop.request").exists()


def test_a_run_records_the_start_time_of_its_process(tmp_path, rel_dataset):
    from loratui.engine.events import StepLogged
    from loratui.engine.train.stop import StopSignal
    from loratui.engine.train.loop import train
    from reliability_kit import standard_config

    run_dir = tmp_path / "run"
    seen: dict = {}
    stop = StopSignal()

    def look(event) -> None:
        if isinstance(event, StepLogged) and not seen:
            seen.update(state_of(run_dir))
            stop.request("test")

    train(standard_config(rel_dataset, tmp_path, steps=4, save_every=0), run_dir, [look], stop=stop)
    assert seen["pid"] == os.getpid()
    assert seen["pid_start_time"] == _start_time(os.getpid())
