"""`loratui check` and `loratui caption`: the dataset commands, mounted on the CLI's Typer app.

Only typer is imported at module level (``loratui --help`` must stay instant); Rich, Pillow,
the tokenizer and the captioning models are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

MAX_LISTED = 12  # files listed per kind of finding before "... and N more"


def register(app: typer.Typer) -> None:
    """Add the `check` and `caption` commands to ``app``."""
    app.command("check")(check_command)
    app.command("caption")(caption_command)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def check_command(
    folder: Annotated[Path, typer.Argument(help="The dataset folder to check.")],
    preset: Annotated[Optional[str], typer.Option(help="person | style | pet: judge the image count for it.")] = None,
    trigger: Annotated[Optional[str], typer.Option(help="The trigger word every caption should contain.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON (stable codes).")] = False,
    resolution: Annotated[Optional[int], typer.Option(
        min=8, max=8192, help="The training resolution to judge image sizes by (default: what `train` "
        "would use: the preset's, for the base model); `train` at it skips the images this calls errors.")] = None,
    base_model: Annotated[Optional[str], typer.Option(
        help="The model you will train on (its family sets the resolution, as in `train`).")] = None,
    reg_folder: Annotated[Optional[Path], typer.Option(
        help="Check the regularisation (class) images too, by the same rules (`train --reg-folder`).")] = None,
    class_prompt: Annotated[Optional[str], typer.Option(
        help="With --reg-folder: the class images' caption, so those without a .txt are fine.")] = None,
) -> None:
    """Lint a dataset before training: bad files, duplicates, blur, captions. Exit 1 on errors."""
    from rich.console import Console

    from loratui.engine.errors import LoratuiError
    from loratui.engine.data.lint import check
    from loratui.engine.data.lint_rules import thresholds_for

    err = Console(stderr=True)
    try:
        preset = preset.lower() if preset else None  # `--preset Person` as train takes it
        judged = _judged_resolution(folder, preset, base_model, resolution)
        limits = thresholds_for(judged[0])
        with StageProgress(err, "checking") as on_progress:
            report = check(folder, preset=preset, trigger=trigger, on_progress=on_progress, thresholds=limits)
        reg = None
        if reg_folder is not None:
            with StageProgress(err, "checking class images") as on_progress:
                reg = class_image_report(check(reg_folder, on_progress=on_progress, thresholds=limits), class_prompt)
    except LoratuiError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    if json_out:
        data = report.to_json()
        if reg is not None:
            data["reg"] = reg.to_json()  # the class images' own report, under one key
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        console = Console(highlight=False, soft_wrap=True)
        _print_report(console, report, judged[1])
        if reg is not None:
            console.print()
            console.print("[bold]regularisation images[/]")
            _print_report(console, reg, judged[1])
    raise typer.Exit(0 if report.ok and (reg is None or reg.ok) else 1)


# what does not apply to class images: how many a preset wants, and (with a class prompt) captions
NOT_FOR_CLASS_IMAGES = {"too_few_images", "too_many_images_for_preset", "trigger_missing"}
CAPTION_CODES = {"missing_caption", "empty_caption"}


def class_image_report(report: Any, class_prompt: str | None) -> Any:
    """``report`` (of a regularisation folder) without the findings that concern training
    images only; with a class prompt, an image without a caption takes it, so that is no finding."""
    from dataclasses import replace

    skip = NOT_FOR_CLASS_IMAGES | (CAPTION_CODES if class_prompt else set())
    return replace(report, findings=[f for f in report.findings if f.code not in skip])


def _judged_resolution(folder: Path, preset: str | None, base_model: str | None,
                       resolution: int | None) -> tuple[int, str]:
    """The resolution `train FOLDER` with these options would train at, and how to say it
    ("SD-1.5 at 512 px (preset person)")."""
    from loratui.engine.planning.judged import judged_resolution
    from loratui.engine.planning.presets import PRESETS

    judged = judged_resolution(folder, preset, base_model, resolution)
    family = f"the tiny model ({judged.base_model})" if judged.family == "the tiny model" else judged.family
    source = "--resolution" if resolution else f"preset {preset if preset in PRESETS else 'person'}"
    if judged.demo:
        source += "; the demo dataset is made for it"
    return judged.resolution, f"{family} at {judged.resolution} px ({source})"


class StageProgress:
    """A Rich progress bar on stderr, shown only for large folders and only on a terminal."""

    def __init__(self, console: Any, label: str, min_total: int | None = None) -> None:
        from loratui.engine.data.lint_rules import DEFAULT_THRESHOLDS

        self.console = console
        self.label = label
        self.min_total = DEFAULT_THRESHOLDS.progress_min_images if min_total is None else min_total
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self):
        return self.update

    def update(self, stage: str, done: int, total: int) -> None:
        if total < self.min_total or not self.console.is_terminal:
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(f"{self.label}: {stage}", total=total)
        self.bar.update(self.tasks[stage], completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _print_report(console: Any, report: Any, judged: str = "") -> None:
    """Findings grouped by severity then kind, each kind with its fix; then the verdict.
    ``judged`` says which model and resolution image sizes were judged for."""
    from rich.markup import escape

    from loratui.engine.data.lint_rules import ERROR, RULES

    console.print(
        f"[bold]{escape(str(report.folder))}[/]: {report.images} images, "
        f"{report.usable_images} usable, {report.captioned} captioned"
        + (f", preset {report.preset}" if report.preset else "")
        + (f", trigger {escape(repr(report.trigger))}" if report.trigger else "")
    )
    if judged:
        console.print(f"judged for {escape(judged)}")
    for severity, style, mark in ((ERROR, "red", "✗"), ("warning", "yellow", "!")):
        found = [f for f in report.findings if f.severity == severity]
        if not found:
            continue
        console.print()
        console.print(f"[bold {style}]{mark} {len(found)} {severity}{'s' if len(found) != 1 else ''}[/]")
        by_code: dict[str, list[Any]] = {}
        for f in found:
            by_code.setdefault(f.code, []).append(f)
        for code, items in by_code.items():
            rule = RULES.get(code)
            title = rule.title if rule else code
            console.print(f"  [bold]{title}[/] ({len(items)}) [dim]{code}[/]")
            for f in items[:MAX_LISTED]:
                console.print(f"    {escape(f.path)}: {escape(f.message)}")
            if len(items) > MAX_LISTED:
                console.print(f"    … and {len(items) - MAX_LISTED} more (--json lists them all)")
            if rule:
                console.print(f"    [{style}]fix:[/] {escape(rule.fix)}")
    console.print()
    errors, warnings = len(report.errors), len(report.warnings)
    if errors:
        console.print(
            f"[bold red]Not ready:[/] fix the {errors} error{'s' if errors != 1 else ''} above, "
            "then run `loratui check` again."
        )
    elif warnings:
        console.print(
            f"[bold yellow]Ready, with {warnings} warning{'s' if warnings != 1 else ''}:[/] "
            "training will run; fixing them makes a better LoRA."
        )
    else:
        console.print("[bold green]Ready:[/] no problems found.")
    if not report.pixels_checked:
        console.print("[dim](headers only: blur, exposure and near duplicates were not checked)[/]")


def caption_command(
    folder: Annotated[Path, typer.Argument(help="The dataset folder to caption.")],
    captioner: Annotated[str, typer.Option(help="blip | tagger | filename")] = "blip",
    model: Annotated[Optional[str], typer.Option(help="A local model folder or a hub id.")] = None,
    trigger: Annotated[Optional[str], typer.Option(help="Put this trigger word first in every caption.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace captions that exist (undoable).")] = False,
) -> None:
    """Auto-caption the images that have no caption (never overwrites without --overwrite)."""
    from rich.console import Console

    from loratui.engine.errors import LoratuiError

    out, err = Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        _caption(out, err, folder, captioner, model, trigger, overwrite)
    except LoratuiError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: the captions written so far are kept", err=True)
        raise typer.Exit(130) from None


def _caption(out: Any, err: Any, folder: Path, name: str, model: str | None, trigger: str | None, overwrite: bool) -> None:
    from rich.markup import escape

    from loratui.engine.data.captioners import caption_paths, load_captioner
    from loratui.engine.data.captionstore import CaptionStore
    from loratui.engine.errors import DatasetError
    from loratui.engine.data.tags import with_trigger_first

    if trigger is not None:
        trigger = " ".join(trigger.split())
        if not trigger or "," in trigger:
            raise DatasetError(f"--trigger {trigger!r}: must be a word or phrase without commas", "e.g. --trigger sks")
    store = CaptionStore(folder)
    for note in store.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    entries = store.entries
    if not entries:
        raise DatasetError(f"{folder}: no images found", "point FOLDER at the folder that holds the photos")
    todo = [e for e in entries if overwrite or not e.caption]
    # An unreadable caption is the user's text in another encoding: only --overwrite replaces it.
    todo = [e for e in todo if overwrite or e.source != "unreadable"]
    kept = len(entries) - len(todo)
    if not todo:
        out.print(f"All {len(entries)} images have captions; nothing to do (--overwrite replaces them).")
        return
    captioner = load_captioner(name, model)
    by_path = {e.image: e.rel for e in todo}
    written = 0
    failed: list[tuple[str, str]] = []
    batches = 0
    with StageProgress(err, f"captioning with {name}", min_total=1) as on_progress:
        for results in caption_paths(captioner, [e.image for e in todo], lambda d, t: on_progress("images", d, t)):
            new: dict[str, str] = {}
            for r in results:
                rel = by_path[r.path]
                if r.caption is None:
                    if trigger:  # the trigger alone is still a useful caption
                        new[rel] = trigger
                    else:
                        failed.append((rel, r.error or "no caption"))
                    continue
                new[rel] = with_trigger_first(r.caption, trigger) if trigger else r.caption
            if new:
                batches += 1
                # Each batch is written (and journaled) as it finishes: an interruption keeps it.
                done = store.set_captions(new, label=f"auto-caption ({name}) batch {batches}")
                written += sum(1 for f in done.files if f.endswith(".txt"))
    out.print(f"Captioned {written} image{'s' if written != 1 else ''} with {name}" + (f", trigger {trigger!r} first" if trigger else "") + ".")
    if kept:
        out.print(f"{kept} already had a caption and were left alone (--overwrite replaces them).")
    for rel, why in failed:
        out.print(f"[yellow]skipped[/] {escape(rel)}: {escape(why)}")
