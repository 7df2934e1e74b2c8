"""`loratui attach` in a terminal that says it is 0x0 (issue 14, part 6): textual-image divided
the screen's pixels by the columns while it was imported, `internal error: ZeroDivisionError`.
It is one clear line, from a real process on a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import sys
import termios
import time

import pytest

from reliability_kit import env

pytestmark = pytest.mark.reliability


def _run_on_a_tty(args: list[str], columns: int, rows: int, timeout: float = 60) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        os.execve(sys.executable, [sys.executable, "-m", "loratui", *args], {**env(), "TERM": "xterm-256color"})
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    out, deadline, status = b"", time.monotonic() + timeout, None
    while status is None and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                pass
        done, code = os.waitpid(pid, os.WNOHANG)
        status = os.waitstatus_to_exitcode(code) if done else None
    if status is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)
    return (status if status is not None else -9), re.sub(r"\x1b[\[_P][^a-zA-Z\\]*[a-zA-Z\\]", "", out.decode(errors="replace"))


@pytest.mark.parametrize(("columns", "rows"), [(0, 0), (80, 0), (0, 24)])
def test_attach_in_a_zero_size_terminal_is_one_clear_line(tmp_path, columns, rows):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "state.json").write_text(json.dumps({"status": "finished", "step": 2, "total_steps": 2}))
    code, text = _run_on_a_tty(["attach", str(run_dir)], columns, rows)
    assert code == 1, text
    assert "ZeroDivisionError" not in text and "internal error" not in text, text
    assert f"error: the terminal reports a size of {columns}x{rows}" in text, text
    assert "stty cols" in text, text
