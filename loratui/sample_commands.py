"""`loratui sample`: the checkpoint × strength grid (the XYZ plot), mounted on the CLI's app.

Only typer is imported at module level (``loratui --help`` must stay instant); Rich and the
engine, which pulls in torch and diffusers, are imported inside the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def register(app: typer.Typer) -> None:
    """Add the `sample` command to ``app``."""
    app.command("sample")(sample_command)


def sample_command(
    target: Annotated[Path, typer.Argument(metavar="RUN_DIR|LORA", help="A loratui run folder, or any kohya-format LoRA .safetensors.")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="A prompt (repeatable); default: the run's sample prompts.")] = None,
    strengths: Annotated[str | None, typer.Option(help="LoRA strengths, comma-separated; 0 is the base model.")] = "0,0.2,0.4,0.6,0.8,1.0",
    checkpoints: Annotated[str, typer.Option(help="all: every saved checkpoint; last: only the newest.")] = "all",
    out: Annotated[Path | None, typer.Option(help="Where to write the grid PNG, or an existing folder to write grid-N.png in (default RUN_DIR/samples/).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Diffusers folder, .safetensors file, hub id, or 'tiny' (needed for a bare LoRA).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the first prompt; the next prompts use seed+1, seed+2, ... (default: the run's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Inference steps per image.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help='Print {"images": [...], "grids": [...]} on stdout.')] = False,
) -> None:
    """Render every checkpoint at every strength, one seed per prompt, and a labelled grid."""
    from rich.console import Console

    from loratui.cli import user_errors
    from loratui.engine.validate.xyz import parse_strengths, plan_sample, render_plan

    err = Console(stderr=True, highlight=False)
    with user_errors():
        plan = plan_sample(
            target, prompts=prompt or None, strengths=parse_strengths(strengths), which=checkpoints,
            base_model=base_model, seed=seed, steps=steps, out=out,
        )
        if not json_out:
            err.print(f"{render_count(plan)} on {plan.base_model}, {plan.width}px, {plan.steps} steps")
        with _Bar(err) as on_progress:
            result = render_plan(plan, on_progress)
    if (target / "config.toml").is_file() and result.grids:
        from loratui.engine.export.runcard import add_grid

        add_grid(target, result.grids[0], plan.prompts[0])  # the run card shows the XYZ plot
    if json_out:
        sys.stdout.write(json.dumps(_as_json(result), indent=2, ensure_ascii=False) + "\n")
        return
    out_console = Console(highlight=False, soft_wrap=True)
    out_console.print(f"{len(result.images)} images in {plan.image_dir}")
    for grid in result.grids:
        out_console.print(f"grid: {grid}")


def render_count(plan: Any) -> str:
    """How many images ``plan`` renders and why, in words that add up to the count printed
    after it: strength 0 is the base model, rendered once per prompt, not per checkpoint."""
    with_lora = [s for s in plan.strengths if s != 0]
    base = len(with_lora) != len(plan.strengths)
    parts = f"{len(plan.checkpoints)} checkpoint(s) × {len(with_lora)} strength(s)" if with_lora else ""
    if base:
        parts = f"({parts} + the base model at strength 0)" if parts else "the base model at strength 0"
    return f"{plan.total_renders} images: {parts} × {len(plan.prompts)} prompt(s)"


def _as_json(result: Any) -> dict[str, Any]:
    return {
        "images": [str(p) for p in result.images],
        "grids": [str(p) for p in result.grids],
        "cells": [
            {"prompt_index": c.prompt_index, "prompt": c.prompt, "seed": c.seed, "checkpoint": c.checkpoint,
             "strength": c.strength, "path": str(c.path)}
            for c in result.cells
        ],
    }


class _Bar:
    """A transient Rich progress bar on stderr (stdout stays clean for --json); only on a terminal."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self):
        return self.update

    def update(self, done: int, total: int, what: str) -> None:
        if not self.console.is_terminal:
            return
        if self.bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                TimeRemainingColumn(), console=self.console, transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(what, total=total)
        self.bar.update(self.task, completed=done, total=total, description=what)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
