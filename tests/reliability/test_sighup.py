"""SIGHUP to a foreground `loratui train` (its terminal closed) checkpoints and stops like SIGTERM.

Before, SIGHUP's default action killed the run where it stood: no checkpoint since the last
save, state.json left `running`. A run where SIGHUP is ignored (detached, or under `nohup`)
keeps ignoring it: `test_hygiene.py::test_a_detached_run_ignores_sighup_and_stops_on_loratui_stop`.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from reliability_kit import (
    Child,
    assert_bit_identical,
    complete_checkpoints,
    config_of,
    env,
    load_lora,
    partial_files,
    state_of,
    write_config,
)
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


def test_sighup_to_a_foreground_run_checkpoints_stops_and_resumes_exactly(tmp_path, rel_dataset, reference):
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="run")
    run_dir = tmp_path / "out" / "run"
    child = Child("--config", str(config))
    assert child.wait_for(lambda e: e["event"] == "step" and e["step"] >= 2) is not None
    child.proc.send_signal(signal.SIGHUP)  # what closing the terminal sends
    code, err = child.finish()
    assert code == 0, (code, err)
    [stopped] = [e for e in child.events if e["event"] == "run_stopped"]
    state = state_of(run_dir)
    assert state["status"] == "stopped" and "SIGHUP" in state["message"]
    assert complete_checkpoints(run_dir)[-1] == stopped["step"] < 12
    assert partial_files(run_dir) == []
    result = train(config_of(run_dir), run_dir, resume=True)
    assert result.status == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_a_run_under_nohup_still_ignores_sighup(tmp_path, rel_dataset):
    """SIGHUP ignored when the run starts (nohup) stays ignored: the run trains on to the end."""
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="run", steps=30, save_every=0)
    run_dir = tmp_path / "out" / "run"
    proc = subprocess.Popen(
        ["nohup", sys.executable, "-m", "loratui", "train", "--config", str(config), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env(), stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if '"event": "step"' in line:
            break
    proc.send_signal(signal.SIGHUP)
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert state_of(run_dir)["status"] == "finished" and state_of(run_dir)["step"] == 30
