"""The training loop. It reads top to bottom: plan, load, prepare, cache, loop, save.

Every stochastic choice at micro-batch ``m`` (noise, timesteps, latent sample, caption
shuffle and dropout) is drawn from generators seeded by ``(seed, m)``, and the data order is
a function of ``(seed, epoch)``. So a CPU run is repeatable, and a resumed run continues
exactly where the interrupted one was.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import random
import shutil
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratui.engine import atomic, faults
from loratui.engine.export import lora_files as export
from loratui.engine.train import checkpoint as ckpt
from loratui.engine.train import lora
from loratui.engine.config import RunConfig, dump_toml
from loratui.engine.errors import LoratuiError, RunError
from loratui.engine.events import (
    CheckpointSaved,
    RecommendationMade,
    SampleSaved,
    ValidationLogged,
    EventBus,
    JsonlSink,
    PhaseProgress,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    Sink,
    StepLogged,
    WarningRaised,
)
from loratui.engine.train.conditioning import TextConditioner
from loratui.engine.train.denoiser import Denoiser
from loratui.engine.data.latents import cache_latents, encode_item, sample_latents
from loratui.engine.train.memory import read_memory
from loratui.engine.train.noise import model_prediction, training_schedule
from loratui.engine.planning.memory_plan import fit_to_device
from loratui.engine.families.models import Components, load_components, resolve_model
from loratui.engine.planning.run_plan import RunPlan, plan_run
from loratui.engine.export.metadata import run_metadata
from loratui.engine.export.runcard import progress_strip, write_run_card
from loratui.engine.runs.registry import CONFIG, EVENTS, STOP_REQUEST, RunLock, StateWriter, read_state, register_run
from loratui.engine.planning.presets import get_preset
from loratui.engine.validate.sampling import build_pipeline, default_prompts, render, save_png
from loratui.engine.data.prefetch import Prefetcher, to_device
from loratui.engine.train.step import MicroBatch, chunks, draw_micro, sample_losses
from loratui.engine.train.stop import StopSignal
from loratui.engine.validate.validation import ValidationSet, overtraining_step, recommend


@dataclass
class RunResult:
    """How a run ended."""

    status: str  # "finished" | "stopped"
    run_dir: Path
    lora_path: Path | None
    step: int
    total_steps: int
    final_loss: float | None


def train(
    config: RunConfig,
    run_dir: Path,
    sinks: list[Sink] | None = None,
    stop: StopSignal | None = None,
    resume: bool = False,
) -> RunResult:
    """Train ``config`` into ``run_dir``, reporting to ``sinks`` (and events.jsonl, state.json).

    With ``resume`` the newest checkpoint in ``run_dir`` is loaded and the run continues to the
    same total steps. Raises LoratuiError for problems the user can fix (after a run_failed
    event); a stop request ends the run as ``stopped`` with a checkpoint.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    faults.load()
    if not is_main_process():
        # data-parallel workers train in step with rank 0 but write nothing: one writer per run
        return _train(config, run_dir, EventBus(), _NoState(), stop or StopSignal(), resume, main=False)
    lock = RunLock(run_dir)
    lock.acquire()
    stop = stop or StopSignal(run_dir / STOP_REQUEST)
    if stop.request_file is None:
        stop.request_file = run_dir / STOP_REQUEST
    with contextlib.suppress(FileNotFoundError):
        (run_dir / STOP_REQUEST).unlink()  # an old request must not stop the new run
    for leftover in [*run_dir.glob(".*.tmp"), *run_dir.glob("diffusers/.*.tmp")]:
        leftover.unlink(missing_ok=True)  # half-written files of a process that was killed
    for staging in run_dir.glob(".diffusers-*"):
        shutil.rmtree(staging, ignore_errors=True)
    jsonl = JsonlSink(run_dir / EVENTS)
    state = StateWriter(
        run_dir,
        {"name": run_dir.name, "run_dir": str(run_dir.resolve()), "pid": os.getpid(), "step": 0},
    )
    bus = EventBus([jsonl, state, *(sinks or [])])
    if config.tensorboard:
        from loratui.engine.runs.tensorboard import TensorBoardSink

        bus.add(TensorBoardSink(run_dir))
    previous = read_state(run_dir) if resume else {}
    state.update(status="running", started_at=previous.get("started_at") or time.time())
    register_run(run_dir)
    try:
        return _train(config, run_dir, bus, state, stop, resume)
    except LoratuiError as exc:
        bus.emit(RunFailed(exc.message, exc.hint))
        with contextlib.suppress(OSError):  # the disk may be the very thing that failed
            state.update(status="failed", message=str(exc))
        raise
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}"
        bus.emit(RunFailed(message, "this is a bug or an environment problem; see events.jsonl"))
        with contextlib.suppress(OSError):
            state.update(status="failed", message=message)
        raise
    finally:
        jsonl.close()
        lock.release()


