"""`loratui status RUN --json` and `runs --json`: the structure scripts read, from real tiny runs."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from tinyrun import tiny_config
from loratui.cli import app

KEYS = {"schema", "run_dir", "name", "status", "pid", "step", "total_steps", "progress", "epoch", "loss",
        "final_loss", "validation_loss", "lr", "it_per_s", "eta_s", "started_at", "updated_at", "finished_at",
        "gpu", "recommendation", "message", "hint", "last_warning", "paths"}


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_while_running_then_finished_and_in_runs(small_dataset, tmp_path, monkeypatch):
    from loratui.engine.events import StepLogged
    from loratui.engine.runs.status import run_status
    from loratui.engine.train.loop import train

    run_dir = tmp_path / "out" / "cat"
    cfg = tiny_config(small_dataset, tmp_path / "out", steps=4, save_every=2, batch_size=1, sample_every=0, name="cat")
    seen = {}

    def look(event) -> None:  # what a script polling `status --json` sees mid-run
        if isinstance(event, StepLogged) and event.step == 3:
            seen.update(run_status(run_dir))

    train(cfg, run_dir, [look])
    assert set(seen) == KEYS
    assert seen["status"] == "running" and seen["pid"] == os.getpid()
    assert seen["step"] == 3 and seen["total_steps"] == 4 and seen["progress"] == pytest.approx(0.75)
    assert seen["eta_s"] is not None and seen["eta_s"] >= 0 and seen["it_per_s"] > 0
    assert seen["loss"] > 0 and seen["gpu"]["kind"] == "ram" and seen["gpu"]["mem_peak"] > 0
    assert seen["paths"]["last_checkpoint"].endswith("cat-step000002.safetensors")

    monkeypatch.chdir(tmp_path / "out")
    done = cli_json("status", "cat", "--json")
    assert set(done) == KEYS and done["schema"] == 1
    assert done["status"] == "finished" and done["step"] == 4 and done["eta_s"] is None and done["pid"] is None
    assert done["paths"]["lora"] == str(run_dir / "cat.safetensors")
    assert done["recommendation"]["path"].endswith(".safetensors") and done["recommendation"]["strength"]
    assert done["validation_loss"] is not None and done["paths"]["card"] == str(run_dir / "README.md")

    listed = cli_json("runs", "--json")
    [row] = [r for r in listed if r["run_dir"] == str(run_dir)]
    assert row == done  # runs --json lists each run in the same structure


def test_a_failed_and_a_damaged_run(small_dataset, tmp_path, monkeypatch):
    from loratui.engine.errors import LoratuiError
    from loratui.engine.train.loop import train

    run_dir = tmp_path / "out" / "full"
    cfg = tiny_config(small_dataset, tmp_path / "out", steps=4, save_every=2, sample_every=0, name="full")
    monkeypatch.setenv("LORATUI_FAULTS", "disk_full@save:2")
    with pytest.raises(LoratuiError):
        train(cfg, run_dir, [])
    failed = cli_json("status", str(run_dir), "--json")
    assert failed["status"] == "failed" and failed["message"] and failed["hint"]

    (run_dir / "state.json").write_text("[1, 2]", encoding="utf-8")
    damaged = cli_json("status", str(run_dir), "--json")
    assert damaged["status"] == "damaged" and "state.json" in damaged["message"]

    result = CliRunner().invoke(app, ["status", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such run" in result.output
