"""Helpers for the wizard's tests (a plain module, imported by name: conftest names clash)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text (one line per row)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Pause the pilot until ``condition()`` holds (the app keeps running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition}\n"
                                 + screen_text(pilot.app))
        await pilot.pause(0.05)
    await asyncio.sleep(0)
    try:
        blank = not screen_text(pilot.app).strip()
    except Exception:  # no screen (the app has ended): nothing to draw
        blank = False
    if blank:
        # a screen switched to while the pilot slept has not been drawn yet: a test that reads
        # the screen next would read nothing (seen once the full check left the UI process)
        await pilot.pause()


async def steady(pilot: Any, timeout: float = 10.0, gap: float = 0.15) -> None:
    """Before a snapshot: the text cursors shown steadily, and the screen the same twice ``gap``
    apart. A cursor blinks every 0.5 s, and a frame still to come (a dialog's footer is drawn one
    frame after the dialog) would be caught or not by how busy the machine is."""
    import re

    from textual.widgets import Input, TextArea

    app = pilot.app
    for widget in app.screen.query("*"):
        if isinstance(widget, (Input, TextArea)):
            widget.cursor_blink = False  # the cursor stays shown

    def shot() -> str:
        return re.sub(r"terminal-\d+", "", app.export_screenshot())  # its ids hash the content

    deadline = time.monotonic() + timeout
    before = shot()
    while True:
        await pilot.pause(gap)
        now = shot()
        if now == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen still changed after {timeout:.0f}s\n" + screen_text(app))
        before = now


def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test with asyncio (no pytest async plugin needed); fixtures pass through."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


async def settle(pilot: Any, timeout: float = 30.0) -> None:
    """Wait for the app's workers to finish (the directory tree's loader never does: skipped)."""
    from textual.widgets import DirectoryTree

    def busy() -> list[Any]:
        return [w for w in pilot.app.workers if not w.is_finished and not isinstance(w.node, DirectoryTree)]

    await wait_for(pilot, lambda: not busy(), timeout, "the workers")
    await pilot.pause(0.1)