def is_main_process() -> bool:
    """False in the data-parallel workers accelerate launches beside rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


class _NoState:
    """state.json for a worker that must not write it."""

    state: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        pass


def _train(
    config: RunConfig,
    run_dir: Path,
    bus: EventBus,
    state: StateWriter | _NoState,
    stop: StopSignal,
    resume: bool,
    main: bool = True,
) -> RunResult:
    import torch
    from diffusers.optimization import get_scheduler

    # --- plan: cheap checks first, so a bad path fails before anything heavy loads
    spec = resolve_model(config.base_model, config.allow_pickle)
    accelerator, weight_dtype = _make_accelerator(config, bus)
    device = accelerator.device
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(weight_dtype, "fp32")
    config, split = fit_to_device(config, spec, accelerator, precision,
                                  "adamw8bit" if _use_8bit(config, device) else "adamw", bus)
    plan = plan_run(config)
    total_steps = plan.schedule.total_steps
    name = run_dir.name
    resolved = {"total_steps": total_steps, "repeats": plan.schedule.repeats, "epochs": plan.schedule.epochs}
    if main:  # on resume too: settings changed with it (e.g. --gradient-checkpointing) are kept
        atomic.write_text(run_dir / CONFIG, dump_toml(config, resolved))
    for message in plan.warnings:
        bus.emit(WarningRaised(message))

    # --- load
    bus.emit(PhaseProgress("loading model", 0, 1))
    comps = load_components(spec)
    bus.emit(PhaseProgress("loading model", 1, 1))
    family = comps.family
    own = model_prediction(comps.noise_scheduler.config, spec)
    comps.noise_scheduler, prediction = training_schedule(
        comps.noise_scheduler, spec, config.prediction_type, config.zero_terminal_snr, said=own)
    if prediction != own:  # a LoRA trained unlike its base model rarely works: say so once
        bus.emit(WarningRaised(f"training with {prediction.describe()}, but {spec.name} was made for "
                               f"{own.describe()}; set --prediction-type auto to follow the model"))
    unet, vae, noise_scheduler = comps.unet, comps.vae, comps.noise_scheduler
    text_encoders = comps.text_encoders  # by name, in the family's order

    # --- prepare: frozen base in the compute dtype, LoRA adapters in fp32
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    alpha = config.lora_alpha
    lora.add_lora(unet, list(family.unet_targets), config.rank, alpha)
    vae.requires_grad_(False)
    for encoder in text_encoders.values():
        encoder.requires_grad_(False)
        if config.train_text_encoder:
            lora.add_lora(encoder, list(family.text_targets), config.rank, alpha)
    unet.to(device, dtype=weight_dtype)
    for encoder in text_encoders.values():
        encoder.to(device, dtype=weight_dtype)
    vae.to(device, dtype=torch.float32)  # SD's VAE overflows in fp16; it runs once per image
    for model in (unet, *text_encoders.values()):
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if config.train_text_encoder:
            for encoder in text_encoders.values():
                encoder.gradient_checkpointing_enable()
    unet.train()
    for encoder in text_encoders.values():
        encoder.train(config.train_text_encoder)

    # --- cache latents once (mean and std of the VAE posterior; sampled fresh each step)
    latent_cache: dict[int, tuple[Any, Any]] = {}
    sampling = config.sample_interval > 0
    if config.cache_latents:
        with accelerator.main_process_first():  # rank 0 fills the disk cache, the others read it
            latent_cache = cache_latents(plan, vae, device, bus, config.cache_latents_to_disk)
    validation = _validation_set(plan, config, vae, device, latent_cache)
    if config.cache_latents:
        if not sampling:  # the VAE is needed again only to decode samples
            vae.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()

    # --- optimizer and LR schedule
    groups = [{"params": lora.lora_parameters(unet), "lr": config.lr}]
    if config.train_text_encoder:
        te_lr = config.text_encoder_lr or config.lr / 2
        groups += [{"params": lora.lora_parameters(e), "lr": te_lr} for e in text_encoders.values()]
    optimizer, optimizer_name = _make_optimizer(config, groups, device, bus)
    warmup = config.warmup_steps
    if warmup is None:
        warmup = 0 if config.lr_scheduler == "constant" else round(0.05 * total_steps)
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )
    if config.compile:
        # the first steps are slow while it compiles; benchmarks/RESULTS.md says when it pays
        # one static graph per latent shape (aspect buckets, a short last batch): inductor's
        # dynamic-shape path failed on the second bucket (benchmarks/RESULTS.md), and a bucket
        # set is small, so every shape gets its own graph rather than falling back to eager
        import torch._dynamo

        limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
        setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
        unet = torch.compile(unet, dynamic=False)
    if config.train_text_encoder:
        unet, *prepared, optimizer = accelerator.prepare(unet, *text_encoders.values(), optimizer)
        text_encoders = dict(zip(text_encoders, prepared))
    else:
        unet, optimizer = accelerator.prepare(unet, optimizer)
    # the models with adapters, by component name (the prefix of their keys in a checkpoint)
    trained = {"unet": unet, **(text_encoders if config.train_text_encoder else {})}
    params = [p for g in groups for p in g["params"]]

    # --- resume
    start_step = 0
    if resume:
        start_step = _restore(run_dir, accelerator, trained, optimizer, lr_scheduler, bus)
    started_at = float(state.state.get("started_at") or time.time())
    bus.emit(
        RunStarted(name, str(run_dir), config.model_dump(), total_steps, start_step, plan.schedule.explain)
    )
    state.update(total_steps=total_steps, step=start_step)

    # --- text conditioning (each distinct caption encoded once while the encoders are frozen)
    condition = TextConditioner(family, text_encoders, comps.tokenizers, device, config.train_text_encoder)
    denoiser = Denoiser(family, unet, condition, noise_scheduler)

    # --- checks at each save: validation loss (over-fitting) and sample images
    # a crash after a validation but before its checkpoint would otherwise count that step twice
    history = [h for h in _load_history(run_dir) if h[0] <= start_step] if resume else []
    warned = [False]

    def validate(at: int) -> None:
        if validation is None or not main:
            return
        model = accelerator.unwrap_model(unet)  # no collectives: only rank 0 validates
        model.eval()
        with accelerator.autocast():
            loss = validation.loss(Denoiser(family, model, condition, noise_scheduler), device, weight_dtype)
        model.train()
        history.append((at, loss))
        atomic.write_json(run_dir / "validation.json", {"held_out": validation.held_out, "history": history})
        bus.emit(ValidationLogged(at, loss, len(validation.latents), validation.held_out))
        best = overtraining_step(history)
        if best is not None and not warned[0]:
            warned[0] = True
            bus.emit(WarningRaised(
                f"validation loss rose after step {best}: the LoRA is over-training; "
                f"{name}-step{best:06d}.safetensors is likely the better file"))

    prompts = config.sample_prompts or default_prompts(
        get_preset(config.preset).sample_prompts, config.trigger, plan.caption_for(plan.items[0])
    )

    def take_samples(at: int) -> None:
        if not main:
            return
        modules = {**comps.modules, **{n: accelerator.unwrap_model(m) for n, m in trained.items()}}
        pipe = build_pipeline(family, modules, comps.tokenizers, noise_scheduler.config)
        width, height = (config.resolution, config.resolution)
        pipe.unet.eval()
        for n, prompt in enumerate(prompts):
            with accelerator.autocast():
                image = render(pipe, prompt, config.seed + n, width, height, config.sample_steps)
            path = save_png(image, run_dir / "samples" / f"step{at:06d}-{n}.png")
            bus.emit(SampleSaved(str(path), at))
        pipe.unet.train()

    # --- loop: one optimizer step = grad_accum planned micro-batches; each may be split in
    # `split` pieces (after an out-of-memory error) and across processes (data parallel)
    accum = config.grad_accum
    rank, world = accelerator.process_index, accelerator.num_processes
    healed: list[str] = []  # faults the run recovered from, for the run card

    def heal(message: str) -> None:
        healed.append(message)
        bus.emit(WarningRaised(message))

    lr_scale_rollbacks = 0
    bad_streak = 0
    snapshot = _snapshot(accelerator, trained, optimizer, lr_scheduler, start_step)
    smoothed: float | None = None
    last_lora: Path | None = None
    step = start_step

    done: deque[tuple[float, int, int]] = deque(maxlen=20)  # (seconds, images, passes) per step

    def latents_of(indices: list[int], gen):
        return sample_latents(plan, indices, latent_cache, vae, gen)

    def run_step(at: int) -> tuple[Any, int, int]:
        """Forward and backward for optimizer step ``at``: the mean loss of its samples, and
        this process's images and passes in it."""
        loss_sum = torch.zeros((), device=device)
        count = images = passes = 0
        for k in range(accum):
            batch = to_device(fetch.get(at * accum + k), device)
            mine = list(range(rank, len(batch), world))  # this process's rows of the planned batch
            pieces = chunks(mine, split) if mine else [[0]]  # an idle rank still joins the all-reduce
            images += len(mine)
            passes += len(pieces)
            for p, rows in enumerate(pieces):
                last = k == accum - 1 and p == len(pieces) - 1
                with (contextlib.nullcontext() if last else accelerator.no_sync(unet)), accelerator.autocast():
                    faults.maybe_oom(at + 1)
                    losses = sample_losses(denoiser, batch, rows, config, device, weight_dtype)
                    weight = 0.0 if not mine else world / (len(batch) * accum)
                    if faults.fires(f"nan@{at + 1}"):
                        losses = losses * float("nan")
                    accelerator.backward(losses.sum() * weight)
                if mine:
                    loss_sum += losses.detach().sum()
            count += len(batch)
        total = accelerator.reduce(loss_sum, "sum") if world > 1 else loss_sum
        return total / count, images, passes  # the loss a tensor: read with the gradient norm, in one sync

    def draw(micro: int) -> MicroBatch:
        return draw_micro(plan, config, micro, latents_of, vae.config.scaling_factor,
                          noise_scheduler.config.num_train_timesteps)

    fetch = Prefetcher(draw, total_steps * accum, device, ahead=config.cache_latents)
    stop.install_handlers()
    try:
        while step < total_steps:
            tic = time.perf_counter()
            try:
                mean_loss, images, passes = run_step(step)
            except torch.OutOfMemoryError:
                optimizer.zero_grad(set_to_none=True)
                _free_memory(device)
                per_piece = math.ceil(config.batch_size / world / split)
                if per_piece <= 1:
                    raise RunError(
                        f"{run_dir}: out of GPU memory even one image at a time",
                        "try --gradient-checkpointing, a lower --resolution, or 8-bit AdamW "
                        "(pip install bitsandbytes), then loratui train --resume RUN_DIR",
                    ) from None
                split *= 2
                heal((
                    f"out of GPU memory at step {step + 1}: now {math.ceil(per_piece / 2)} image(s) per pass, "
                    f"{split}× accumulation; the effective batch stays {config.batch_size * accum}"))
                continue
            faults.maybe_kill(f"step:{step + 1}")
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
            if grad_norm is None:
                loss_value = mean_loss.item()
                finite = math.isfinite(loss_value)
            else:
                loss_value, norm = torch.stack([mean_loss.float(), grad_norm.float()]).tolist()
                finite = math.isfinite(loss_value) and math.isfinite(norm)
            if not finite:
                # A bad step is skipped, never applied; several in a row mean the run has gone
                # astray, so it returns to the last good state with a lower learning rate.
                optimizer.zero_grad(set_to_none=True)
                bad_streak += 1
                if bad_streak < MAX_BAD_STEPS:
                    heal(f"non-finite loss or gradient at step {step + 1}: step skipped")
                    with warnings.catch_warnings():  # the schedule moves on without an update, on purpose
                        warnings.simplefilter("ignore", UserWarning)
                        lr_scheduler.step()
                    step += 1
                    continue
                lr_scale_rollbacks += 1
                if lr_scale_rollbacks > MAX_ROLLBACKS:
                    raise RunError(
                        f"{run_dir}: training keeps diverging (non-finite loss) after {MAX_ROLLBACKS} "
                        "rollbacks with lower learning rates",
                        "lower --lr, use --mixed-precision bf16 or no, and check the dataset with loratui check",
                    )
                step = _rollback(snapshot, accelerator, trained, optimizer, lr_scheduler)
                bad_streak = 0
                hint = " (fp16 overflows easily: --mixed-precision bf16 avoids it)" if weight_dtype == torch.float16 else ""
                heal((
                    f"{MAX_BAD_STEPS} bad steps in a row: rolled back to step {step} and halved the "
                    f"learning rate (try {lr_scale_rollbacks} of {MAX_ROLLBACKS}){hint}"))
                continue
            bad_streak = 0
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1

            smoothed = loss_value if smoothed is None else 0.9 * smoothed + 0.1 * loss_value
            done.append((time.perf_counter() - tic, images, passes))
            it_per_s = len(done) / sum(seconds for seconds, _, _ in done)
            mem = read_memory(device)
            bus.emit(
                StepLogged(
                    step=step,
                    total_steps=total_steps,
                    epoch=(step * accum - 1) // plan.batches.batches_per_epoch + 1,
                    loss=loss_value,
                    lr=lr_scheduler.get_last_lr()[0],
                    it_per_s=it_per_s,
                    eta_s=(total_steps - step) / it_per_s,
                    mem_used=mem.used,
                    mem_peak=mem.peak,
                    mem_total=mem.total,
                    mem_kind=mem.kind,
                )
            )

            saving = config.save_every and step % config.save_every == 0 and step < total_steps
            if sampling and (step % config.sample_interval == 0 or step == total_steps):
                take_samples(step)
            if saving or step == total_steps:
                validate(step)
            stopping = _agreed_stop(accelerator, stop) and step < total_steps
            if saving or stopping:
                if main:
                    last_lora = _guard_disk(run_dir, step, lambda: _save(
                        run_dir, name, step, accelerator, trained, optimizer, lr_scheduler,
                        config, plan, comps, bus, started_at, total_steps, optimizer_name))
                snapshot = _snapshot(accelerator, trained, optimizer, lr_scheduler, step)
                if stopping:
                    accelerator.wait_for_everyone()
                    if not main:
                        return RunResult("stopped", run_dir, None, step, total_steps, smoothed)
                    _record_speed(config, spec, precision, _gpu_name(device), done)
                    bus.emit(RunStopped(step, str(ckpt.latest_checkpoint(run_dir / "checkpoints"))))
                    state.update(status="stopped", step=step, message=stop.reason)
                    _card(run_dir, config, plan, comps, step, total_steps, smoothed, "stopped", healed=healed)
                    return RunResult("stopped", run_dir, last_lora, step, total_steps, smoothed)
    finally:
        fetch.close()
        stop.restore_handlers()

    # --- save the final LoRA in both formats, and the run card
    if not main:
        accelerator.wait_for_everyone()
        return RunResult("finished", run_dir, None, step, total_steps, smoothed)
    _record_speed(config, spec, precision, _gpu_name(device), done)
    final = _guard_disk(run_dir, step, lambda: _export_final(
        run_dir, name, step, accelerator, trained, config, plan, comps, started_at, total_steps, optimizer_name))
    advice = recommend(history, validation.held_out) if validation else None
    recommended = None
    if advice is not None:
        path = final if advice.step == step else run_dir / f"{name}-step{advice.step:06d}.safetensors"
        recommended = {"step": advice.step, "path": str(path), "strength": advice.strength,
                       "reason": advice.reason, "overtrained": advice.overtrained}
        bus.emit(RecommendationMade(**recommended))
    _card(run_dir, config, plan, comps, step, total_steps, smoothed, "finished", recommended, history, healed)
    state.update(status="finished", step=step, lora=str(final), final_loss=smoothed, finished_at=time.time(),
                 recommendation=recommended, healed=healed)
    bus.emit(RunFinished(str(final), step))
    accelerator.wait_for_everyone()
    return RunResult("finished", run_dir, final, step, total_steps, smoothed)


