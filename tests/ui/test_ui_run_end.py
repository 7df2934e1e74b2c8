"""The end of a run on screen and after `q` (issue 13, defect 10): the run's recommendation
(checkpoint, strength, why), the LoRA's absolute path, and the terminal told where it is."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app

REASON = "the held-out validation loss was still falling at the end (0.3120); if the likeness is weak, train longer"


def finished_with_advice(root: Path, photos: Path) -> Path:
    import test_ui_snapshots as snaps  # its fixed run history (a module import: no tests collected twice)

    run_dir = root / "runs" / "demo"
    snaps.write_run(run_dir, photos / "demo_00.png")
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    advice = {"event": "recommendation", "t": 60, "step": 60, "path": "runs/demo/demo.safetensors",
              "strength": "0.6-0.9", "reason": REASON, "overtrained": False}
    finished = json.loads(lines[-1])
    finished["path"] = "runs/demo/demo.safetensors"  # relative, as a run started with --output runs writes it
    (run_dir / "events.jsonl").write_text("\n".join([*lines[:-1], json.dumps(advice), json.dumps(finished)]) + "\n")
    return run_dir


@async_test
async def test_a_finished_run_shows_its_advice_and_where_the_lora_is(tmp_path: Path, photos: Path) -> None:
    run_dir = finished_with_advice(tmp_path, photos)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)  # attach from another folder: the relative path would point nowhere
    try:
        app = build_app(start="run", run_dir=run_dir)
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_for(pilot, lambda: app.screen.snapshot.ended, 20, "the replay")
            await pilot.pause(0.2)
            notes = app.screen.query_one("#notes").region
            rows = [row[notes.x:notes.right] for row in screen_text(app).splitlines()[notes.y:notes.bottom]]
            text = " ".join(" ".join(rows).split())
            lora = run_dir.resolve() / "demo.safetensors"
            assert str(lora) in "".join(r.strip() for r in rows), rows  # the whole path (it wraps)
            assert "Recommended: step 60" in text and "strength 0.6-0.9" in text and "train longer" in text, text
            assert "<lora:demo:0.7>" in text
            await pilot.press("q")
        message = app.exit_message or ""
        assert f"Your LoRA: {lora}" in message and "<lora:demo:0.7>" in message and "train longer" in message
    finally:
        os.chdir(cwd)
