"""`loratui queue add|list|remove|run|compare`: training runs that wait their turn (and sweeps).

`queue add` takes exactly the arguments of `loratui train`: they are parsed by the train
command's own parser and built into a config as `train` builds one, so a mistake is one line
at add time, not a failed run at night. Only typer is imported at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# train's options whose config key has another name, and the flags a queue refuses by name
_CONFIG_KEY = {"output": "output_dir", "sample_prompt": "sample_prompts", "compile_unet": "compile"}
_REFUSED = {"resume": "--resume", "detach": "--detach", "json_out": "--json", "start_prepared": "--start-prepared"}


def register(app: typer.Typer) -> None:
    """Add the `queue` command group to ``app``."""
    queue_app = typer.Typer(help="Runs that wait their turn: add, list, remove, run (one per GPU), compare a sweep.",
                            no_args_is_help=True)
    queue_app.command("add", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(add_command)
    queue_app.command("list")(list_command)
    queue_app.command("remove")(remove_command)
    queue_app.command("run")(run_command)
    queue_app.command("compare")(compare_command)
    app.add_typer(queue_app, name="queue")


def add_command(ctx: typer.Context) -> None:
    """Queue a run: the arguments of `loratui train` (see `loratui train --help`), plus
    `--sweep KEY=V1,V2` (repeatable) to queue every combination, each named for its values."""
    from loratui.cli import user_errors

    args, sweeps = _split_sweeps(list(ctx.args))
    with user_errors():
        entries = queue_train_args(args, sweeps)
    for entry in entries:
        typer.echo(f"queued {entry.id}: {entry.name}")
    typer.echo("start the queue with `loratui queue run` (or `loratui queue run --detach`)")


def queue_train_args(args: list[str], sweeps: list[str] | None = None, cwd: Path | None = None) -> list:
    """Validate ``args`` (as `loratui train` takes them) for every sweep combination, then queue
    them all (or none); the queued entries. A ConfigError (one line) for any mistake."""
    from loratui.engine.runs.queue import RunQueue, expand_sweeps, stored_config

    cwd = (cwd or Path.cwd()).resolve()
    command = _train_command()
    combos = expand_sweeps(list(sweeps or []))
    flags = {key: _sweep_flag(command, key) for key, _ in combos[0]}
    items, notify = [], None
    for combo in combos:
        argv = list(args) + [token for key, value in combo for token in (flags[key], value)]
        config = config_from_train_args(command, argv)
        if combo:  # each run named for its values: photos-lr1e-4-rank8
            name = "-".join([config.name or Path(config.dataset).name, *(f"{key}{value}" for key, value in combo)])
            argv += ["--name", name]
            config = config_from_train_args(command, argv)
        name, data = stored_config(config, cwd)
        items.append((name, data, argv))
        notify = config.notify
    sweep_values = [dict(combo) for combo in combos] if combos[0] else None
    return RunQueue().add_many(items, str(cwd), notify, sweep_values)


def config_from_train_args(command: Any, argv: list[str]) -> Any:
    """The RunConfig `loratui train ARGV` would train, checked as `train` checks it before starting."""
    from loratui.engine.config import build_config, load_config_file
    from loratui.engine.data.dataset import scan
    from loratui.engine.errors import ConfigError
    from loratui.engine.families.models import resolve_model
    from loratui.engine.train.launch import refuse_output_inside_dataset

    try:
        params = command.make_context("loratui queue add", list(argv)).params
    except typer.Exit:  # --help: train's help was printed
        raise
    except Exception as exc:  # typer's own click: its usage errors are known by format_message
        if not hasattr(exc, "format_message"):
            raise
        raise ConfigError(f"queue add: {' '.join(exc.format_message().split())}",
                          "it takes the arguments of `loratui train` (see `loratui train --help`)") from None
    from loratui.engine.config import RunConfig

    defaults = {param.name: param.default for param in command.params}
    values: dict[str, Any] = {}
    for key, value in params.items():
        # left out: what was not given (an unset option, a plain flag such as --detach not passed)
        if value is None or value is False and defaults.get(key) is False or key in ("folder", "preset", "config"):
            continue
        if _CONFIG_KEY.get(key, key) not in RunConfig.model_fields:  # --resume, --detach, --json…
            flag = _REFUSED.get(key) or "--" + key.replace("_", "-")
            raise ConfigError(f"queue add: {flag} has no place in a queue",
                              "the queue starts (and resumes) each run itself; leave it out")
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = list(value) or None
        values[_CONFIG_KEY.get(key, key)] = value
    config_file = params.get("config")
    folder = params.get("folder")
    config = build_config(
        str(folder) if folder else None, params.get("preset"),
        load_config_file(Path(config_file)) if config_file else {},
        str(config_file) if config_file else "config", values,
    )
    refuse_output_inside_dataset(config)
    resolve_model(config.base_model, config.allow_pickle)
    scan(config.dataset).require_images()
    return config


def list_command(json_out: Annotated[bool, typer.Option("--json", help="The entries as JSON.")] = False) -> None:
    """The queue: each entry's status, its run folder and how far its run is."""
    from loratui.cli import user_errors
    from loratui.engine.runs.queue import RunnerLock, RunQueue
    from loratui.engine.runs.sweep import shown_status

    with user_errors():
        queue = RunQueue()
        rows = [_row(entry) for entry in queue.entries()]
        runner_alive = RunnerLock(queue.folder).held_elsewhere()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        Console().print("the queue is empty: add a run with `loratui queue add FOLDER --preset …`")
        return
    table = Table(title="loratui queue")
    for col in ("id", "name", "status", "step", "run folder / message"):
        table.add_column(col)
    colours = {"queued": "white", "running": "green", "done": "blue", "failed": "red", "stopped": "yellow"}
    for row in rows:
        run = row["run"]
        step = f"{run['step']}/{run['total_steps']}" if run else ""
        where = row["message"] if row["status"] in ("failed", "stopped") else row["run_dir"] or ""
        status = shown_status(row["status"], run["status"] if run else None, runner_alive)
        table.add_row(str(row["id"]), escape(row["name"]), f"[{colours.get(status, 'yellow')}]{status}[/]", step,
                      escape(where or ""))
    Console().print(table)
    if not runner_alive and any(row["status"] in ("queued", "running") for row in rows):
        Console().print("no queue is running: start it with `loratui queue run`")


