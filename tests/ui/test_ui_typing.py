"""Keys sent in one burst, as a fast typist, a paste or a loaded SSH link delivers them, reach
the fields whole and in order (issue 13, defect 7: ``End BSpace×4 300`` left ``30``, ``3`` or
nothing in the steps field; keys typed after Tab landed in the field being left)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
from tmux_helpers import Tmux, make_photos

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs the tmux binary")

PASTED = "/srv/my models/sd15 v2.safetensors"


def settled(tmux: Tmux, label: str, value: str) -> None:
    """The row shows ``value`` and still does once every key has had time to land."""
    tmux.wait_for_line("t", label, value, timeout=30)
    time.sleep(0.6)
    tmux.wait_for_line("t", label, value, timeout=0.5)


def test_a_burst_of_typing_and_a_paste_arrive_whole(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos")
    tmux = Tmux("typing")
    try:
        tmux.start("t", tmp_path, [sys.executable, "-m", "loratui", "review", str(photos)])
        tmux.wait_for("t", "6/6 · 6 captioned", 60)
        tmux.keys("t", "C-n")
        tmux.wait_for("t", "steps · ", 60)  # the preset step, planned
        # One burst: Tab ×3 (the cards → base model), type, delete, paste (bracketed, as a
        # terminal pastes), Tab, type.
        tmux.run("set-buffer", PASTED)
        tmux.run("send-keys", "-t", "t", "Tab", "Tab", "Tab", ";",
                 "send-keys", "-t", "t", "-l", "/tmp/x", ";",
                 "send-keys", "-t", "t", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", ";",
                 "paste-buffer", "-p", "-t", "t", ";",
                 "send-keys", "-t", "t", "Tab", "z", "x", "q")
        settled(tmux, "base model", PASTED)
        settled(tmux, "trigger word", "zxq")

        tmux.keys("t", "Tab", "Tab", "Enter")  # name → Advanced, opened
        tmux.wait_for("t", "▼ Advanced", 10)
        tmux.keys("t", "Tab")  # steps
        for value in ("300", "45", "1200"):
            tmux.run("send-keys", "-t", "t", "End", *["BSpace"] * 5, *value)
            # the field itself, on its own row: nothing above the form changes height as values are
            # typed (the cards and the plan lines only grow), so the row no longer shifts under it
            settled(tmux, "steps", value)
            # and the plan derived from it: 6 images at batch 4 are 2 steps an epoch (the plan line
            # itself has scrolled off at 80x24; the epochs field shows what it derived)
            settled(tmux, "epochs", f"default: {(int(value) + 1) // 2}")
    finally:
        tmux.kill_server()
