"""The run view's validation curve, samples gallery and `q` (issue 13): the validation losses
are drawn on the training loss's scale, every sample can be opened and paged through, and `q`
on a live run asks before it leaves the run training."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ui_helpers import async_test, screen_text, wait_for

from loratui.app import build_app
from loratui.engine.runs.registry import process_start_time
from loratui.screens.dialogs import ConfirmDialog
from loratui.screens.follow import RunModel, in_run_dir
from loratui.screens.run import RunScreen
from loratui.screens.samples import SampleViewer
from loratui.widgets.gallery import SampleGallery
from loratui.widgets.loss import LossChart
from loratui.widgets.plot import MARK, plot_rows


def write_history(run_dir: Path, picture: Path, finished: bool) -> None:
    """A run's events as the trainer writes them when started from another folder: its paths
    relative to that folder (``runs/NAME/…``); three samples, a validation loss at each."""
    (run_dir / "samples").mkdir(parents=True)
    rel = Path("runs") / run_dir.name
    events: list[dict] = [{"event": "run_started", "t": 0, "name": run_dir.name, "run_dir": str(rel),
                           "total_steps": 30, "config": {"trigger": "zxq"}}]
    for step in range(1, 31):
        events.append({"event": "step", "t": step, "step": step, "total_steps": 30, "epoch": 1, "loss": 0.6 - step / 100,
                       "lr": 1e-4, "it_per_s": 2.0, "eta_s": 30 - step, "mem_used": 1, "mem_peak": 1,
                       "mem_total": 10, "mem_kind": "ram"})
        if step % 10 == 0:
            shutil.copy2(picture, run_dir / "samples" / f"step{step:06d}-0.png")
            events.append({"event": "sample_saved", "t": step, "step": step,
                           "path": str(rel / "samples" / f"step{step:06d}-0.png")})
            events.append({"event": "validation", "t": step, "step": step, "loss": 0.8 - step / 50,
                           "images": 2, "held_out": True})
    if finished:
        events.append({"event": "run_finished", "t": 31, "path": str(rel / f"{run_dir.name}.safetensors"), "step": 30})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    state = {"status": "finished" if finished else "running", "pid": os.getpid(), "step": 30, "total_steps": 30,
             "pid_start_time": process_start_time(os.getpid())}
    (run_dir / "state.json").write_text(json.dumps(state))


def test_the_chart_draws_validation_marks_on_the_lines_scale() -> None:
    # a falling line over steps 1…9 in 10 cells × 2 rows, with a mark at step 9 at the bottom
    rows = [r.plain for r in plot_rows([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], 1, 9,
                                       [(9, 0.1), (1, 0.9), (50, 0.5)], 10, 2, 0.1, 0.9)]
    assert rows[0][0] == MARK and rows[1][-1] == MARK  # step 1 top left, step 9 bottom right
    assert "".join(rows).count(MARK) == 2  # step 50 is outside the steps drawn
    assert all(any("\u2800" < c <= "\u28ff" for c in row) for row in rows)  # the line crosses both rows


def test_event_paths_are_made_absolute_in_the_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "elsewhere" / "cat"
    assert in_run_dir(run_dir, "runs/cat/samples/a.png") == run_dir.resolve() / "samples" / "a.png"
    assert in_run_dir(run_dir, "/abs/a.png") == Path("/abs/a.png")
    model = RunModel(run_dir)
    model.apply({"event": "validation", "step": 5, "loss": float("nan"), "held_out": False})
    model.apply({"event": "validation", "step": 10, "loss": 0.5, "held_out": True})
    snap = model.snapshot()
    assert snap.validation == ((10, 0.5),) and snap.validation_held_out  # a NaN is not drawn


@async_test
async def test_validation_curve_and_samples_gallery(tmp_path: Path, demo_dataset: Path) -> None:
    run_dir = tmp_path / "cat"
    write_history(run_dir, demo_dataset / "demo_00.png", finished=True)
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await wait_for(pilot, lambda: screen.snapshot.ended, 20, "the replay")
        chart = screen.query_one(LossChart)
        assert [(step, round(loss, 6)) for step, loss in chart.plot.marks] == [(10, 0.6), (20, 0.4), (30, 0.2)]
        assert chart.plot.lo <= 0.2 + 1e-9 and chart.plot.hi >= 0.6 - 1e-9  # one scale holds both series
        text = screen_text(app)
        assert f"{MARK} val 0.2000" in text and text.count(MARK) >= 4  # the legend and three marks
        # the gallery: newest first, every sample, paths in the run folder (absolute)
        gallery = screen.query_one(SampleGallery)
        samples = [(10, "step000010-0.png"), (20, "step000020-0.png"), (30, "step000030-0.png")]
        assert [(s, Path(p).name) for s, p in gallery.samples] == samples
        assert all(Path(p).is_file() and Path(p).parent == run_dir.resolve() / "samples" for _s, p in gallery.samples)
        assert "samples (3)" in text and text.index("step000030-0.png") < text.index("step000010-0.png")
        await pilot.press("down", "enter")  # the one before the newest, opened large
        await wait_for(pilot, lambda: isinstance(app.screen, SampleViewer), 5, "the viewer")
        await wait_for(pilot, lambda: "sample 2 of 3 · step 20" in screen_text(app), 5, "the second sample")
        unwrapped = "".join(line.strip("█ ") for line in screen_text(app).splitlines())  # the path wraps
        assert str(run_dir.resolve() / "samples" / "step000020-0.png") in unwrapped
        await pilot.press("left")
        assert "sample 1 of 3 · step 10" in screen_text(app)
        await pilot.press("left", "right", "right", "right")  # stops at either end
        assert "sample 3 of 3 · step 30" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is screen


@async_test
async def test_q_on_a_live_run_asks_then_leaves_it_training(tmp_path: Path, demo_dataset: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run_dir = Path("live")  # relative, as the wizard's output folder makes it: said in full
    write_history(run_dir, demo_dataset / "demo_00.png", finished=False)  # its process: this one, alive
    where = tmp_path.resolve() / "live"
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.snapshot.step == 30, 20, "the replay")
        assert screen.snapshot.status == "running"
        await pilot.press("q")
        await wait_for(pilot, lambda: "Close the live view?" in screen_text(app), 5, "the question")
        text = screen_text(app)
        assert "keeps training" in text and "loratui attach" in text
        assert f"loratui attach {where}" in app.screen.body  # the whole path (it wraps on screen)
        await pilot.press("n")  # stay
        assert app.screen is screen and app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 5, "the question again")
        await pilot.press("enter")  # the default: close, keep training
    assert app.exit_message and f"watch:  loratui attach {where}" in app.exit_message
