"""The command line (Typer): parses, builds a config, calls the engine or opens the app.

Only typer is imported at module level: ``loratui --help`` must answer at once. Everything
heavy (pydantic, torch, diffusers) is imported inside the command that needs it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

app = typer.Typer(
    name="loratui",
    help="Train Stable Diffusion LoRAs from a folder of photos, guided in the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a LoratuiError into one line on stderr and exit 1 (never a traceback)."""
    from loratui.engine.errors import LoratuiError

    try:
        yield
    except LoratuiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: a run stopped this way continues with loratui train --resume RUN_DIR", err=True)
        raise typer.Exit(130) from None


def _overrides(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


@app.command()
def train(
    folder: Annotated[Optional[Path], typer.Argument(help="Folder of images (captions in .txt beside them).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="person | style | pet")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="Diffusers folder, .safetensors file, hub id, or 'tiny'.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow .ckpt/.pt/.bin base models (they can run code).")] = False,
    trigger: Annotated[Optional[str], typer.Option(help="Trigger word, put first in every caption.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run and LoRA name (default: the folder's name).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Where run folders go (default ./loratui-runs).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A config file: TOML, or a lora-scripts style YAML.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Total optimizer steps (overrides the derivation).")] = None,
    epochs: Annotated[Optional[int], typer.Option()] = None,
    repeats: Annotated[Optional[int], typer.Option(help="How often each image is seen per epoch.")] = None,
    rank: Annotated[Optional[int], typer.Option(help="LoRA rank (network dim).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="LoRA alpha (default: the rank).")] = None,
    network: Annotated[Optional[str], typer.Option(help="lora | locon (convolutions too) | loha | lokr | dora: the network type.")] = None,
    conv_rank: Annotated[Optional[int], typer.Option(help="The convolutions' rank for locon, loha, lokr (default: --rank).")] = None,
    conv_alpha: Annotated[Optional[float], typer.Option(help="The convolutions' alpha (default: --alpha's ratio to the rank).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[Optional[str], typer.Option(help="Images per step, or 'auto': the most that fit the GPU (up to 8 per GPU).")] = None,
    grad_accum: Annotated[Optional[int], typer.Option(help="Gradient accumulation steps.")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Training resolution in pixels.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Save the LoRA and a checkpoint every N steps (0: only at the end).")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    mixed_precision: Annotated[Optional[str], typer.Option(help="auto | no | fp16 | bf16")] = None,
    train_text_encoder: Annotated[Optional[bool], typer.Option("--train-text-encoder/--no-train-text-encoder")] = None,
    prediction_type: Annotated[Optional[str], typer.Option(help="auto | epsilon | v_prediction (auto: what the model says).")] = None,
    zero_terminal_snr: Annotated[Optional[bool], typer.Option("--zero-terminal-snr/--no-zero-terminal-snr", help="Rescale the noise schedule to zero terminal SNR (default: what the model says).")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    sample_every: Annotated[Optional[int], typer.Option(help="Render sample images every N steps (0: off; default: at each save).")] = None,
    sample_prompt: Annotated[Optional[list[str]], typer.Option(help="A sample prompt (repeatable; default: the preset's).")] = None,
    tensorboard: Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", help="Log to RUN_DIR/tensorboard.")] = None,
    notify: Annotated[Optional[str], typer.Option(help="Tell this URL when the run ends (ntfy://, discord://, tgram://, mailto://, json://…; default: $LORATUI_NOTIFY or ~/.config/loratui/notify).")] = None,
    gpus: Annotated[Optional[int], typer.Option(help="Train data-parallel on N GPUs (through accelerate).")] = None,
    compile_unet: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the UNet (slow first steps).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="auto | adamw | adamw8bit | prodigy (lr 1, self-tuning) | adafactor | lion | schedulefree")] = None,
    d_coef: Annotated[Optional[float], typer.Option(help="Prodigy's step-size multiplier (default 1).")] = None,
    unet_lr: Annotated[Optional[float], typer.Option(help="The UNet's learning rate (default: --lr).")] = None,
    text_encoder_lr: Annotated[Optional[float], typer.Option(help="The text encoders' learning rate (default: half the UNet's).")] = None,
    ema: Annotated[Optional[str], typer.Option(help="off | keep (also save NAME-ema.safetensors) | final (the EMA is the LoRA; raw weights in NAME-raw.safetensors).")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(help="The EMA's decay per step (default 0.999; warmed up over the first steps).")] = None,
    loss_type: Annotated[Optional[str], typer.Option(help="l2 | l1 | huber | smooth_l1")] = None,
    huber_c: Annotated[Optional[float], typer.Option(help="The pseudo-Huber threshold c (default 0.1).")] = None,
    huber_schedule: Annotated[Optional[str], typer.Option(help="snr | exponential | constant: how c follows the timestep.")] = None,
    debiased_estimation: Annotated[Optional[bool], typer.Option("--debiased-estimation/--no-debiased-estimation", help="Weight each timestep's loss by 1/sqrt(SNR).")] = None,
    multires_noise_iterations: Annotated[Optional[int], typer.Option(help="Multi-resolution (pyramid) noise levels (0: off; 6-10 usual).")] = None,
    multires_noise_discount: Annotated[Optional[float], typer.Option(help="Each coarser noise level's weight factor (default 0.3).")] = None,
    train_layers: Annotated[Optional[str], typer.Option(help="attention | attention-ff: the layers that get adapters.")] = None,
    init_lora: Annotated[Optional[str], typer.Option(help="Start from this LoRA (a .safetensors file or a run folder) of the same model family.")] = None,
    reg_folder: Annotated[Optional[str], typer.Option(help="Regularisation (class) images: prior preservation, as many per epoch as training views.")] = None,
    class_prompt: Annotated[Optional[str], typer.Option(help="The caption of a class image that has none, e.g. \"a photo of a cat\" (no trigger).")] = None,
    prior_loss_weight: Annotated[Optional[float], typer.Option(help="How much the class images' loss counts (default 1).")] = None,
    masked_loss: Annotated[Optional[bool], typer.Option("--masked-loss/--no-masked-loss", help="Train only where NAME.mask.png (or the alpha channel) marks the subject (default: on when masks exist).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue a stopped run from its last checkpoint.")] = None,
    allow_dataset_change: Annotated[bool, typer.Option("--allow-dataset-change", help="With --resume: train on the dataset folder as it is now, though it changed since the run started.")] = False,
    detach: Annotated[bool, typer.Option(help="Run in the background; follow it with `loratui runs`.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Events as JSON lines on stdout.")] = False,
    start_prepared: Annotated[Optional[Path], typer.Option(hidden=True)] = None,
) -> None:
    """Train a LoRA headless, with a progress bar (or --json events)."""
    from loratui.engine.config import build_config, load_config_file

    with user_errors():
        if start_prepared is not None:
            _run_prepared(start_prepared, json_out)
            return
        if resume is not None:
            changed = _overrides(
                save_every=save_every, mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                sample_every=sample_every, tensorboard=tensorboard, gpus=gpus, compile=compile_unet, notify=notify,
            )
            fixed = {"folder": folder, "--preset": preset, "--base-model": base_model, "--config": config,
                     "--steps": steps, "--epochs": epochs, "--repeats": repeats, "--rank": rank, "--alpha": alpha,
                     "--network": network, "--conv-rank": conv_rank, "--conv-alpha": conv_alpha,
                     "--lr": lr, "--batch-size": batch_size, "--grad-accum": grad_accum,
                     "--resolution": resolution, "--seed": seed, "--trigger": trigger, "--name": name,
                     "--output": output, "--train-text-encoder": train_text_encoder,
                     "--prediction-type": prediction_type, "--zero-terminal-snr": zero_terminal_snr,
                     "--optimizer": optimizer, "--d-coef": d_coef, "--unet-lr": unet_lr,
                     "--ema": ema, "--ema-decay": ema_decay,
                     "--text-encoder-lr": text_encoder_lr, "--loss-type": loss_type, "--huber-c": huber_c,
                     "--huber-schedule": huber_schedule, "--debiased-estimation": debiased_estimation,
                     "--multires-noise-iterations": multires_noise_iterations,
                     "--multires-noise-discount": multires_noise_discount, "--train-layers": train_layers,
                     "--init-lora": init_lora, "--reg-folder": reg_folder, "--class-prompt": class_prompt,
                     "--prior-loss-weight": prior_loss_weight, "--masked-loss": masked_loss}
            given = [flag for flag, value in fixed.items() if value is not None]
            if given:
                from loratui.engine.errors import ConfigError

                raise ConfigError(
                    f"{given[0]} cannot change on --resume: it would make a different run",
                    "resume as it was, or start a new run; --gradient-checkpointing, --mixed-precision, "
                    "--save-every, --sample-every, --tensorboard, --gpus and --compile may change",
                )
            _resume(resume, json_out, changed, allow_dataset_change)
            return
        file_values = load_config_file(config) if config else {}
        values = _overrides(
            base_model=base_model, allow_pickle=allow_pickle or None, trigger=trigger, name=name,
            output_dir=str(output) if output else None, steps=steps, epochs=epochs, repeats=repeats,
            rank=rank, alpha=alpha, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
            network=network, conv_rank=conv_rank, conv_alpha=conv_alpha,
            resolution=resolution, save_every=save_every, seed=seed, mixed_precision=mixed_precision,
            train_text_encoder=train_text_encoder, gradient_checkpointing=gradient_checkpointing,
            sample_every=sample_every, sample_prompts=sample_prompt or None, tensorboard=tensorboard, notify=notify,
            gpus=gpus, compile=compile_unet, prediction_type=prediction_type, zero_terminal_snr=zero_terminal_snr,
            optimizer=optimizer, d_coef=d_coef, unet_lr=unet_lr, text_encoder_lr=text_encoder_lr,
            ema=ema, ema_decay=ema_decay,
            loss_type=loss_type, huber_c=huber_c, huber_schedule=huber_schedule,
            debiased_estimation=debiased_estimation, multires_noise_iterations=multires_noise_iterations,
            multires_noise_discount=multires_noise_discount, train_layers=train_layers, init_lora=init_lora,
            reg_folder=reg_folder, class_prompt=class_prompt, prior_loss_weight=prior_loss_weight,
            masked_loss=masked_loss,
        )
        cfg = build_config(
            str(folder) if folder else None, preset.lower() if preset else None, file_values,
            str(config) if config else "config", values,
        )
        _start(_with_found_trigger(cfg, json_out), json_out, detach)


def _with_found_trigger(cfg, json_out: bool):
    """``cfg`` with the trigger word its captions already start with, when none was named (and
    the user told so): the run card and the LoRA's metadata then name it."""
    if cfg.trigger:
        return cfg
    from loratui.engine.data.dataset import scan
    from loratui.engine.errors import LoratuiError
    from loratui.engine.planning.run_plan import detect_trigger

    try:
        found = detect_trigger(scan(cfg.dataset))
    except LoratuiError:  # the run's own checks say what is wrong with the folder
        return cfg
    if not found:
        return cfg
    typer.echo(f"trigger word: '{found}' (every caption starts with it; --trigger WORD names another)",
               err=json_out)
    return cfg.model_copy(update={"trigger": found})


def _start(cfg, json_out: bool, detach: bool) -> None:
    """Check the model and dataset cheaply, make the run folder, then train or detach."""
    from loratui.engine.families.hub_access import loadable_spec
    from loratui.engine.families.models import resolve_model
    from loratui.engine.train.launch import launch_detached, prepare_run_dir

    loadable_spec(resolve_model(cfg.base_model, cfg.allow_pickle))  # offline: one line now, no run folder
    run_dir = prepare_run_dir(cfg)
    if detach:
        launched = launch_detached(cfg, run_dir)
        typer.echo(f"started {run_dir.name} in the background (pid {launched.pid})")
        typer.echo(f"  watch:   loratui attach {run_dir}")
        typer.echo(f"  status:  loratui runs")
        typer.echo(f"  stop:    loratui stop {run_dir}")
        return
    from loratui.engine.errors import LoratuiError
    from loratui.engine.runs.registry import remove_failed_start

    try:
        _run(cfg, run_dir, json_out, resume=False)
    except LoratuiError:
        remove_failed_start(run_dir)  # nothing to resume in it; the next run keeps the name
        raise


def _run(cfg, run_dir: Path, json_out: bool, resume: bool) -> None:
    from loratui.engine.train.distributed import in_launched_worker, launch_data_parallel

    if cfg.gpus > 1 and not in_launched_worker():
        code = launch_data_parallel(cfg, run_dir, resume=resume, json_out=json_out)
        if code:
            raise typer.Exit(code)
        return
    from loratui.engine.train.loop import train as engine_train
    from loratui.progress import RichProgressSink, json_stdout_sink

    sink = json_stdout_sink if json_out else RichProgressSink()
    try:
        result = engine_train(cfg, run_dir, [sink], resume=resume)
    finally:
        if not json_out:
            sink.close()  # type: ignore[union-attr]
    if json_out:
        return
    if result.status == "stopped":
        typer.echo(f"stopped at step {result.step}/{result.total_steps}; checkpoint saved.")
        typer.echo(f"continue with: loratui train --resume {run_dir}")
    else:
        stem = result.lora_path.stem if result.lora_path else run_dir.name
        typer.echo(f"done: {result.lora_path}")
        from loratui.engine.families.tiny import TINY_NAMES

        if cfg.base_model.strip() in TINY_NAMES:
            typer.echo("this LoRA is for loratui's tiny test model: its samples are noise, as expected; trained on "
                       f"a real --base-model, use it in AUTOMATIC1111 / ComfyUI as <lora:{stem}:0.7>")
            typer.echo(f"run card: {run_dir / 'README.md'}")
        else:
            typer.echo(f"use it in AUTOMATIC1111 / ComfyUI as <lora:{stem}:0.7>; run card: {run_dir / 'README.md'}")


def _resume(run_dir: Path, json_out: bool, changed: dict | None = None, allow_dataset_change: bool = False) -> None:
    from loratui.engine.config import load_run_config
    from loratui.engine.errors import RunError
    from loratui.engine.runs.registry import CONFIG, effective_status, load_state

    if not (run_dir / CONFIG).is_file():
        raise RunError(f"{run_dir}: not a loratui run folder (no {CONFIG})", "pass the folder `train` printed")
    status = effective_status(load_state(run_dir))
    if status == "finished":
        raise RunError(f"{run_dir}: this run already finished", "start a new run instead of --resume")
    from loratui.engine.train.distributed import in_launched_worker

    if status == "running" and not in_launched_worker():  # rank 0 may already have marked it
        raise RunError(f"{run_dir}: this run is still running", "follow it with `loratui runs`")
    cfg = load_run_config(run_dir, changed)
    if allow_dataset_change:  # a deliberate choice: the run goes on with the folder as it is now
        from loratui.engine.planning.run_plan import plan_run
        from loratui.engine.runs.identity import accept_dataset

        plan = plan_run(cfg)
        for change in accept_dataset(run_dir, plan.dataset, plan.reg_dataset):
            typer.echo(f"warning: training on the changed dataset: {change}", err=True)
    _run(cfg, run_dir, json_out, resume=True)


def _run_prepared(run_dir: Path, json_out: bool) -> None:
    import signal

    from loratui.engine.config import load_run_config

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a detached run outlives its terminal
    _run(load_run_config(run_dir), run_dir, json_out, resume=False)


@app.command()
def demo(
    headless: Annotated[bool, typer.Option(help="Plain progress output instead of the wizard.")] = False,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 150,
    output: Annotated[Path, typer.Option(help="Where the run folder goes.")] = Path("loratui-runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Events as JSON lines on stdout.")] = False,
) -> None:
    """The embedded default: the tiny model trains on a generated dataset, on any CPU."""
    from loratui.engine.config import build_config
    from loratui.engine.data.demo import DEMO_TRIGGER, make_demo_dataset
    from loratui.engine.paths import cache_dir

    with user_errors():
        if not headless and not json_out:
            from loratui.ui_commands import open_wizard

            open_wizard(None, demo=True)
            return
        folder = make_demo_dataset(cache_dir() / "demo-dataset")
        cfg = build_config(
            str(folder),
            "pet",
            overrides=dict(
                base_model="tiny", resolution=64, steps=steps, save_every=max(1, steps // 3),
                trigger=DEMO_TRIGGER, name="demo", output_dir=str(output),
            ),
        )
        if not json_out:
            typer.echo(f"demo dataset: {folder} (12 generated images, trigger word '{DEMO_TRIGGER}')")
        _start(cfg, json_out, detach=False)
        if not json_out:
            typer.echo("next, your own LoRA: loratui check PHOTOS, then loratui train PHOTOS --trigger WORD "
                       "--base-model MODEL (a .safetensors file, a diffusers folder or a hub id: README, Base models)")


@app.command()
def presets(
    folder: Annotated[Optional[Path], typer.Argument(help="Show the schedule each preset gives this dataset.")] = None,
    base_model: Annotated[Optional[str], typer.Option(help="The model to plan for (its family, memory and time).")] = None,
) -> None:
    """Show the presets and the values they set; with FOLDER, what each makes of it (as the wizard's cards)."""
    from rich.console import Console
    from rich.table import Table

    from loratui.engine.planning.presets import PRESETS

    with user_errors():
        table = Table(title="loratui presets")
        for col in ("preset", "what it is for", "rank", "alpha", "lr", "batch", "px", "save every", "aims at"):
            table.add_column(col)
        for p in PRESETS.values():
            table.add_row(
                p.name, p.summary, str(p.rank), f"{p.alpha:g}", f"{p.lr:g}", str(p.batch_size),
                str(p.resolution), str(p.save_every), f"~{p.target_steps} steps",
            )
        console = Console()
        console.print(table)
        if folder is not None:
            from loratui.engine.config import build_config
            from loratui.engine.planning.preset_plan import detect_hardware, estimate, measure_needs, plan_presets

            overrides = {"base_model": base_model} if base_model else {}

            def build(values: dict):
                return build_config(str(folder), values.get("preset"), overrides={**overrides, **values})

            hw = detect_hardware()
            plans = plan_presets(build, hw)
            needs = measure_needs(build, plans, hw)
            model = build({"preset": "person"}).base_model
            for plan in plans:
                if plan.error:
                    console.print(f"[bold]{plan.preset}[/]: [red]{plan.error}[/]")
                    continue
                need = needs.get(plan.preset)
                figures = estimate(plan, hw, model, need)
                if need is not None and not hw.gpu:  # what a GPU will need, for planning the box to rent
                    figures += f", needs ≈ {need.need / 2**30:.1f} GiB on a GPU"
                console.print(f"[bold]{plan.preset}[/] ({plan.family or 'unknown family'} at {plan.resolution} px, "
                              f"{figures}): {plan.explain}")
        else:
            console.print("Repeats and epochs are derived from the dataset size: `loratui presets FOLDER` shows how.")


@app.command()
def doctor(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check Python, torch, CUDA, GPU memory and library versions."""
    from loratui.engine.doctor import diagnose

    with user_errors():
        report = diagnose()
        if json_out:
            import json

            typer.echo(json.dumps(report, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="loratui doctor", show_header=False)
        table.add_column("item")
        table.add_column("value")
        for key, value in report["items"].items():
            table.add_row(key, str(value))
        console = Console()
        console.print(table)
        for advice in report["advice"]:
            console.print(f"[yellow]•[/] {advice}")


@app.command()
def runs(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List runs (yours, and any under this folder) with their status."""
    from loratui.engine.runs.registry import list_runs

    if json_out:  # each run as `status RUN --json` gives it (README: "Status for scripts")
        import json

        from loratui.engine.runs.status import all_statuses

        typer.echo(json.dumps(all_statuses([Path.cwd(), Path.cwd() / "loratui-runs"]), indent=2))
        return
    rows = list_runs([Path.cwd(), Path.cwd() / "loratui-runs"])
    from rich.console import Console
    from rich.table import Table

    table = Table(title="loratui runs")
    for col in ("name", "status", "step", "folder"):
        table.add_column(col)
    colours = {"running": "green", "finished": "blue", "failed": "red", "stale": "red", "stopped": "yellow",
               "damaged": "red"}
    for r in rows:
        colour = colours.get(r.status, "white")
        table.add_row(r.name, f"[{colour}]{r.status}[/]", f"{r.step}/{r.total_steps}", str(r.run_dir))
    Console().print(table if rows else "no runs yet: start one with `loratui train FOLDER`")


@app.command()
def stop(run_dir: Annotated[Path, typer.Argument(help="The run folder.")]) -> None:
    """Ask a running run to save a checkpoint and stop."""
    from loratui.engine.errors import RunError
    from loratui.engine.runs.registry import STATE, effective_status, load_state, read_state, request_stop

    with user_errors():
        if not (run_dir / STATE).is_file():
            raise RunError(f"{run_dir}: not a loratui run folder (no {STATE})", "see `loratui runs`")
        load_state(run_dir)  # a damaged state.json is told, not taken for "not running"
        if not request_stop(run_dir):
            status = effective_status(read_state(run_dir))
            if status == "stale":  # its process is gone; the pid may be another's now: nothing signalled
                raise RunError(f"{run_dir}: not running (status: stale: the process that ran it has ended)",
                               f"nothing to stop; `loratui train --resume {run_dir}` continues it")
            raise RunError(f"{run_dir}: not running (status: {status})", "nothing to stop")
        typer.echo(f"asked {run_dir.name} to save a checkpoint and stop")


# What other trainers (kohya sd-scripts, diffusers' examples) call loratui's options.
OPTION_SYNONYMS = {
    "--learning-rate": "--lr", "--unet-learning-rate": "--unet-lr", "--text-encoder-learning-rate": "--text-encoder-lr",
    "--network-dim": "--rank", "--lora-rank": "--rank", "--lora-dim": "--rank", "--dim": "--rank",
    "--network-alpha": "--alpha", "--lora-alpha": "--alpha",
    "--max-train-steps": "--steps", "--max-steps": "--steps", "--train-steps": "--steps",
    "--max-train-epochs": "--epochs", "--num-train-epochs": "--epochs",
    "--train-batch-size": "--batch-size", "--gradient-accumulation-steps": "--grad-accum",
    "--output-dir": "--output", "--output-name": "--name", "--pretrained-model-name-or-path": "--base-model",
    "--pretrained-model": "--base-model", "--model": "--base-model", "--instance-prompt": "--trigger",
    "--trigger-word": "--trigger", "--save-every-n-steps": "--save-every", "--checkpointing-steps": "--save-every",
    "--save-steps": "--save-every", "--resume-from-checkpoint": "--resume", "--prompt": "--sample-prompt",
    "--network-module": "--network", "--optimizer-type": "--optimizer",
}


def suggest_option(given: str, options: list[str]) -> str | None:
    """The option a mistyped or foreign ``given`` most likely means (``--learning-rate`` →
    ``--lr``), among ``options``; None when nothing is close."""
    import difflib

    name = given.split("=", 1)[0].replace("_", "-").lower()
    candidates = [name, name.removesuffix("s"), name + "s"]
    for candidate in candidates:
        if candidate in options and candidate != given:
            return candidate
        if OPTION_SYNONYMS.get(candidate) in options:
            return OPTION_SYNONYMS[candidate]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.7)
    return close[0] if close else None


class SuggestingCommand(typer.core.TyperCommand):
    """A command whose "no such option" error says which option was meant."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        # typer vendors click and exports only some of its errors: NoSuchOption is the usage
        # error that carries an option name and the possibilities click shows
        usage_error = typer.BadParameter.__mro__[1]
        try:
            return super().parse_args(ctx, args)
        except usage_error as exc:
            if not (hasattr(exc, "possibilities") and getattr(exc, "option_name", None)):
                raise
            options = [o for p in self.get_params(ctx) for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
            meant = suggest_option(exc.option_name, options)
            if meant:
                exc.possibilities = None
                exc.message = f"No such option: {exc.option_name}. Did you mean {meant}?"
            raise


def _register_optional_commands() -> None:
    # Commands that live in their own modules, each with register(app).
    import importlib
    import importlib.util

    for module in ("dataset_commands", "sample_commands", "ui_commands", "verify_commands", "status_commands",
                   "queue_commands"):
        if importlib.util.find_spec(f"loratui.{module}") is not None:
            importlib.import_module(f"loratui.{module}").register(app)
    for command in app.registered_commands:
        if command.cls in (None, typer.core.TyperCommand):
            command.cls = SuggestingCommand


_register_optional_commands()


def main() -> None:
    """Console-script entry point: one line per error, a traceback only with LORATUI_DEBUG=1."""
    try:
        args = sys.argv[1:]
        # `loratui` alone, or `loratui FOLDER` (a folder, not a command name): the wizard.
        if not args or (
            not args[0].startswith("-")
            and args[0] not in {c.name or c.callback.__name__ for c in app.registered_commands}
            and Path(args[0]).is_dir()
        ):
            from loratui.ui_commands import open_wizard

            try:
                with user_errors():
                    open_wizard(Path(args[0]) if args else None)
            except typer.Exit as exc:  # click's Exit is no SystemExit outside the Typer app
                sys.exit(exc.exit_code)
            return
        app()
    except SystemExit:
        raise
    except Exception as exc:  # a bug: say so in one line unless asked for the detail
        if os.environ.get("LORATUI_DEBUG"):
            raise
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc} (rerun with LORATUI_DEBUG=1 for details)", err=True)
        sys.exit(1)