def _gpu_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else ""


def _record_speed(config: RunConfig, spec, precision: str, gpu: str, done: deque) -> None:
    """Keep the FLOP/s this run reached on ``gpu``, for the wizard's time estimates
    (engine/speed.py), from the last steps: (seconds, images, passes) of this process, which
    has the most rows of a batch split across GPUs, with short batches counted as they are."""
    if not gpu or len(done) < 10:
        return
    from loratui.engine.planning.footprint import memory_model
    from loratui.engine.planning.speed import record_speed

    try:
        unet = memory_model(config, spec, precision).unet
    except Exception:  # a model the measurement does not understand: nothing to record
        return
    flops = sum(unet.flops_per_image * images + unet.flops_fixed * passes for _, images, passes in done)
    record_speed(gpu, precision, flops / sum(seconds for seconds, _, _ in done))


def _agreed_stop(accelerator, stop: StopSignal) -> bool:
    """Whether any process was asked to stop (all processes must stop at the same step)."""
    requested = stop.requested
    if accelerator.num_processes == 1:
        return requested
    import torch

    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, "max").item() > 0)


MAX_BAD_STEPS = 3  # non-finite steps in a row before rolling back
MAX_ROLLBACKS = 3  # rollbacks (each halving the lr) before giving up
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _guard_disk(run_dir: Path, step: int, write):
    """Run ``write``; a full or read-only disk becomes one clear, resumable error."""
    try:
        return write()
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        raise RunError(
            f"{run_dir}: could not save step {step}: {exc.strerror or exc}",
            "free disk space or fix the folder's permissions, then loratui train --resume " + str(run_dir),
        ) from None


