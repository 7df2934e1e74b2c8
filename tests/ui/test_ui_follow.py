"""The follower: events.jsonl folded into snapshots, off the UI thread, rate-limited."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from loratui.engine.runs.registry import EVENTS, STATE
from loratui.screens.follow import RunModel, follow_run


def step_event(step: int, total: int = 100, loss: float = 0.5) -> dict:
    return {"event": "step", "t": time.time(), "step": step, "total_steps": total, "epoch": 1, "loss": loss,
            "lr": 1e-4, "it_per_s": 2.0, "eta_s": (total - step) / 2, "mem_used": 1 << 30,
            "mem_peak": 2 << 30, "mem_total": 8 << 30, "mem_kind": "cuda"}


def test_the_fold_keeps_the_latest_values_and_the_loss_curve() -> None:
    model = RunModel(Path("run"))
    model.apply({"event": "run_started", "name": "cat", "total_steps": 3, "config": {"trigger": "zxq"}})
    for step, loss in enumerate([1.0, float("nan"), 0.5], 1):
        model.apply(step_event(step, 3, loss))
    model.apply({"event": "checkpoint_saved", "path": "/r/cat-step000002.safetensors", "step": 2})
    model.apply({"event": "warning", "message": "loss is NaN at step 2"})
    model.apply({"event": "run_finished", "path": "/r/cat.safetensors", "step": 3})
    snap = model.snapshot()
    assert snap.status == "finished" and snap.ended
    assert snap.step == 3 and snap.trigger == "zxq" and snap.lora_name == "cat"
    assert len(snap.smoothed) == 2  # the NaN stays out of the smoothed line
    assert snap.smoothed[0] == 1.0 and 0.5 < snap.smoothed[1] < 1.0
    assert snap.last_checkpoint_step == 2 and snap.warnings == ("loss is NaN at step 2",)


def test_a_dead_process_without_a_final_event_is_stale(tmp_path: Path) -> None:
    (tmp_path / EVENTS).write_text(json.dumps({"event": "run_started", "name": "x", "total_steps": 10}) + "\n")
    (tmp_path / STATE).write_text(json.dumps({"status": "running", "pid": 2**22 + 12345}))
    snaps = []
    final = follow_run(tmp_path, snaps.append, lambda: False, poll_s=0.01)
    assert final.status == "stale" and "gone" in final.message
    assert snaps[-1].status == "stale"


def test_history_is_replayed_and_a_torn_last_line_waits(tmp_path: Path) -> None:
    lines = [json.dumps({"event": "run_started", "name": "x", "total_steps": 500})]
    lines += [json.dumps(step_event(s, 500)) for s in range(1, 501)]
    lines += [json.dumps({"event": "run_finished", "path": str(tmp_path / "x.safetensors"), "step": 500})]
    text = "\n".join(lines) + "\n"
    (tmp_path / EVENTS).write_text(text[:-40])  # the writer is mid-line
    snaps = []
    stop = threading.Event()
    thread = threading.Thread(target=follow_run, args=(tmp_path, snaps.append, stop.is_set), kwargs={"poll_s": 0.01})
    thread.start()
    time.sleep(0.3)
    assert snaps and snaps[-1].status == "running" and snaps[-1].step == 500
    with open(tmp_path / EVENTS, "a") as fh:
        fh.write(text[-40:])
    thread.join(5)
    assert not thread.is_alive()
    assert snaps[-1].status == "finished" and len(snaps[-1].smoothed) == 400  # the last LOSS_POINTS


def test_a_fast_run_is_published_at_most_ten_times_a_second(tmp_path: Path) -> None:
    path = tmp_path / EVENTS
    path.write_text(json.dumps({"event": "run_started", "name": "x", "total_steps": 100_000}) + "\n")
    (tmp_path / STATE).write_text(json.dumps({"status": "running", "pid": __import__("os").getpid()}))
    stop = threading.Event()

    def writer() -> None:
        with open(path, "a") as fh:
            for step in range(1, 1001):  # 1,000 events a second for a second
                fh.write(json.dumps(step_event(step, 100_000)) + "\n")
                fh.flush()
                time.sleep(0.001)
        stop.set()

    snaps = []
    started = time.monotonic()
    thread = threading.Thread(target=writer)
    thread.start()
    follow_run(tmp_path, snaps.append, lambda: stop.is_set() and time.monotonic() - started > 1.5, poll_s=0.01)
    thread.join()
    elapsed = time.monotonic() - started
    assert len(snaps) <= 10 * elapsed + 2
    assert snaps[-1].step == 1000
