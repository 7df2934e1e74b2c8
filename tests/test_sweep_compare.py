"""`loratui queue compare`: a sweep's runs side by side, the best one marked, and its sample grid.

One real sweep of two tiny runs (lr swept, rank given one value) goes through `queue run` as a
user runs it; the tests then read the table, the JSON and the grid against the run folders the
runs left behind (state.json, validation.json, samples/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loratui.cli import app

# 64 px, two images, two sample prompts (one denoising step) at steps 1 and 2, validation at both
ARGS = ["--preset", "pet", "--base-model", "tiny", "--resolution", "64", "--batch-size", "1", "--steps", "2",
        "--save-every", "1", "--sample-every", "1", "--config", "samples.toml", "--output", "runs",
        "--sweep", "lr=1e-4,5e-3", "--sweep", "rank=4"]
WIDE = {"COLUMNS": "220"}  # no column of the table cut short


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=WIDE)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The queue's folder and what `queue compare --json` said before the sweep ran and after."""
    from loratui.engine.data.demo import make_demo_dataset

    home = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LORATUI_STATE_DIR", str(home / "state"))
        mp.chdir(home)
        make_demo_dataset(home / "photos", count=2)
        (home / "samples.toml").write_text('sample_steps = 1\nsample_prompts = ["a zxq dog", "a zxq dog on a beach"]\n')
        cli("queue", "add", "photos", *ARGS)
        before = json.loads(cli("queue", "compare", "--json"))
        refused = cli("queue", "compare", "--grid", "early.png", code=1)
        ran = subprocess.run([sys.executable, "-m", "loratui", "queue", "run", "--parallel", "2"], cwd=home,
                             capture_output=True, text=True, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        after = json.loads(cli("queue", "compare", "--json"))
        yield {"home": home, "state": home / "state", "before": before, "refused": refused, "after": after}


def test_runs_still_queued_show_their_status_and_no_grid_yet(sweep):
    before = sweep["before"]
    assert [r["status"] for r in before["runs"]] == ["queued", "queued"]
    assert before["ended"] is False and before["grid"] is None and before["best"] is None
    assert all(r["run_dir"] is None and r["step"] == 0 for r in before["runs"])
    refused = sweep["refused"]
    assert refused.startswith("error: sweep 1 has not ended") and len(refused.strip().splitlines()) == 1
    assert not (sweep["home"] / "early.png").exists()


def test_json_rows_come_from_the_run_folders_and_the_best_is_the_lowest_validation_loss(sweep):
    after = sweep["after"]
    assert after["schema"] == 1 and after["sweep"] == 1
    assert after["keys"] == ["lr", "rank"] and after["varying"] == ["lr"]  # rank=4 in both: not compared
    assert after["ended"] is True and after["finished"] == 2 and after["note"] is None
    assert "lowest validation loss" in after["best_rule"]
    best_losses = {}
    for row, lr in zip(after["runs"], ["1e-4", "5e-3"]):
        run_dir = Path(row["run_dir"])
        state = json.loads((run_dir / "state.json").read_text())
        history = json.loads((run_dir / "validation.json").read_text())["history"]
        assert row["values"] == {"lr": lr, "rank": "4"} and row["name"] == f"photos-lr{lr}-rank4"
        assert (row["status"], row["step"], row["total_steps"]) == ("done", 2, 2)
        assert row["final_loss"] == state["final_loss"]  # the smoothed loss the run ended with
        low_step, low = min(history, key=lambda h: (h[1], h[0]))
        assert (row["best_validation_step"], row["best_validation_loss"]) == (low_step, low)
        assert len(history) == 2
        assert row["recommendation"]["path"] == state["recommendation"]["path"]
        assert row["recommendation"]["strength"] == state["recommendation"]["strength"]
        assert row["lora"] == state["lora"] and row["message"] is None
        best_losses[row["id"]] = low
    best = min(best_losses, key=best_losses.get)
    assert after["best"] == best and [r["best"] for r in after["runs"]] == [r["id"] == best for r in after["runs"]]
    assert best_losses[1] != best_losses[2]  # the two learning rates did differ: the mark means something


def test_the_table_shows_the_varying_values_and_marks_the_best(sweep):
    after = sweep["after"]
    text = cli("queue", "compare", "1")
    header = next(line for line in text.splitlines() if "status" in line)
    assert " lr " in header and "rank" not in header
    assert "(smoothed)" in text and "best val." in text
    for row in after["runs"]:
        rec = row["recommendation"]
        line = next(line for line in text.splitlines() if f" {row['values']['lr']} " in line)
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        assert cells[0] == (f"{row['id']} *" if row["best"] else str(row["id"]))
        assert cells[1:5] == [row["values"]["lr"], "done", "2/2", f"{row['final_loss']:.4f}"]
        assert cells[5] == f"{row['best_validation_loss']:.4f} ({row['best_validation_step']})"
        assert cells[6] == f"{rec['step']} @ {rec['strength']}"
        assert cells[7] == f"runs/{row['name']}"
    best = next(r for r in after["runs"] if r["best"])
    assert f"* best: {best['name']}, the finished run with the lowest validation loss" in text
    assert f"use {best['recommendation']['path']} at strength" in " ".join(text.split())
    missing = cli("queue", "compare", "7", code=1)
    assert missing.strip() == "error: sweep 7: no such sweep in the queue (the queue holds sweep 1)"


def test_the_grid_holds_each_runs_last_sample_per_prompt(sweep):
    import numpy as np
    from PIL import Image

    after = sweep["after"]
    path = Path(after["grid"])
    assert path == sweep["state"] / "sweep-1.png"
    other = sweep["home"] / "grids" / "mine.png"
    assert json.loads(cli("queue", "compare", "--json", "--grid", str(other)))["grid"] == str(other)
    for grid_file in (path, other):
        grid = np.asarray(Image.open(grid_file).convert("RGB"))
        height, width = grid.shape[:2]
        assert height > 2 * 64 and width > 2 * 64  # two rows, two columns of 64 px and the labels
        for r, row in enumerate(after["runs"]):
            samples = Path(row["run_dir"]) / "samples"
            assert (samples / "step000001-0.png").is_file()  # an older sample the grid must pass over
            for k in range(2):
                cell = grid[height - (2 - r) * 64: height - (1 - r) * 64, width - (2 - k) * 64: width - (1 - k) * 64]
                last = np.asarray(Image.open(samples / f"step000002-{k}.png").convert("RGB"))
                assert np.array_equal(cell, last), (row["name"], k)
        assert grid[: height - 2 * 64].min() < 128  # dark label text in the top margin
        assert grid[:, : width - 2 * 64].min() < 128  # and in the left one
    first = [np.asarray(Image.open(Path(r["run_dir"]) / "samples" / "step000002-0.png")) for r in after["runs"]]
    assert not np.array_equal(*first)  # the runs' samples differ: each cell is its own run's
