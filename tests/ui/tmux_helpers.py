"""A private tmux server for tests that drive loratui in a real terminal (80×24), and the
photos they open (a plain module, imported by name: conftest names clash)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from pathlib import Path


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
