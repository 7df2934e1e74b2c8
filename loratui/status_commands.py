"""`loratui status RUN`: one run's status, for people and (with --json) for scripts.

Only typer is imported at module level (``loratui --help`` must stay instant).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the `status` command to ``app``."""
    app.command("status")(status_command)


def status_command(
    run: Annotated[str, typer.Argument(metavar="RUN", help="A run folder, or a run's name as `loratui runs` lists it.")],
    json_out: Annotated[bool, typer.Option("--json", help="The status as JSON (the structure the README documents).")] = False,
) -> None:
    """Status, step, loss, ETA, memory, the recommended file and the paths of one run."""
    from loratui.cli import user_errors
    from loratui.engine.runs.status import find_run, run_status

    with user_errors():
        status = run_status(find_run(run, [Path.cwd(), Path.cwd() / "loratui-runs"]))
    if json_out:
        typer.echo(json.dumps(status, indent=2))
        return
    _print(status)


def _print(s: dict) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    colours = {"running": "green", "finished": "blue", "failed": "red", "stale": "red", "stopped": "yellow",
               "damaged": "red"}
    colour = colours.get(s["status"], "white")
    console.print(f"[bold]{escape(s['name'])}[/]: [{colour}]{s['status']}[/] at step {s.get('step', 0)}/{s.get('total_steps', 0)}")
    if s.get("loss") is not None:
        extra = f", validation {s['validation_loss']:.4f}" if s.get("validation_loss") is not None else ""
        console.print(f"  loss {s['loss']:.4f}{extra}")
    if s.get("eta_s") is not None:
        minutes, seconds = divmod(int(s["eta_s"]), 60)
        console.print(f"  ETA {minutes // 60}h{minutes % 60:02d}m{seconds:02d}s at {s.get('it_per_s') or 0:.2f} it/s")
    gpu = s.get("gpu") or {}
    if gpu.get("mem_peak"):
        total = f" of {gpu['mem_total'] / 2**30:.1f} GiB" if gpu.get("mem_total") else ""
        console.print(f"  memory ({gpu['kind']}): peak {gpu['mem_peak'] / 2**30:.2f} GiB{total}")
    rec = s.get("recommendation")
    if rec:
        console.print(f"  recommended: {escape(str(rec['path']))} at strength {rec['strength']}")
    if s.get("message"):
        console.print(f"  [red]{escape(s['message'])}[/]" + (f" ({escape(s['hint'])})" if s.get("hint") else ""))
    paths = s.get("paths") or {}
    if paths.get("lora"):
        console.print(f"  LoRA: {escape(paths['lora'])}")
    console.print(f"  folder: {escape(paths.get('run_dir') or s['run_dir'])}")
