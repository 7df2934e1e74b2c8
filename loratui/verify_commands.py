"""`loratui verify LORA`: will it load in AUTOMATIC1111 / ComfyUI, and does it do anything?

Only typer is imported at module level (``loratui --help`` must stay instant).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `verify` command to ``app``."""
    app.command("verify")(verify_command)


def verify_command(
    lora: Annotated[Path, typer.Argument(metavar="LORA", help="A LoRA .safetensors (kohya or diffusers format, any tool's).")],
    base_model: Annotated[Optional[str], typer.Option(help="The model it is for: diffusers folder, .safetensors, hub id or tiny (default: the SD-1.5, SD-2 or SDXL layout its keys fit).")] = None,
    modules: Annotated[bool, typer.Option("--modules", help="List every module: its key, the model's module it patches, rank, alpha, strength.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="The whole report as JSON on stdout.")] = False,
) -> None:
    """Map every key as AUTOMATIC1111 and ComfyUI do; check tensors and metadata; exit 1 on a defect."""
    from loratui.cli import user_errors
    from loratui.engine.export.verify import verify_lora

    with user_errors():
        report = verify_lora(lora, base_model)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report, modules)
    if not report.ok:
        raise typer.Exit(1)


def _print(report, show_modules: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from loratui.engine.export.verify import LABELS

    console = Console(highlight=False)
    family = LABELS.get(report.family or "", "unknown")
    source = f"--base-model {report.base_model}" if report.base_model else "its keys"
    mapped = sum(1 for m in report.modules if m.target)
    console.print(f"[bold]{escape(report.path)}[/]")
    console.print(f"  family: {family} (from {escape(source)}) · layout: {report.layout} · network: {report.network_type}")
    console.print(f"  modules: {mapped} of {len(report.modules)} map to the model")
    shapes = Counter((m.rank, m.alpha) for m in report.modules)
    console.print("  rank / alpha: " + ", ".join(
        f"{r} / {'none' if a is None else f'{a:g}'} ({n} modules)" for (r, a), n in shapes.most_common()))
    if report.blocks:
        table = Table(title="strength per block (‖ΔW‖ at strength 1)", title_justify="left")
        for col in ("block", "modules", "‖ΔW‖", "share"):
            table.add_column(col, justify="right" if col != "block" else "left")
        for block, row in report.blocks.items():
            bar = "█" * round(row["share"] * 20)
            table.add_row(block, str(int(row["modules"])), f"{row['strength']:.4g}", f"{row['share']:6.1%} {bar}")
        console.print(table)
    if show_modules:  # one line each, never cut: the names are what the user looks for
        for m in report.modules:
            alpha = "none" if m.alpha is None else f"{m.alpha:g}"
            strength = "" if m.strength is None else f", ‖ΔW‖ {m.strength:.4g}"
            console.print(f"  {escape(m.module)} → {escape(m.target or 'NOT LOADED')} "
                          f"({m.kind}, rank {m.rank}, alpha {alpha}{strength})", soft_wrap=True)
    for finding in report.findings:
        mark = "[red]error[/]" if finding.severity == "error" else "[yellow]warning[/]"
        console.print(f"{mark} {finding.code}: {escape(finding.message)}")
    if report.ok:
        console.print("[green]ok[/]: every key loads in AUTOMATIC1111 and ComfyUI; no defect found")
    else:
        console.print("[red]defects found[/]: `--json` lists every key concerned")
