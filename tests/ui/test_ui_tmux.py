"""The wizard in a real terminal (tmux): start a run, drop the "SSH link" by killing the tmux
session, check the run finishes anyway, and that `loratui attach` shows it."""

from __future__ import annotations

import os
import shutil
import subprocess
import re
import sys
import time
from pathlib import Path

import pytest

from loratui.engine.runs.registry import effective_status, read_state

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs the tmux binary")


class Tmux:
    """One private tmux server (its own socket), so a test never touches the user's."""

    def __init__(self, name: str) -> None:
        self.socket = f"loratui-test-{os.getpid()}-{name}"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=check)

    def start(self, session: str, cwd: Path, command: list[str]) -> None:
        env = {k: os.environ[k] for k in ("LORATUI_CACHE_DIR", "LORATUI_STATE_DIR", "HF_HUB_OFFLINE") if k in os.environ}
        line = " ".join(["env", *[f"{k}={v}" for k, v in env.items()], *map(_quote, command)])
        self.run("-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(cwd), line)

    def screen(self, session: str) -> str:
        return self.run("capture-pane", "-p", "-t", session, check=False).stdout

    def keys(self, session: str, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", session, *(["-l"] if literal else []), *keys)
        time.sleep(0.15)

    def wait_for(self, session: str, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(session)
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never showed up; the screen:\n{self.screen(session)}")

    def wait_for_line(self, session: str, label: str, value: str, timeout: float = 10) -> None:
        """Wait until the row that starts with ``label`` shows ``value``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = [r.strip() for r in self.screen(session).splitlines()]
            if any(r.startswith(label) and _field_value(r[len(label):]) == value for r in rows):
                return
            time.sleep(0.1)
        raise AssertionError(f"{label} never showed {value!r}; the screen:\n{self.screen(session)}")

    def alive(self, session: str) -> bool:
        return self.run("has-session", "-t", session, check=False).returncode == 0

    def kill_server(self) -> None:
        self.run("kill-server", check=False)


def _field_value(rest: str) -> str:
    """The value part of a form row: up to the wide gap before the scrollbar column.

    When the form is scrolled, the scrollbar's thumb (``▁▁``, ``▆▆``) is drawn at the end of
    whichever row it sits beside, so the row reads ``64   ...   ▁▁``.
    """
    return re.split(r"\s{3,}", rest.strip())[0]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def make_photos(folder: Path, count: int = 6) -> Path:
    """Captioned 320 px pictures: big enough that the default preset only warns."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    for n in range(count):
        image = Image.new("RGB", (320, 320), (40 * n % 255, 120, 200))
        ImageDraw.Draw(image).ellipse([60 + 10 * n, 80, 220 + 10 * n, 240], fill=(210, 30, 30))
        image.save(folder / f"ball_{n}.png")
        (folder / f"ball_{n}.txt").write_text("zxq, a red ball")
    return folder


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
        for tabs, field, value in ((1, "steps", "6"), (5, "learning rate", "0.001"),
                                   (1, "batch size", "2"), (1, "resolution", "64")):
            tmux.keys("wizard", *["Tab"] * tabs)
            # let the focus move land first: on a busy machine a key typed straight after Tab
            # reached the field being left (batch size "26", resolution "4")
            time.sleep(0.5)
            tmux.keys("wizard", value, literal=True)
            tmux.wait_for_line("wizard", field, value)
        screen = tmux.screen("wizard")
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
