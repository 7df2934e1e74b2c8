"""The wizard in a real terminal (tmux): start a run, drop the "SSH link" by killing the tmux
session, check the run finishes anyway, and that `loratui attach` shows it."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from tmux_helpers import Tmux, make_photos

from loratui.engine.runs.registry import effective_status, read_state

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs the tmux binary")


def test_a_run_survives_the_terminal_and_attach_shows_it(tmp_path: Path, tiny_model) -> None:
    photos = make_photos(tmp_path / "photos")
    tmux = Tmux("wizard")
    loratui = [sys.executable, "-m", "loratui"]
    try:
        tmux.start("wizard", tmp_path, [*loratui, str(photos)])
        tmux.wait_for("wizard", "6 images · 6 captioned", 60)
        tmux.keys("wizard", "C-n")
        tmux.wait_for("wizard", "warning(s)?", 60)
        tmux.keys("wizard", "y")
        tmux.wait_for("wizard", "6/6 · 6 captioned", 30)
        tmux.keys("wizard", "C-n")
        tmux.wait_for("wizard", "steps · 10 epochs", 60)  # the preset step, planned
        # cards (3) → base model → trigger → name → Advanced; each field checked on screen
        tmux.keys("wizard", "Tab", "Tab", "Tab")
        tmux.keys("wizard", "tiny", literal=True)
        tmux.wait_for_line("wizard", "base model", "tiny")
        tmux.keys("wizard", "Tab", "Tab", "Tab", "Enter")  # open Advanced
        tmux.wait_for("wizard", "▼ Advanced", 10)
        # Advanced: steps (schedule) … batch size, resolution (data) … learning rate (optimizer); the
        # options that apply only to another choice (conv rank, class prompt…) are hidden, not tabbed to
        for tabs, field, value in ((1, "steps", "6"), (13, "batch size", "2"), (1, "resolution", "64"),
                                   (11, "learning rate", "0.001")):
            tmux.keys("wizard", *["Tab"] * tabs)
            # let the focus move land first (the help line names the focused field): on a busy
            # machine a key typed straight after Tab reached the field being left (batch size "26")
            tmux.wait_for("wizard", f"{field}: ", 20)
            tmux.keys("wizard", value, literal=True)
            tmux.wait_for_line("wizard", field, value)
        # the last key's check hides the earlier keys' note ("0" is not > 0) in the frame after
        # the value is drawn: the settled screen names no error
        deadline = time.monotonic() + 10
        while "must be" in (screen := tmux.screen("wizard")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "must be" not in screen, screen
        tmux.keys("wizard", "C-n")
        tmux.wait_for("wizard", "4 Train", 30)
        tmux.wait_for("wizard", "running", 90)
        # The SSH link drops: the terminal and everything in its session get SIGHUP.
        tmux.kill_server()
        time.sleep(0.5)
        runs = list((tmp_path / "loratui-runs").glob("*/state.json"))
        assert len(runs) == 1, runs
        run_dir = runs[0].parent
        deadline = time.monotonic() + 150
        while effective_status(read_state(run_dir)) == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert effective_status(read_state(run_dir)) == "finished", (run_dir / "output.log").read_text()[-2000:]
        assert (run_dir / f"{run_dir.name}.safetensors").is_file()

        # Come back: attach shows the finished run with its whole history.
        tmux = Tmux("attach")
        tmux.start("attach", tmp_path, [*loratui, "attach", str(run_dir)])
        screen = tmux.wait_for("attach", "● finished", 60)
        assert "step 6/6" in screen and "<lora:" in screen
        tmux.keys("attach", "q")
        deadline = time.monotonic() + 10
        while tmux.alive("attach") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not tmux.alive("attach")  # q closed the app, and the terminal is given back
    finally:
        tmux.kill_server()
        Tmux("wizard").kill_server()