def _write_lora(run_dir, stem, step, accelerator, trained, config, plan, comps, started_at, total_steps,
                optimizer_name, fault_point: str = "") -> tuple[Path, dict]:
    """``RUN_DIR/stem.safetensors`` in kohya format with its metadata; also the adapter weights."""
    adapters = _adapter_dicts(accelerator, trained)
    meta = run_metadata(config, plan, comps, step, total_steps, started_at, stem, optimizer_name)
    tensors = export.to_kohya(comps.family, adapters, config.lora_alpha, config.save_precision)
    path = export.save_kohya(run_dir / f"{stem}.safetensors", tensors, meta, fault_point=fault_point)
    return path, adapters


def _export_final(run_dir, name, step, accelerator, trained, config, plan, comps, started_at, total_steps,
                  optimizer_name) -> Path:
    final, adapters = _write_lora(run_dir, name, step, accelerator, trained, config, plan, comps,
                                  started_at, total_steps, optimizer_name, fault_point="export")
    metas = {n: lora.adapter_metadata(accelerator.unwrap_model(m)) for n, m in trained.items()}
    export.save_diffusers(run_dir / "diffusers", comps.family, adapters, metas, config.save_precision)
    return final


def _to_cpu(obj: Any) -> Any:
    """A detached CPU copy of a (nested) state dict."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


@dataclass
class _Snapshot:
    step: int
    adapters: list[dict]
    optimizer: dict
    scheduler: dict


def _snapshot(accelerator, trained: dict, optimizer, lr_scheduler, step: int) -> _Snapshot:
    """The last good state in memory (LoRA, optimizer, schedule), for rolling back."""
    return _Snapshot(
        step,
        [_to_cpu(lora.lora_state_dict(accelerator.unwrap_model(m))) for m in trained.values()],
        _to_cpu(optimizer.state_dict()),
        _to_cpu(lr_scheduler.state_dict()),
    )


def _rollback(snap: _Snapshot, accelerator, trained: dict, optimizer, lr_scheduler) -> int:
    """Restore ``snap`` with the learning rate halved; returns the step to go on from."""
    for model, adapters in zip(trained.values(), snap.adapters):
        lora.load_lora_state_dict(accelerator.unwrap_model(model), adapters)
    optimizer.load_state_dict(_to_cpu(snap.optimizer))
    lr_scheduler.load_state_dict(_to_cpu(snap.scheduler))
    lr_scheduler.base_lrs = [lr * 0.5 for lr in lr_scheduler.base_lrs]
    snap.scheduler = _to_cpu(lr_scheduler.state_dict())  # a second rollback keeps the lower lr
    for group, base in zip(optimizer.param_groups, lr_scheduler.base_lrs):
        group["lr"] = base * lr_scheduler.lr_lambdas[0](lr_scheduler.last_epoch)
    return snap.step


def _free_memory(device) -> None:
    import gc

    gc.collect()
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.empty_cache()


def _validation_set(plan: RunPlan, config: RunConfig, vae, device, cache: dict) -> ValidationSet | None:
    """Held-out images when the plan has them, else up to eight training images."""
    import torch

    if config.validation == "off":
        return None
    held_out = bool(plan.validation_items)
    items = plan.validation_items if held_out else plan.items[:8]
    latents = []
    for item in items:
        mean, _ = cache[item.index] if (not held_out and item.index in cache) else encode_item(vae, item, device)
        latents.append(mean * vae.config.scaling_factor)
    from loratui.engine.data.prompts import with_trigger

    captions = [with_trigger(plan.caption_for(i), config.trigger) for i in items]
    sizes = torch.tensor([i.size_conditioning() for i in items]) if items else None
    return ValidationSet(latents, captions, held_out, config.seed, sizes)


def _load_history(run_dir: Path) -> list[tuple[int, float]]:
    import json

    try:
        data = json.loads((run_dir / "validation.json").read_text())
        return [(int(a), float(b)) for a, b in data.get("history", [])]
    except (OSError, ValueError, TypeError):
        return []


def _make_accelerator(config: RunConfig, bus: EventBus):
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "no"
    elif precision != "no" and not cuda:
        bus.emit(WarningRaised(f"mixed precision {precision} needs a GPU; training in fp32 on the CPU"))
        precision = "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=not cuda)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return accelerator, dtype


def _use_8bit(config: RunConfig, device) -> bool:
    """8-bit AdamW when asked for (or "auto") on CUDA with bitsandbytes installed."""
    import importlib.util

    wanted = config.optimizer == "adamw8bit" or (config.optimizer == "auto" and device.type == "cuda")
    return wanted and device.type == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def _make_optimizer(config: RunConfig, groups: list[dict], device, bus: EventBus):
    import torch

    if _use_8bit(config, device):
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, weight_decay=1e-2), "bitsandbytes.optim.AdamW8bit"
        except ImportError as exc:  # installed but broken (e.g. built for another CUDA)
            bus.emit(WarningRaised(f"bitsandbytes does not load ({exc}); using AdamW"))
    elif config.optimizer == "adamw8bit":
        bus.emit(WarningRaised(
            "8-bit AdamW needs a CUDA GPU; using AdamW" if device.type != "cuda"
            else "bitsandbytes is not installed; using AdamW (pip install bitsandbytes)"))
    # one fused kernel for all LoRA tensors: on the CPU too, 7x faster than the default (foreach)
    # on the tiny model's 160 small tensors (benchmarks/RESULTS.md)
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(groups, weight_decay=1e-2, **fused), "torch.optim.AdamW"


def _adapter_dicts(accelerator, trained: dict) -> dict[str, dict]:
    """Each trained component's adapter weights (peft keys), by component name."""
    return {name: lora.lora_state_dict(accelerator.unwrap_model(model)) for name, model in trained.items()}


