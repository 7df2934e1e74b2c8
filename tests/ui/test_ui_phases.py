"""A sample or validation pass between steps shows its own progress and its running time, so
the view never stands still for minutes (issue 13, defect 1, the view's side)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app


def running_run(run_dir: Path, phase: dict) -> None:
    """A run that is "running" (this test's pid stands in for the trainer), 20 steps in, then a pass."""
    run_dir.mkdir(parents=True)
    now = time.time()
    events = [{"event": "run_started", "t": now - 60, "name": "demo", "total_steps": 60, "config": {}}]
    for step in range(1, 21):
        events.append({"event": "step", "t": now - 60 + step, "step": step, "total_steps": 60, "epoch": 1,
                       "loss": 0.3, "lr": 1e-4, "it_per_s": 1.0, "eta_s": 40.0, "mem_used": 1, "mem_peak": 1,
                       "mem_total": 2, "mem_kind": "ram"})
    events.append({"t": now - 35, **phase})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run_dir / "state.json").write_text(json.dumps({"status": "running", "pid": os.getpid(), "step": 20,
                                                    "total_steps": 60}))


@async_test
async def test_a_sampling_pass_shows_its_progress_and_time(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "demo"
    running_run(run_dir, {"event": "phase", "phase": "sampling", "done": 1, "total": 3})
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.snapshot.phase == "sampling", 20, "the pass")
        await pilot.pause(0.2)
        status = " ".join(" ".join(screen_text(app).splitlines()[1:3]).split())
        assert "sampling 1/3 for 0:3" in status, status  # begun 35 s ago
        assert "step 20/60" in status and "ETA 0:40 after it" in status, status
        first = re.search(r"for (\d+:\d+)", status).group(1)
        await pilot.pause(1.3)  # no new event: the clock still moves
        later = re.search(r"for (\d+:\d+)", " ".join(screen_text(app).splitlines()[1:3])).group(1)
        assert later != first
