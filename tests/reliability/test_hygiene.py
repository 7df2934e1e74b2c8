"""Run hygiene: one writer per run folder, dead runs shown as stale, stops that checkpoint,
and a detached run that outlives its terminal."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from reliability_kit import (
    Child,
    assert_bit_identical,
    complete_checkpoints,
    config_of,
    load_lora,
    loratui,
    partial_files,
    standard_config,
    state_of,
    wait_until,
    write_config,
)
from loratui.engine.errors import RunError
from loratui.engine.runs.registry import pid_alive
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


def test_a_second_train_on_a_busy_run_dir_is_refused(tmp_path, rel_dataset):
    cfg = standard_config(rel_dataset, tmp_path, steps=3, save_every=0)
    run_dir = tmp_path / "busy"
    running, release, results = threading.Event(), threading.Event(), []

    def hold_at_first_step(event) -> None:
        if event.event == "step" and not running.is_set():
            running.set()
            release.wait(60)

    first = threading.Thread(target=lambda: results.append(train(cfg, run_dir, [hold_at_first_step])))
    first.start()
    try:
        assert running.wait(120), "the first run never reached a step"
        with pytest.raises(RunError, match="another loratui process is using this run"):
            train(cfg, run_dir)
        assert state_of(run_dir)["status"] == "running"  # the refused call wrote nothing
    finally:
        release.set()
        first.join(120)
    assert results and results[0].status == "finished"


def test_a_running_state_with_a_dead_pid_is_reported_stale(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "ghost"
    run_dir.mkdir()
    (run_dir / "state.json").write_text(json.dumps(
        {"name": "ghost", "status": "running", "pid": dead.pid, "step": 3, "total_steps": 12, "updated_at": 1.0}))
    result = loratui("runs", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["run_dir"]: row for row in json.loads(result.stdout)}
    assert rows[str(run_dir.resolve())]["status"] == "stale"


def test_sigterm_to_a_foreground_run_checkpoints_stops_and_resumes_exactly(tmp_path, rel_dataset, reference):
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="run")
    run_dir = tmp_path / "out" / "run"
    child = Child("--config", str(config))
    assert child.wait_for(lambda e: e["event"] == "step" and e["step"] >= 2) is not None
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish()
    assert code == 0, err
    [stopped] = [e for e in child.events if e["event"] == "run_stopped"]
    state = state_of(run_dir)
    assert state["status"] == "stopped" and "SIGTERM" in state["message"]
    assert complete_checkpoints(run_dir)[-1] == stopped["step"] < 12
    assert partial_files(run_dir) == []
    result = train(config_of(run_dir), run_dir, resume=True)
    assert result.status == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_a_detached_run_ignores_sighup_and_stops_on_loratui_stop(tmp_path, rel_dataset):
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="bg",
                          steps=100_000, save_every=0)
    run_dir = tmp_path / "out" / "bg"
    started = loratui("train", "--config", str(config), "--detach")
    assert started.returncode == 0, started.stderr
    pid = int(re.search(r"\(pid (\d+)\)", started.stdout).group(1))
    try:
        assert wait_until(lambda: state_of(run_dir).get("step", 0) >= 2, timeout=120), state_of(run_dir)
        os.kill(pid, signal.SIGHUP)  # what an SSH drop sends
        step = state_of(run_dir)["step"]
        assert wait_until(lambda: state_of(run_dir)["step"] > step + 2, timeout=60), "the run stopped training"
        assert pid_alive(pid) and state_of(run_dir)["status"] == "running"

        stop = loratui("stop", str(run_dir))
        assert stop.returncode == 0, stop.stderr
        assert wait_until(lambda: state_of(run_dir).get("status") == "stopped", timeout=60), state_of(run_dir)
        assert wait_until(lambda: not pid_alive(pid), timeout=30)
        assert complete_checkpoints(run_dir) == [state_of(run_dir)["step"]]
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)  # only the run this test started