def _save(run_dir, name, step, accelerator, trained, optimizer, lr_scheduler, config, plan, comps, bus,
          started_at, total_steps, optimizer_name) -> Path:
    """A step LoRA file (kohya format) and a resume checkpoint."""
    path, adapters = _write_lora(run_dir, f"{name}-step{step:06d}", step, accelerator, trained, config,
                                 plan, comps, started_at, total_steps, optimizer_name)
    flat = {f"{component}.{k}": v for component, state in adapters.items() for k, v in state.items()}
    scaler = accelerator.scaler.state_dict() if getattr(accelerator, "scaler", None) else None
    ckpt.save_checkpoint(
        run_dir / "checkpoints",
        ckpt.TrainerState(
            step, step * config.grad_accum, flat, optimizer.state_dict(), lr_scheduler.state_dict(), scaler,
            {"total_steps": total_steps, "seed": config.seed},
        ),
        config.keep_checkpoints,
    )
    bus.emit(CheckpointSaved(str(path), step))
    return path


def _restore(run_dir, accelerator, trained: dict, optimizer, lr_scheduler, bus: EventBus) -> int:
    saved, note = ckpt.load_latest(run_dir / "checkpoints")
    if note:  # latest.json was lost or names a deleted folder: say which checkpoint we took
        bus.emit(WarningRaised(note))
    if saved is None:
        # stopped before its first save: every draw derives from the seed, so starting over
        # from step 0 gives exactly the run that was lost
        return 0
    by_component: dict[str, dict] = {}
    for key, value in saved.adapters.items():
        component, _, rest = key.partition(".")
        by_component.setdefault(component, {})[rest] = value
    for component, model in trained.items():
        if component in by_component:
            lora.load_lora_state_dict(accelerator.unwrap_model(model), by_component[component])
    optimizer.load_state_dict(saved.optimizer)
    lr_scheduler.load_state_dict(saved.scheduler)
    if saved.scaler is not None and getattr(accelerator, "scaler", None):
        accelerator.scaler.load_state_dict(saved.scaler)
    return saved.step


def _card(run_dir, config: RunConfig, plan: RunPlan, comps: Components, step, total_steps, loss, status,
          recommended: dict | None = None, history: list | None = None, healed: list | None = None):
    strip = progress_strip(run_dir) if status == "finished" else None
    write_run_card(
        run_dir,
        {
            "progress": "samples/progress-0.png" if strip else None,
            "healed": healed or [],
            "recommendation": recommended,
            "run_dir": str(run_dir),
            "validation": history or [],
            "held_out": [i.record.rel for i in plan.validation_items],
            "name": run_dir.name,
            "status": status,
            "trigger": config.trigger,
            "preset": config.preset,
            "base_model": comps.spec.name if comps.spec.kind != "hub" else comps.spec.location,
            "family": comps.family.label,
            "pipeline_class": comps.family.pipeline_class,
            "images": len(plan.items),
            "schedule": plan.schedule.explain,
            "rank": config.rank,
            "alpha": config.lora_alpha,
            "lr": config.lr,
            "lr_scheduler": config.lr_scheduler,
            "batch_size": config.batch_size,
            "resolution": config.resolution,
            "seed": config.seed,
            "step": step,
            "total_steps": total_steps,
            "final_loss": loss,
        },
    )
