"""The commands that open the Textual app: ``review FOLDER``, ``attach RUN_DIR``, and the
wizard itself (``loratui [FOLDER]``, ``loratui demo``).

Only typer is imported at module level: ``loratui --help`` never loads Textual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``review`` and ``attach`` to the CLI's Typer app."""
    app.command("review")(review_command)
    app.command("attach")(attach_command)


def _run_app(**kwargs: Any) -> None:
    """Build the app, run it, then print what it left to say (where a detached run is)."""
    _require_a_terminal_size()
    # textual-image asks the terminal what graphics it supports: that must happen before
    # Textual takes the terminal over. The question runs in a thread while Textual is
    # imported and the app built, and is answered before the app runs.
    from loratui.widgets import graphics_query

    graphics_query.start()
    from loratui.app import build_app
    from loratui.widgets.preview import prepare_graphics

    app = build_app(**kwargs)
    prepare_graphics()
    app.run()
    # The preset step imports torch and diffusers (hardware, memory plan): tearing their
    # millions of objects down at exit took 3.5-4.5 s on a loaded machine, a blank terminal
    # after q. Frozen objects are left out of the final collections (0.5 s); the process ends
    # here anyway, and atexit handlers and finalizers still run.
    import gc

    gc.freeze()
    if app.exit_message:
        typer.echo(app.exit_message)
    if app.return_code:
        raise typer.Exit(app.return_code)


def _require_a_terminal_size() -> None:
    """One clear line when the terminal says it is 0 columns or 0 rows (a serial console, a
    pane squeezed shut, `script` without a size): textual-image divides the screen's pixels by
    them while it is imported, so the app would stop with ZeroDivisionError."""
    import os
    import sys

    try:
        columns, rows = os.get_terminal_size(sys.__stdout__.fileno())
    except (OSError, ValueError, AttributeError):
        return  # not a terminal: Textual says so itself
    if columns == 0 or rows == 0:
        typer.echo(
            f"error: the terminal reports a size of {columns}x{rows}, so there is nothing to draw on "
            "(resize the window, or set a size with `stty cols 100 rows 30`; "
            "`loratui runs` works without one)",
            err=True,
        )
        raise typer.Exit(1)


def open_wizard(folder: Path | None, demo: bool = False) -> None:
    """Open the wizard at the folder step (on ``folder`` when given; the demo dataset with the
    tiny model when ``demo``)."""
    if folder is not None and not folder.is_dir():
        typer.echo(f"error: {folder}: no such folder (pass the folder that holds your photos)", err=True)
        raise typer.Exit(1)
    _run_app(folder=folder, start="folder", demo=demo)


def review_command(
    folder: Annotated[Path, typer.Argument(help="Folder of images (captions in .txt beside them).")],
) -> None:
    """The wizard, opened at caption review."""
    if not folder.is_dir():
        typer.echo(f"error: {folder}: no such folder (pass the folder that holds your photos)", err=True)
        raise typer.Exit(1)
    _run_app(folder=folder, start="captions")


def attach_command(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (see `loratui runs`).")],
) -> None:
    """Live view of a run (running or finished), with its whole history."""
    from loratui.engine.runs.registry import EVENTS, STATE

    if not (run_dir / STATE).is_file() and not (run_dir / EVENTS).is_file():
        typer.echo(f"error: {run_dir}: not a loratui run folder (no {STATE}; see `loratui runs`)", err=True)
        raise typer.Exit(1)
    _run_app(start="run", run_dir=run_dir.resolve())
