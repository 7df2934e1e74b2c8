"""state.json during training: a step never waits for the file (two fsyncs), and a late
progress write never hides a newer status."""

from __future__ import annotations

import json
import time

from loratui.engine import faults
from loratui.engine.events import StepLogged
from loratui.engine.runs.registry import StateWriter


def _step(step: int) -> StepLogged:
    return StepLogged(step=step, total_steps=10, epoch=1, loss=0.5, lr=1e-4, it_per_s=2.0, eta_s=4.0,
                      mem_used=1, mem_peak=2, mem_total=3, mem_kind="ram")


def test_a_step_does_not_wait_for_state_json(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.ENV, "slow@state")  # every write of state.json takes 0.5 s longer
    faults.load()
    try:
        writer = StateWriter(tmp_path, {"status": "running", "step": 0})
        tic = time.monotonic()
        writer(_step(1))
        writer(_step(2))  # within the second: recorded, written with the next write
        assert time.monotonic() - tic < 0.25
        writer.update(status="stopped")  # waits for the write under way, then writes the newer state
        writer.close()
    finally:
        monkeypatch.delenv(faults.ENV)
        faults.load()
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["status"] == "stopped" and state["step"] == 2


def test_the_last_step_is_written_before_the_event_returns(tmp_path):
    writer = StateWriter(tmp_path, {"status": "running"})
    writer(_step(9))
    writer(_step(10))
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 10
    writer.close()