def _row(entry: Any) -> dict[str, Any]:
    from loratui.engine.runs.registry import effective_status, read_state

    row = entry.public()
    row["run"] = None
    if entry.run_dir:
        state = read_state(Path(entry.run_dir))
        if state:
            row["run"] = {"status": effective_status(state), "step": state.get("step", 0),
                          "total_steps": state.get("total_steps", 0)}
    return row


def compare_command(
    sweep: Annotated[Optional[int], typer.Argument(help="The sweep's id (`queue list --json`: sweep); default: the newest.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The comparison as JSON.")] = False,
    grid: Annotated[Optional[Path], typer.Option(help="Write the sample grid here (default: sweep-N.png in the queue's folder).")] = None,
) -> None:
    """A sweep's runs side by side: swept values, status, losses, recommendation, the best run;
    once every run has ended, a grid of their last samples (rows: runs, columns: prompts)."""
    from loratui.cli import user_errors
    from loratui.engine.errors import RunError
    from loratui.engine.runs.queue import RunnerLock, RunQueue
    from loratui.engine.runs.sweep import compare
    from loratui.engine.runs.sweep_grid import default_grid_path, write_sweep_grid

    with user_errors():
        queue = RunQueue()
        result = compare(queue, sweep, RunnerLock(queue.folder).held_elsewhere())
        entries = [e for e in queue.entries() if e.sweep == result["sweep"]]
        result["grid"], why = None, None
        if result["ended"] or grid is not None:  # asked for by name: a sweep still going is told
            try:
                result["grid"] = str(write_sweep_grid(result, entries, grid or default_grid_path(queue.folder, result["sweep"])))
            except RunError as exc:
                if grid is not None:
                    raise
                why = str(exc)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_comparison(result, why)


