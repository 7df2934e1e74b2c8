"""One snapshot per screen (pytest-textual-snapshot), 80×24, deterministic: fixed paths, a
fixed run history, an empty recent list, no toasts, workers waited for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ui_helpers import settle, wait_for

from loratui.app import build_app

ROOT = Path("/tmp/loratui-snapshots")  # fixed, so the paths on screen never change
SIZE = (80, 24)


def fixed_root(root: Path, monkeypatch: pytest.MonkeyPatch, demo_dataset: Path) -> Path:
    """``root`` made afresh: an empty state dir (no recent folders) and six photos, one without
    a caption. (Each snapshot module has a root of its own: two test runs at once on one
    machine must not clear each other's.)"""
    shutil.rmtree(root, ignore_errors=True)
    (root / "state").mkdir(parents=True)
    monkeypatch.setenv("LORATUI_STATE_DIR", str(root / "state"))
    photos = root / "photos"
    photos.mkdir()
    for src in sorted(demo_dataset.glob("demo_0[0-5].*")):
        shutil.copy2(src, photos / src.name)
    (photos / "demo_05.txt").unlink()  # one image without a caption
    return root


@pytest.fixture
def fixed(monkeypatch: pytest.MonkeyPatch, demo_dataset: Path) -> Path:
    yield fixed_root(ROOT, monkeypatch, demo_dataset)
    shutil.rmtree(ROOT, ignore_errors=True)


def write_run(run_dir: Path, sample: Path) -> None:
    """A finished run's files with a fixed history (real runs differ in speed and loss): samples
    at steps 20 and 40, a validation loss at every save."""
    run_dir.mkdir(parents=True)
    (run_dir / "samples").mkdir()
    for step in (20, 40):
        shutil.copy2(sample, run_dir / "samples" / f"step{step:06d}.png")
    events = [{"event": "run_started", "t": 0, "name": "demo", "run_dir": str(run_dir), "total_steps": 60,
               "config": {"trigger": "zxq"}, "schedule": "12 images × 1 repeats = 12 per epoch ÷ batch 2"}]
    for step in range(1, 61):
        loss = 0.35 + 0.25 * (0.96 ** step) + 0.05 * ((step * 7) % 5 - 2) / 2
        events.append({"event": "step", "t": step, "step": step, "total_steps": 60, "epoch": 1 + (step - 1) // 6,
                       "loss": loss, "lr": 2e-4 * (1 - step / 60), "it_per_s": 3.2, "eta_s": (60 - step) / 3.2,
                       "mem_used": 1_400_000_000, "mem_peak": 1_650_000_000, "mem_total": 8_000_000_000,
                       "mem_kind": "cuda"})
        if step % 20 == 0:
            events.append({"event": "checkpoint_saved", "t": step, "step": step,
                           "path": str(run_dir / f"demo-step{step:06d}.safetensors")})
        if step in (20, 40):
            events.append({"event": "sample_saved", "t": step, "step": step,
                           "path": str(run_dir / "samples" / f"step{step:06d}.png")})
        if step % 20 == 0:
            events.append({"event": "validation", "t": step, "step": step, "loss": 0.52 - step / 400,
                           "images": 4, "held_out": True})
    events.append({"event": "warning", "t": 60, "message": "3 images are under 64 px on their short side"})
    events.append({"event": "run_finished", "t": 61, "path": str(run_dir / "demo.safetensors"), "step": 60})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run_dir / "state.json").write_text(json.dumps({"status": "finished", "pid": 1, "step": 60, "total_steps": 60}))


def settings() -> dict:
    return dict(base_model="tiny", trigger="zxq", resolution=64, steps=60, save_every=20, batch_size=2)


def test_folder_screen(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: "6 images" in str(app.screen.query_one("#summary").render()), 30)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_captions_screen(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", start="captions", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.current is not None and app.state.report is not None, 30)
        await pilot.press("j")
        await wait_for(pilot, lambda: app.screen.query_one("#preview").drawn is not None, 10)
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_preset_screen(snap_compare, fixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loratui.engine.planning.preset_plan import Hardware
    from loratui.screens import preset

    # the cards' time depends on the CPU and its recorded speed: the same ones on every machine
    monkeypatch.setenv("LORATUI_CACHE_DIR", str(fixed / "cache"))
    monkeypatch.setattr(preset, "detect_hardware", lambda: Hardware(threads=2))
    app = build_app(fixed / "photos", start="preset", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: len(app.screen.plans) == 3 and len(app.screen.needs) == 3, 30)
        await settle(pilot)
        await pilot.press("right", "right")  # pet

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_run_screen(snap_compare, fixed: Path) -> None:
    run_dir = fixed / "runs" / "demo"
    write_run(run_dir, fixed / "photos" / "demo_00.png")
    app = build_app(start="run", run_dir=run_dir)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 30)
        await wait_for(pilot, lambda: app.screen.query_one("#sample").drawn is not None, 10)
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_help_screen(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: "6 images" in str(app.screen.query_one("#summary").render()), 30)
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def open_findings(pilot) -> None:
    """From the folder step, Next: the dialog that lists the check's findings, settled."""
    app = pilot.app
    await wait_for(pilot, lambda: "6 images" in str(app.screen.query_one("#summary").render()), 30)
    await settle(pilot)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: type(app.screen).__name__ == "FindingsDialog", 30)
    await settle(pilot)
    await pilot.pause(0.2)


def test_warnings_dialog(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", defaults=settings())
    assert snap_compare(app, terminal_size=SIZE, run_before=open_findings)


def test_trigger_dialog(snap_compare, fixed: Path) -> None:
    app = build_app(fixed / "photos", start="captions", defaults=settings())

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.current is not None and app.state.report is not None, 30)
        await settle(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "InputDialog", 10)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_stop_dialog(snap_compare, fixed: Path) -> None:
    from loratui.screens.dialogs import ConfirmDialog

    run_dir = fixed / "runs" / "demo"
    write_run(run_dir, fixed / "photos" / "demo_00.png")
    app = build_app(start="run", run_dir=run_dir)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: app.screen.snapshot.ended, 30)
        await wait_for(pilot, lambda: app.screen.query_one("#sample").drawn is not None, 10)
        await settle(pilot)
        # the dialog `s` opens on a live run, with its own words
        app.push_screen(ConfirmDialog("Stop this run?", "It saves a checkpoint first; `loratui train --resume` "
                                      "continues it.", yes="Stop", no="Keep training"))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
