"""Ask the terminal what graphics it can draw while the app is still being imported.

textual-image asks the terminal (Sixel, then Kitty graphics) when it is first imported, and
must do so before Textual takes the terminal over; a terminal without Kitty graphics (tmux,
most SSH terminals) answers nothing, so the question waits out its timeout, ~0.1 s of a first
paint that must stay under a second. ``start()`` runs that import in a thread at once, while the
main thread imports Textual and builds the app, and ``wait()`` joins it before the app runs.

This module imports only the standard library: it runs before anything heavy is loaded.
"""

from __future__ import annotations

import threading

_thread: threading.Thread | None = None
_error: list[BaseException] = []


def _ask() -> None:
    try:
        import textual_image.renderable  # noqa: F401  (its import is the question)
    except BaseException as exc:  # raised again by wait(), in the main thread
        _error.append(exc)


def start() -> None:
    """Start asking (once). The modules textual-image shares with Textual are imported here
    first, so the two threads never import the same module at once."""
    global _thread
    if _thread is not None:
        return
    import PIL.Image  # noqa: F401
    import rich.console  # noqa: F401
    import rich.control  # noqa: F401
    import rich.measure  # noqa: F401
    import rich.segment  # noqa: F401

    _thread = threading.Thread(target=_ask, name="loratui-graphics-query", daemon=True)
    _thread.start()


def wait() -> None:
    """Block until the terminal has answered (starting the question if nobody did)."""
    start()
    assert _thread is not None
    _thread.join()
    if _error:
        raise _error[0]