def _print_comparison(result: dict[str, Any], why: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def number(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else ""

    runs = result["runs"]
    table = Table(title=f"sweep {result['sweep']}: {result['finished']} of {len(runs)} runs finished")
    table.add_column("id", no_wrap=True)
    for col in (*result["varying"], "status", "step"):
        table.add_column(escape(col))
    for col in ("final loss\n(smoothed)", "best val.\nloss (step)", "checkpoint\nstep @ strength"):
        table.add_column(col)
    table.add_column("run folder / message", overflow="fold")
    colours = {"queued": "white", "running": "green", "done": "blue", "failed": "red", "stopped": "yellow"}
    for row in runs:
        rec = row["recommendation"]
        total = row["total_steps"]
        best_val = (f"{number(row['best_validation_loss'])} ({row['best_validation_step']})"
                    if row["best_validation_loss"] is not None else "")
        table.add_row(
            f"{row['id']} [bold green]*[/]" if row["best"] else str(row["id"]),
            *(escape(row["values"].get(key, "")) for key in result["varying"]),
            f"[{colours.get(row['status'], 'yellow')}]{row['status']}[/]",
            f"{row['step']}/{total}" if total else "", number(row["final_loss"]), best_val,
            escape(f"{rec['step']} @ {rec['strength']}") if rec else "",
            escape(row["message"] or _near(row["run_dir"])),
            style="bold" if row["best"] else None,
        )
    console = Console()
    console.print(table)
    if result["best"] is not None:
        best = next(r for r in runs if r["best"])
        rec = best["recommendation"]
        console.print(escape(f"* best: {best['name']}, {result['best_rule']}"))
        if rec and rec.get("path"):
            console.print(escape(f"  use {rec['path']} at strength {rec['strength']}"))
    for line in (result["note"], f"grid of the last samples: {result['grid']}" if result["grid"] else why):
        if line:
            console.print(escape(line))
    if not result["ended"]:
        console.print("the sample grid is made once every run has ended (`loratui queue run`)")


def _near(path: str | None) -> str:
    """``path`` relative to the current folder when it lies under it (a table column is narrow)."""
    if not path:
        return ""
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def remove_command(ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Entry ids (`loratui queue list`).")]) -> None:
    """Take entries off the queue (a run folder already made is kept)."""
    from loratui.cli import user_errors
    from loratui.engine.runs.queue import RunnerLock, RunQueue

    with user_errors():
        queue = RunQueue()
        alive = RunnerLock(queue.folder).held_elsewhere()
        for entry_id in ids:
            entry = queue.remove(entry_id, alive)
            kept = f" (its run folder {entry.run_dir} is kept)" if entry.run_dir else ""
            typer.echo(f"removed {entry.id}: {entry.name}{kept}")


def run_command(
    parallel: Annotated[Optional[int], typer.Option(min=1, help="Runs at once (default: one per GPU; 1 on CPU).")] = None,
    detach: Annotated[bool, typer.Option(help="Run the queue in the background (log in the state dir).")] = False,
) -> None:
    """Train the queued runs one after another (one per GPU); Ctrl-C pauses (each run checkpoints)."""
    from loratui.cli import user_errors
    from loratui.engine.runs.queue import RunnerLock, RunQueue

    with user_errors():
        queue = RunQueue()
        RunnerLock(queue.folder).check()  # one line when another `queue run` is alive
        if detach:
            _detach(queue.folder, parallel)
            return
        failed = _run_foreground(queue, parallel)
    if failed:
        raise typer.Exit(1)


def _run_foreground(queue: Any, parallel: int | None) -> int:
    from loratui.engine.runs.queue_runner import QueueRunner, available_devices

    def say(line: str) -> None:
        with contextlib.suppress(OSError):  # the terminal may be gone (an SSH drop): the queue goes on
            typer.echo(f"queue: {line}")

    runner = QueueRunner(queue, available_devices(parallel), say)

    def interrupted(signum: int, frame: Any) -> None:
        if runner.pausing:  # a second Ctrl-C: leave now, the runs go on in their own sessions
            raise KeyboardInterrupt
        runner.pause()

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # survive the SSH drop; the runs have their own sessions
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    failed = runner.run()
    left = [e for e in queue.entries() if e.status in ("queued", "running")]
    say(f"paused; {len(left)} entries wait for `loratui queue run`" if runner.pausing and left
        else f"the queue is empty ({failed} failed); see `loratui queue list`")
    return failed


def _detach(folder: Path, parallel: int | None) -> None:
    import time

    log = folder / "queue.log"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "loratui", "queue", "run", *(["--parallel", str(parallel)] if parallel else [])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, env=dict(os.environ))
    time.sleep(0.5)
    if proc.poll() not in (None, 0):
        from loratui.engine.errors import RunError

        lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
        raise RunError(f"the queue did not start: {lines[-1].removeprefix('error: ')}", f"see {log}")
    typer.echo(f"the queue runs in the background (pid {proc.pid}); log: {log}")
    typer.echo("  follow:  loratui queue list")


def _split_sweeps(args: list[str]) -> tuple[list[str], list[str]]:
    rest, sweeps = [], []
    tokens = iter(args)
    for token in tokens:
        if token == "--sweep":
            sweeps.append(next(tokens, ""))
        elif token.startswith("--sweep="):
            sweeps.append(token.removeprefix("--sweep="))
        else:
            rest.append(token)
    return rest, sweeps


def _train_command() -> Any:
    from typer.main import get_command

    from loratui.cli import app

    return get_command(app).commands["train"]  # type: ignore[attr-defined]


def _sweep_flag(command: Any, key: str) -> str:
    """The train option a sweep key names (``lr`` → ``--lr``); a ConfigError when it is none."""
    from loratui.engine.config import RunConfig
    from loratui.engine.errors import ConfigError

    flag = "--" + key.replace("_", "-")
    options = [p for p in command.params if p.param_type_name == "option" and not p.is_flag
               and (p.name == "preset" or _CONFIG_KEY.get(p.name, p.name) in RunConfig.model_fields)]
    if any(flag in param.opts for param in options):
        return flag
    names = ", ".join(o.opts[0].lstrip("-") for o in options)
    raise ConfigError(f"--sweep {key}: `loratui train` has no option {flag} that takes a value",
                      f"sweep one of: {names}")
