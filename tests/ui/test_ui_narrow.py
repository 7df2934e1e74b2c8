"""The wizard at 80×24 (issue 13's leftovers, issue 17 items 5-6 in the wizard): the run's end
said on a line of its own, not in a toast over the progress bar; a status that never breaks
inside "ETA 0:40 after it"; paths cut or wrapped at their separators, never mid-name; and the
folder step judging the demo dataset, and finding the captions' trigger word, as the CLI does."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ui_helpers import async_test, screen_text, settle, wait_for

from loratui.app import build_app

SIZE = (80, 24)


def _rows(app, widget_id: str) -> list[str]:
    """The rows of the screen inside the widget ``widget_id``."""
    region = app.screen.query_one(widget_id).region
    strips = app.screen._compositor.render_strips()[region.y:region.bottom]  # as ui_helpers.screen_text
    return ["".join(segment.text for segment in strip.crop(region.x, region.right)) for strip in strips]


def _step(step: int, now: float) -> dict:
    return {"event": "step", "t": now - 60 + step, "step": step, "total_steps": 60, "epoch": 1, "loss": 0.3,
            "lr": 1e-4, "it_per_s": 1.0, "eta_s": 40.0, "mem_used": 1, "mem_peak": 1, "mem_total": 2,
            "mem_kind": "ram"}


@async_test
async def test_a_live_run_ends_on_a_line_of_its_own_and_its_status_keeps_eta_whole(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "a-run-with-a-rather-long-name"
    run_dir.mkdir(parents=True)
    now = time.time()
    events = [{"event": "run_started", "t": now - 60, "name": "demo", "total_steps": 60,
               "config": {"trigger": "zxq", "base_model": "tiny"}}]
    events += [_step(step, now) for step in range(1, 21)]
    # "validating" makes the status 81 cells: at 78 it must wrap, and only between its parts
    events.append({"event": "phase", "t": now - 35, "phase": "validating", "done": 1, "total": 3})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    state = {"status": "running", "pid": os.getpid(), "step": 20, "total_steps": 60}  # this test stands in
    (run_dir / "state.json").write_text(json.dumps(state))
    app = build_app(start="run", run_dir=run_dir)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.snapshot.phase == "validating", 20, "the pass")
        await pilot.pause(0.2)
        status = [r.strip() for r in _rows(app, "#status")]
        assert len(status) == 2 and status[1] == "ETA 0:40 after it", status  # not "ETA" / "0:40 after it"
        assert status[0].endswith("1.00 it/s"), status

        lora = run_dir / "demo.safetensors"
        with (run_dir / "events.jsonl").open("a") as f:
            f.write(json.dumps(_step(60, now + 60)) + "\n")
            f.write(json.dumps({"event": "run_finished", "t": now + 61, "path": str(lora), "step": 60}) + "\n")
        (run_dir / "state.json").write_text(json.dumps({**state, "status": "finished", "step": 60}))
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 20, "the end")
        await pilot.pause(0.3)
        assert not app.screen.query("Toast"), "a toast sits on the progress bar and the loss line"
        rows = screen_text(app).splitlines()
        assert "The run finished: your LoRA and what to do next below." in rows[2], rows[:4]
        progress = app.screen.query_one("#progress").region
        assert rows[progress.y].rstrip().endswith("100%"), rows[progress.y]  # uncovered

        notes = [r.rstrip() for r in _rows(app, "#notes")]
        path_rows = notes[1:notes.index(next(r for r in notes if r.startswith(" It is") or r.startswith("It is")))]
        assert "".join(r.strip() for r in path_rows) == str(lora), notes
        assert all(r.endswith("/") for r in path_rows[:-1]) and path_rows[-1].strip().endswith("demo.safetensors"), \
            path_rows  # broken after separators, the file's name whole
        text = " ".join(" ".join(notes).split())
        assert "tiny test model: its samples are noise" in text, text  # as `loratui train` says it

        # what to do next: a command whose run folder wraps after a separator, never mid-name
        assert "More below" not in screen_text(app).splitlines()[-1]  # all the notes fit
        notes = [r.strip() for r in _rows(app, "#notes")]
        first = next(n for n, r in enumerate(notes) if r.startswith("loratui sample"))
        last = next(n for n, r in enumerate(notes) if "--prompt" in r)
        command = "".join(r if r.endswith("/") else r + " " for r in notes[first:last + 1]).strip()
        assert command == f'loratui sample {run_dir.resolve()} --prompt "zxq, …"', notes[first:last + 1]
        assert last > first + 1, notes  # (the long run folder did wrap: the test tests something)


@async_test
async def test_the_folder_step_judges_the_demo_dataset_as_check_does_and_takes_its_trigger(
        tmp_path: Path) -> None:
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.screens.findings import FindingsDialog

    folder = make_demo_dataset(tmp_path / "a-home-folder" / ".cache" / "loratui" / "demo-dataset", count=8)
    app = build_app(folder)  # `loratui FOLDER`: no model, no trigger, the person preset (512 px)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "images" in str(app.screen.query_one("#summary").render()), 30, "the summary")
        await settle(pilot)
        summary = " ".join(" ".join(r.strip("│ ") for r in _rows(app, "#summary")).split())
        assert "judged for the tiny model at 64 px (the demo dataset is made for it)" in summary, summary
        assert "trigger word zxq: every caption starts with it" in summary, summary
        assert "error" not in summary, summary  # at 512 px its 96-112 px images were 4 errors

        shown = _rows(app, "#path")[0].strip()
        assert shown.startswith("…/") and shown.endswith("/loratui/demo-dataset"), shown  # its end, whole names
        path_rows = [r.strip("│ ") for r in _rows(app, "#summary-path")]
        assert "".join(path_rows) == str(folder) and all(r.endswith("/") for r in path_rows[:-1]), path_rows

        await pilot.press("ctrl+n")  # the full check: 8 images is a warning only
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsDialog), 30, "the warnings dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.state.report is not None, 20, "the next step")
        assert app.state.base_model == "tiny" and app.state.trigger == "zxq"
        config = app.state.build_config()
        assert (config.base_model, config.resolution, config.trigger) == ("tiny", 64, "zxq")


@async_test
async def test_notes_longer_than_the_screen_say_so_and_scroll_with_page_down(tmp_path: Path, photos: Path) -> None:
    """A finished run's notes (the LoRA, its advice, what to do next, the warnings) outgrow 80x24,
    and nothing on screen could scroll them from the keyboard: what to do next was never seen."""
    from test_ui_run_end import finished_with_advice

    app = build_app(start="run", run_dir=finished_with_advice(tmp_path, photos))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 20, "the replay")
        await wait_for(pilot, lambda: "pgdn More below" in screen_text(app).splitlines()[-1], 5, "the footer")
        assert "--prompt" not in screen_text(app)
        for _ in range(5):
            await pilot.press("pagedown")
            await pilot.pause(0.1)
            if "More below" not in screen_text(app).splitlines()[-1]:
                break
        assert "--prompt" in screen_text(app) and "warning: 3 images are under 64 px" in screen_text(app)
        await pilot.press("pageup")
        await wait_for(pilot, lambda: "pgdn More below" in screen_text(app).splitlines()[-1], 5, "back up")


@async_test
async def test_the_demo_says_its_resolution_is_the_demos_own_not_the_users() -> None:
    app = build_app(demo=True)  # `loratui demo`: 64 px, set by the demo, nothing typed in Advanced
    async with app.run_test(size=SIZE) as pilot:
        # the count is drawn first, what the sizes were judged for once the header pass is done
        def drawn() -> str:
            return " ".join(" ".join(r.strip("│ ") for r in _rows(app, "#summary")).split())

        await wait_for(pilot, lambda: "judged for" in drawn(), 30, "the summary")
        summary = drawn()
        assert "64 px (the demo's setting for its tiny model)" in summary and "Advanced" not in summary, summary
        app.state.overrides["resolution"] = 96  # typed in Advanced: then it says so
        assert app.state.origin("resolution") == "set in Advanced"
