"""The run view: attach to a finished run (history replayed), follow a live one, stop one."""

from __future__ import annotations

import json
from pathlib import Path

from tinyrun import tiny_config
from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.engine.train.launch import launch_detached, prepare_run_dir
from loratui.engine.runs.registry import EVENTS, effective_status, read_state
from loratui.screens.follow import RunSnapshot
from loratui.screens.run import RunScreen
from loratui.widgets.loss import LossChart


@async_test
async def test_attach_to_a_finished_run_replays_its_history(finished_run: Path) -> None:
    steps = sum(1 for line in (finished_run / EVENTS).read_text().splitlines() if '"event": "step"' in line)
    app = build_app(start="run", run_dir=finished_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: screen.snapshot.ended, 20, "the replay")
        snap: RunSnapshot = screen.snapshot
        assert snap.status == "finished" and snap.step == snap.total_steps == 8
        assert len(snap.smoothed) == steps == 8  # the whole loss curve, not just what came after attaching
        assert list(app.screen.query_one(LossChart).plot.line) == list(snap.smoothed)
        text = screen_text(app)
        assert "finished" in text and "<lora:finished:0.7>" in text and "zxq" in text
        # saved every 4 steps: the last checkpoint is step 4, the LoRA of step 8 is the final one
        assert "final LoRA: step 8 → finished.safetensors" in text and "last checkpoint" not in text, text
        assert Path(snap.lora_path).is_file()
        # a finished run offers Close, not Stop or Detach
        keys = {b.binding.action for b in screen.active_bindings.values() if screen.check_action(b.binding.action, ())}
        assert "quit_view" in keys and "stop" not in keys and "detach" not in keys
        await pilot.press("o")  # the folder path, for copying
        await pilot.press("q")
    assert app.exit_message and f"Your LoRA: {snap.lora_path}" in app.exit_message  # q says where it is


@async_test
async def test_a_live_run_is_followed_and_stopped_with_a_checkpoint(tmp_path: Path, demo_dataset: Path, tiny_model) -> None:
    config = tiny_config(demo_dataset, tmp_path / "runs", steps=400, save_every=0, name="long")
    run_dir = prepare_run_dir(config)
    launched = launch_detached(config, run_dir)
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.snapshot.step >= 1, 90, "the first step")
        assert screen.snapshot.status == "running"
        assert "running" in screen_text(app) and "step " in screen_text(app)
        await pilot.press("s")
        await wait_for(pilot, lambda: "Stop this run?" in screen_text(app), 5, "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.snapshot.ended, 90, "the stop")
        assert screen.snapshot.status == "stopped"
        assert "--resume" in screen_text(app)
    state = read_state(run_dir)
    assert state["status"] == "stopped" and state["step"] < 400
    assert effective_status(state) == "stopped"
    assert any((run_dir / "checkpoints").iterdir())
    events = [json.loads(line) for line in (run_dir / EVENTS).read_text().splitlines()]
    assert events[-1]["event"] == "run_stopped" and launched.pid > 0


@async_test
async def test_detach_quits_and_says_how_to_come_back(finished_run: Path, tmp_path: Path) -> None:
    # A run that is still "running" (our own pid stands in for the trainer).
    import os
    import shutil

    run_dir = tmp_path / "live"
    shutil.copytree(finished_run, run_dir)
    lines = (run_dir / EVENTS).read_text().splitlines()
    (run_dir / EVENTS).write_text("\n".join(lines[:-1]) + "\n")  # drop run_finished
    state = read_state(run_dir)
    state.update(status="running", pid=os.getpid())
    (run_dir / "state.json").write_text(json.dumps(state))
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.snapshot.step == 8, 20, "the replay")
        assert app.screen.snapshot.status == "running"
        await pilot.press("d")
    assert f"loratui attach {run_dir}" in app.exit_message
