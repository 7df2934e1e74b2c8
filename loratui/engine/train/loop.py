"""The training loop as a recipe: ``TrainingRun.setup()`` reads top to bottom (plan, load,
prepare, cache, optimize, resume), then ``loop()`` trains to the end or to a stop. The run's
state lives on that one object; recovering from out-of-memory (``oom``), from non-finite
losses (``divergence``), stopping (``stop``) and writing files (``saving``) are parts beside it.

Every stochastic choice at micro-batch ``m`` (noise, timesteps, latent sample, caption
shuffle and dropout) is drawn from generators seeded by ``(seed, m)``, and the data order is
a function of ``(seed, epoch)``. So a CPU run is repeatable, and a resumed run continues
exactly where the interrupted one was.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratui.engine import atomic, faults
from loratui.engine.config import RunConfig, dump_toml
from loratui.engine.data.latents import cache_latents, sample_latents
from loratui.engine.data.masks import load_masks
from loratui.engine.data.prefetch import Prefetcher, to_device
from loratui.engine.errors import DiskFullError, LoratuiError
from loratui.engine.events import (
    EventBus,
    JsonlSink,
    PhaseProgress,
    RecommendationMade,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    SampleSaved,
    Sink,
    StepLogged,
    ValidationLogged,
    WarningRaised,
)
from loratui.engine.families.models import load_components, resolve_model
from loratui.engine.planning import speed
from loratui.engine.planning.memory_plan import fit_to_device
from loratui.engine.planning.presets import get_preset
from loratui.engine.planning.run_plan import plan_run
from loratui.engine.runs.identity import check_identity, record_identity
from loratui.engine.runs.notify import attach_notifier
from loratui.engine.runs.reserve import SpaceReserve, is_disk_error
from loratui.engine.runs.registry import CONFIG, EVENTS, STOP_REQUEST, RunLock, StateWriter, read_state, register_run
from loratui.engine.train import checkpoint as ckpt
from loratui.engine.train import gradients, lora
from loratui.engine.train.conditioning import TextConditioner
from loratui.engine.train.denoiser import Denoiser
from loratui.engine.train.divergence import DivergenceGuard
from loratui.engine.train.ema import WeightAverage, in_use
from loratui.engine.train.memory import read_memory
from loratui.engine.train.noise import model_prediction, training_schedule
from loratui.engine.train.oom import BatchSplit
from loratui.engine.train.optimizer import (
    eval_weights,
    learning_rates,
    lr_note,
    make_accelerator,
    make_lr_schedule,
    make_optimizer,
    use_8bit,
)
from loratui.engine.train.saving import RunWriter, guard_disk
from loratui.engine.train.step import (
    MicroBatch, draw_micro, fixed_captions, loss_sums, sample_losses, split_losses, take_rows,
)
from loratui.engine.train.stop import StopSignal, agreed_stop
from loratui.engine.train.threads import set_run_threads
from loratui.engine.validate.sampling import build_pipeline, default_prompts, render_batch, save_png
from loratui.engine.validate.schedule import SampleSchedule, estimate_pass_seconds
from loratui.engine.validate.validation import load_history, overtraining_step, recommend, validation_set


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
        return TrainingRun(config, run_dir, EventBus(), _NoState(), stop or StopSignal(), resume, main=False).run()
    lock = RunLock(run_dir)
    try:  # the first writes: a disk already full is one clear line, and no empty folder is left
        guard_disk(run_dir, 0, lock.acquire)
    except DiskFullError:
        if not resume:
            _remove_empty_run(run_dir, None, lock)
        raise
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
    attach_notifier(bus, config, run_dir)  # --notify, $LORATUI_NOTIFY or the user default: told at the end
    if config.tensorboard:
        from loratui.engine.runs.tensorboard import TensorBoardSink

        bus.add(TensorBoardSink(run_dir))
    reserve = SpaceReserve(run_dir)  # room for the last words if another process fills the disk
    reserve.hold()
    previous = read_state(run_dir) if resume else {}
    run = TrainingRun(config, run_dir, bus, state, stop, resume, previous=previous)
    try:
        state.update(status="running", started_at=previous.get("started_at") or time.time())
        register_run(run_dir)
        return run.run()
    except LoratuiError as exc:
        reserve.release()
        bus.emit(RunFailed(exc.message, exc.hint))
        with contextlib.suppress(OSError):  # the disk may be the very thing that failed
            state.update(status="failed", message=str(exc))
        if isinstance(exc, DiskFullError) and not resume and run.step == 0:
            _remove_empty_run(run_dir, jsonl, lock)
        raise
    except KeyboardInterrupt:
        # Ctrl-C before the loop took over the signal (loading the model, caching latents): the
        # user's choice, not a defect; the run is stopped and a resume starts it again
        reserve.release()
        checkpoint = ckpt.latest_checkpoint(run_dir / "checkpoints")
        bus.emit(RunStopped(run.step, str(checkpoint or "")))
        with contextlib.suppress(OSError):
            state.update(status="stopped", step=run.step, message=(
                f"interrupted (Ctrl-C) before step {run.step + 1}; loratui train --resume {run_dir} continues it"))
        raise
    except BaseException as exc:
        reserve.release()
        message = f"{type(exc).__name__}: {exc}"
        bus.emit(RunFailed(message, "this is a bug or an environment problem; see events.jsonl"))
        with contextlib.suppress(OSError):
            state.update(status="failed", message=message)
        raise
    finally:
        reserve.release()
        state.close()
        jsonl.close()
        lock.release()


def _remove_empty_run(run_dir: Path, jsonl: JsonlSink | None, lock: RunLock) -> None:
    """A run that failed for lack of disk before its first step leaves no empty folder behind
    (the error says what to fix; there is nothing in it to resume)."""
    if any(run_dir.glob("*.safetensors")) or (run_dir / "checkpoints").exists():
        return
    if jsonl is not None:
        jsonl.close()
    lock.release()
    shutil.rmtree(run_dir, ignore_errors=True)


def is_main_process() -> bool:
    """False in the data-parallel workers accelerate launches beside rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


class _NoState:
    """state.json for a worker that must not write it."""

    state: dict[str, Any] = {}

    def update(self, **values: Any) -> None:
        pass


class TrainingRun:
    """One run, from its config to its files. ``run()`` is ``setup()`` then ``loop()``."""

    def __init__(self, config: RunConfig, run_dir: Path, bus: EventBus, state: StateWriter | _NoState,
                 stop: StopSignal, resume: bool, main: bool = True, previous: dict | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.name = run_dir.name
        self.bus = bus
        self.state = state
        self.stop = stop
        self.resume = resume
        self.main = main  # rank 0 writes; data-parallel workers only train
        self.previous = previous or {}  # state.json as the interrupted run left it (--resume)
        self.step = 0
        self.smoothed: float | None = None  # the loss, smoothed for display
        self.last_lora: Path | None = None
        self.healed: list[str] = []  # faults the run recovered from, for the run card
        self.history: list[tuple[int, float]] = []  # validation loss by step
        self.warned_overtraining = False
        self.done: deque[tuple[float, int, int]] = deque(maxlen=20)  # (seconds, images, passes) per step
        self.pass_seconds: dict[str, deque[float]] = {"sampling": deque(maxlen=5), "validating": deque(maxlen=5)}
        self.kinds: tuple[float | None, float | None] = (None, None)  # the step's instance and prior loss

    def run(self) -> RunResult:
        from loratui.engine.families.discover import downloads_first

        began = time.monotonic()
        fetched = downloads_first(self.config.base_model)  # a download is not what the next run waits for
        self.setup()
        self.setup_seconds = None if fetched else time.monotonic() - began  # for the wizard's time estimates
        return self.loop()

    # -- setup, top to bottom ----------------------------------------------------------------

    def setup(self) -> None:
        self.plan_run()
        self.load()
        self.prepare()
        self.cache()
        self.optimize()
        self.restore()

    def plan_run(self) -> None:
        """Cheap checks first, so a bad path fails before anything heavy loads."""
        import torch

        self.spec = resolve_model(self.config.base_model, self.config.allow_pickle)
        self.accelerator, self.weight_dtype = make_accelerator(self.config, self.bus)
        self.device = self.accelerator.device
        if self.device.type == "cpu":  # as many threads as the machine has free (train/threads.py)
            kept = self.previous.get("cpu_threads")
            threads = set_run_threads(self.spec.kind == "tiny", self.accelerator.num_processes, kept)
            self.state.update(cpu_threads=threads)
        self.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.weight_dtype, "fp32")
        optimizer = "adamw8bit" if use_8bit(self.config, self.device) else "adamw"
        self.config, split = fit_to_device(self.config, self.spec, self.accelerator, self.precision, optimizer,
                                           self.bus)
        config = self.config
        self.plan = plan_run(config)
        schedule = self.plan.schedule
        self.total_steps = schedule.total_steps
        self.split = BatchSplit(split, config.batch_size, self.accelerator.num_processes)
        if self.main:  # on resume too: settings changed with it (e.g. --gradient-checkpointing) are kept
            # the same data, or a resume would train another LoRA (a folder edited, or another one found
            # from another working directory); the config keeps the folder's absolute path
            write = check_identity if self.resume else record_identity
            guard_disk(self.run_dir, 0, lambda: write(self.run_dir, self.plan.dataset, self.plan.reg_dataset))
            resolved = {"total_steps": self.total_steps, "repeats": schedule.repeats, "epochs": schedule.epochs}
            fixed = config.model_copy(update={"dataset": str(Path(config.dataset).resolve()), "reg_folder": (
                str(Path(config.reg_folder).resolve()) if config.reg_folder else None)})
            guard_disk(self.run_dir, 0, lambda: atomic.write_text(self.run_dir / CONFIG, dump_toml(fixed, resolved)))
            if config.notify:  # a notification URL may hold a token
                os.chmod(self.run_dir / CONFIG, 0o600)
        for message in self.plan.warnings:
            self.bus.emit(WarningRaised(message))

    def load(self) -> None:
        """The base model's components, with the noise schedule this run trains on."""
        self.bus.emit(PhaseProgress("loading model", 0, 1))
        comps = self.comps = load_components(self.spec)
        self.bus.emit(PhaseProgress("loading model", 1, 1))
        self.family = comps.family
        own = model_prediction(comps.noise_scheduler.config, self.spec)
        comps.noise_scheduler, prediction = training_schedule(
            comps.noise_scheduler, self.spec, self.config.prediction_type, self.config.zero_terminal_snr, said=own)
        if prediction != own:  # a LoRA trained unlike its base model rarely works: say so once
            self.bus.emit(WarningRaised(f"training with {prediction.describe()}, but {self.spec.name} was made "
                                        f"for {own.describe()}; set --prediction-type auto to follow the model"))
        self.unet, self.vae, self.noise_scheduler = comps.unet, comps.vae, comps.noise_scheduler
        self.text_encoders = comps.text_encoders  # by name, in the family's order

    def prepare(self) -> None:
        """LoRA adapters in fp32 on a frozen base in the compute dtype, on the device."""
        import torch

        config, unet, vae, encoders = self.config, self.unet, self.vae, self.text_encoders
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        network = lora.Network.of(config)  # --network: its type, rank and alpha, conv rank and alpha
        unet_targets, text_targets = self.family.lora_targets(config.train_layers)
        lora.add_network(unet, unet_targets, network, unet=True)
        vae.requires_grad_(False)
        for encoder in encoders.values():
            encoder.requires_grad_(False)
            if config.train_text_encoder:
                lora.add_network(encoder, text_targets, network)
        unet.to(self.device, dtype=self.weight_dtype)
        for encoder in encoders.values():
            encoder.to(self.device, dtype=self.weight_dtype)
        vae.to(self.device, dtype=torch.float32)  # SD's VAE overflows in fp16; it runs once per image
        for model in (unet, *encoders.values()):
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        if config.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
            if config.train_text_encoder:
                for encoder in encoders.values():
                    encoder.gradient_checkpointing_enable()
        unet.train()
        for encoder in encoders.values():
            encoder.train(config.train_text_encoder)

    def cache(self) -> None:
        """Latents once (mean and std of the VAE posterior; sampled fresh each step), and the
        validation set."""
        import torch

        self.latent_cache: dict[int, tuple[Any, Any]] = {}
        self.masks: dict[int, Any] = {}
        self.sampling = self.config.sample_interval > 0
        config = self.config
        # the default schedule on a CPU is thinned to a share of the run (validate/schedule.py)
        self.sample_schedule = SampleSchedule(self.total_steps, config.sample_interval, config.sample_every is None
                                              and self.device.type == "cpu")
        self.prompts = config.sample_prompts or default_prompts(
            get_preset(config.preset).sample_prompts, config.trigger, self.plan.caption_for(self.plan.items[0]))
        if self.plan.masked:  # first: an image whose mask is empty leaves the plan before its latents are made
            self.masks = load_masks(self.plan, self.bus)
        if self.config.cache_latents:
            with self.accelerator.main_process_first():  # rank 0 fills the disk cache, the others read it
                self.latent_cache = cache_latents(self.plan, self.vae, self.device, self.bus,
                                                  self.config.cache_latents_to_disk)
        self.validation = validation_set(self.plan, self.config, self.vae, self.device, self.latent_cache)
        if self.config.cache_latents and not self.sampling:  # the VAE is needed again only for samples
            self.vae.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def optimize(self) -> None:
        """The optimizer and LR schedule over the adapters, and the models through accelerate."""
        import torch

        config, encoders = self.config, self.text_encoders
        unet_lr, te_lr = learning_rates(config)
        groups = [{"params": lora.lora_parameters(self.unet), "lr": unet_lr}]
        if config.train_text_encoder:
            groups += [{"params": lora.lora_parameters(e), "lr": te_lr} for e in encoders.values()]
        self.optimizer, self.optimizer_name = make_optimizer(config, groups, self.device, self.bus, self.total_steps)
        self.lr_scheduler = make_lr_schedule(config, self.optimizer, self.total_steps)
        unet = self.unet
        if config.compile:
            # the first steps are slow while it compiles; benchmarks/RESULTS.md says when it pays.
            # One static graph per latent shape (aspect buckets, a short last batch): inductor's
            # dynamic-shape path failed on the second bucket (benchmarks/RESULTS.md), and a bucket
            # set is small, so every shape gets its own graph rather than falling back to eager
            import torch._dynamo

            limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
            unet = torch.compile(unet, dynamic=False)
        if config.train_text_encoder:
            unet, *prepared, self.optimizer = self.accelerator.prepare(unet, *encoders.values(), self.optimizer)
            self.text_encoders = dict(zip(encoders, prepared))
        else:
            unet, self.optimizer = self.accelerator.prepare(unet, self.optimizer)
        self.unet = unet
        # the models with adapters, by component name (the prefix of their keys in a checkpoint)
        self.trained = {"unet": unet, **(self.text_encoders if config.train_text_encoder else {})}
        self.params = [p for g in groups for p in g["params"]]

    def restore(self) -> None:
        """On ``--resume`` the newest checkpoint; then the run's start is announced."""
        started_at = float(self.state.state.get("started_at") or time.time())
        self.ema = WeightAverage.of(self.trained, self.accelerator, self.config.ema_decay, self.config.ema) \
            if self.config.ema != "off" else None  # --ema: the average of the adapter weights
        self.writer = RunWriter(self.run_dir, self.config, self.plan, self.comps, self.accelerator, self.trained,
                                self.total_steps, started_at, self.optimizer_name, self.bus, self.optimizer,
                                lr_note(self.config), ema=self.ema)
        if self.resume:
            self.step = self.writer.restore(self.optimizer, self.lr_scheduler)
            # a crash after a validation but before its checkpoint would otherwise count that step twice
            self.history = [h for h in load_history(self.run_dir) if h[0] <= self.step]
            self.sample_schedule.start = self.step  # samples budget the steps this process trains
        if self.step == 0 and self.config.init_lora:
            from loratui.engine.train.init_lora import start_from

            self.writer.parent = start_from(self.config.init_lora, self.family, self.trained, self.accelerator,
                                            self.config, self.bus)
            if self.ema is not None:  # the average starts at the weights training starts from
                self.ema.reset()
        self.bus.emit(RunStarted(self.name, str(self.run_dir), self.config.model_dump(exclude={"notify"}),
                                 self.total_steps, self.step,
                                 "; ".join(filter(None, [self.plan.schedule.explain, self.writer.lr_note]))))
        self.state.update(total_steps=self.total_steps, step=self.step)
        # captions into text conditioning: each distinct caption encoded once while the encoders are frozen
        self.condition = TextConditioner(self.family, self.text_encoders, self.comps.tokenizers, self.device,
                                         self.config.train_text_encoder, cache=not self.config.shuffle_tags)
        if not self.config.shuffle_tags:  # before step 1, as the latents: no step waits for the text encoder
            self.condition.encode_ahead(fixed_captions(self.plan, self.config), lambda done, total: self.bus.emit(
                PhaseProgress("encoding captions", done, total)))
        self.denoiser = Denoiser(self.family, self.unet, self.condition, self.noise_scheduler)
        self.guard = DivergenceGuard(self.accelerator, self.trained, self.optimizer, self.lr_scheduler,
                                     self.run_dir, fp16=self.precision == "fp16", ema=self.ema)
        self.guard.remember(self.step)

    # -- the loop ------------------------------------------------------------------------------

    def loop(self) -> RunResult:
        """One optimizer step = grad_accum planned micro-batches; each may be split into
        passes (after an out-of-memory error) and across processes (data parallel)."""
        import torch

        accum = self.config.grad_accum
        # drawn ahead on a thread for a GPU, which must not wait for the CPU; on a CPU the step's
        # own threads are the cores, and a draw beside them only waits for the GIL and the
        # scheduler: the same median, with the step's slow tail under load (benchmarks/RESULTS.md)
        ahead = self.config.cache_latents and self.device.type != "cpu"
        fetch = Prefetcher(self._draw, self.total_steps * accum, self.device, ahead=ahead)
        self.stop.install_handlers()
        try:
            while self.step < self.total_steps:
                tic = time.perf_counter()
                try:
                    mean_loss, images, passes = self.forward_backward(fetch)
                except torch.OutOfMemoryError:
                    self.optimizer.zero_grad(set_to_none=True)
                    _free_memory(self.device)
                    self.heal(self.split.halve(self.step, accum, self.run_dir))
                    continue
                faults.maybe_kill(f"step:{self.step + 1}")
                loss, finite = self.loss_and_gradient_check(mean_loss)
                if not finite:
                    verdict = self.guard.bad(self.step)
                    self.step = verdict.step
                    self.heal(verdict.message)
                    continue
                self.guard.good()
                self.optimizer.step()
                if self.ema is not None and not getattr(self.optimizer, "step_was_skipped", False):
                    self.ema.update()  # only applied steps move the average (fp16's scaler may skip one)
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.log_step(loss, time.perf_counter() - tic, images, passes)
                if self.checks_and_saves():
                    return self.stopped()
        finally:
            fetch.close()
            self.stop.restore_handlers()
        return self.finish()

    def forward_backward(self, fetch: Prefetcher) -> tuple[Any, int, int]:
        """Forward and backward for this optimizer step: the loss sums of its samples (a tensor,
        read with the gradient norm in one sync: see ``step_losses``), and this process's images
        and passes in it."""
        import torch

        config, accelerator, device = self.config, self.accelerator, self.device
        accum, at = config.grad_accum, self.step
        rank, world = accelerator.process_index, accelerator.num_processes
        # the optimised loss's sum; with class images also the training and class images' losses
        # and counts apart: [loss, instance sum, instances, prior sum, priors]
        sums = torch.zeros(5 if config.reg_folder else 1, device=device)
        count = images = passes = 0
        for k in range(accum):
            batch = to_device(fetch.get(at * accum + k), device)
            mine = list(range(rank, len(batch), world))  # this process's rows of the planned batch
            pieces = self.split.pieces(mine) if mine else [[0]]  # an idle rank still joins the all-reduce
            images += len(mine)
            passes += len(pieces)
            for p, rows in enumerate(pieces):
                last = k == accum - 1 and p == len(pieces) - 1
                with (contextlib.nullcontext() if last else accelerator.no_sync(self.unet)), accelerator.autocast():
                    faults.maybe_oom(at + 1)
                    losses = sample_losses(self.denoiser, batch, rows, config, device, self.weight_dtype)
                    weight = 0.0 if not mine else world / (len(batch) * accum)
                    if faults.fires(f"nan@{at + 1}"):
                        losses = losses * float("nan")
                    optimised = losses if batch.weights is None else losses * take_rows(batch.weights, rows)
                    accelerator.backward(optimised.sum() * weight)
                if mine:
                    sums += loss_sums(losses.detach(), optimised.detach(),
                                      None if batch.reg is None else take_rows(batch.reg, rows))
            count += len(batch)
        total = accelerator.reduce(sums, "sum") if world > 1 else sums
        return total / torch.tensor([count, 1, 1, 1, 1][: len(total)], device=device), images, passes

    def loss_and_gradient_check(self, losses) -> tuple[float, bool]:
        """Clip the gradient (train/gradients.py); the step's loss, and whether loss and gradient
        norm are finite. ``losses`` is [mean loss] or, with class images, [mean loss, instance
        sum, instances, prior sum, priors]: read with the norm in one sync, the two kinds kept
        for the step's event."""
        import math

        import torch

        norm = gradients.gradient_norm(self.accelerator, self.params, self.config.max_grad_norm)
        values = torch.cat([losses.float(), norm.to(losses.device)]).tolist()
        loss, (norm_value, factor) = values[0], values[-2:]
        self.kinds = split_losses(values[1:-2])
        finite = math.isfinite(loss) and math.isfinite(norm_value)
        if finite:
            gradients.clip(self.params, self.config.max_grad_norm, norm[0], factor)
        return loss, finite

    def _draw(self, micro: int) -> MicroBatch:
        def latents_of(indices: list[int], gen):
            return sample_latents(self.plan, indices, self.latent_cache, self.vae, gen)

        return draw_micro(self.plan, self.config, micro, latents_of, self.vae.config.scaling_factor,
                          self.noise_scheduler.config.num_train_timesteps, self.masks)

    def optional(self, what: str, write) -> bool:
        """Run ``write`` for a file the run can do without (a sample, validation.json, the run
        card): on a full or read-only disk the run warns and goes on; the next save says clearly
        what to do if the disk stays full. True when it was written."""
        try:
            write()
            return True
        except OSError as exc:
            if not is_disk_error(exc):
                raise
            self.heal(f"could not write {what}: {exc.strerror or exc}; the run goes on "
                      "(free disk space: the next save needs it)")
            return False

    def heal(self, message: str) -> None:
        self.healed.append(message)
        self.bus.emit(WarningRaised(message))

    def log_step(self, loss: float, seconds: float, images: int, passes: int) -> None:
        step, total = self.step, self.total_steps
        self.smoothed = loss if self.smoothed is None else 0.9 * self.smoothed + 0.1 * loss
        self.done.append((seconds, images, passes))
        it_per_s = len(self.done) / sum(s for s, _, _ in self.done)
        mem = read_memory(self.device)
        self.bus.emit(
            StepLogged(
                step=step,
                total_steps=total,
                epoch=(step * self.config.grad_accum - 1) // self.plan.batches.batches_per_epoch + 1,
                loss=loss,
                lr=self.lr_scheduler.get_last_lr()[0],
                it_per_s=it_per_s,
                eta_s=(total - step) / it_per_s + self.checks_left_seconds(),
                mem_used=mem.used,
                mem_peak=mem.peak,
                mem_total=mem.total,
                mem_kind=mem.kind,
                instance_loss=self.kinds[0],
                prior_loss=self.kinds[1],
            )
        )

    # -- what happens between steps: samples, validation, saves, stops --------------------------

    def checks_left_seconds(self) -> float:
        """The time the sample and validation passes still to come will take, at the pace of the
        ones done so far (they can be half of a short run: an ETA must count them), the samples
        the schedule will thin left out."""
        if not self.main:
            return 0.0
        step, total = self.step, self.total_steps
        pace, sample_cost, validation_cost = self.check_costs()
        validations = self.validation_steps(step + 1)
        samples = 0
        if self.sampling and step < total:  # the passes at saves the schedule takes, and the final one
            samples = 1 + len(self.sample_schedule.taken(
                step + 1, pace, sample_cost, validation_cost * len(self.validation_steps(self.sample_schedule.start + 1))))
        return len(validations) * validation_cost + samples * sample_cost

    def validation_steps(self, first: int) -> list[int]:
        """The steps from ``first`` on that validate: every save and the last step."""
        if self.validation is None:
            return []
        every, total = self.config.save_every, self.total_steps
        return [s for s in range(first, total + 1) if (every and s % every == 0) or s == total]

    def check_costs(self) -> tuple[float, float, float]:
        """(seconds per training step, per sample pass, per validation pass): the passes as the
        last ones took, or before any, their UNet forwards at the training step's pace."""
        pace = sum(s for s, _, _ in self.done) / max(1, len(self.done))
        images = sum(i for _, i, _ in self.done) / max(1, len(self.done))
        measured = {k: sum(v) / len(v) for k, v in self.pass_seconds.items() if v}
        sample = measured.get("sampling") or estimate_pass_seconds(
            pace, images, 2 * len(self.prompts) * self.config.sample_steps)
        validation = 0.0
        if self.validation is not None:
            validation = measured.get("validating") or estimate_pass_seconds(
                pace, images, len(self.validation.latents) * len(self.validation.timesteps))
        return pace, sample, validation

    def checks_and_saves(self) -> bool:
        """Validation, samples and a checkpoint when due; True when the run is to stop here."""
        config, step, total = self.config, self.step, self.total_steps
        saving = bool(config.save_every) and step % config.save_every == 0 and step < total
        if saving or step == total:
            self.validate()  # first: its measured cost tells the sample schedule what is left
        if self.sampling and self.samples_here():
            self.take_samples()  # the last step's samples come after the final LoRA is safe
        stopping = agreed_stop(self.accelerator, self.stop) and step < total
        if saving or stopping:
            if self.main:
                self.last_lora = self.writer.save(step, self.optimizer, self.lr_scheduler)
            self.guard.remember(step)
        return stopping

    def samples_here(self) -> bool:
        """Whether a sample pass is due at this step and the schedule takes it; the first one it
        skips says why."""
        schedule, step = self.sample_schedule, self.step
        if not self.main or not schedule.due(step):
            return False
        pace, sample_cost, validation_cost = self.check_costs()
        validations = len(self.validation_steps(schedule.start + 1))
        if step in schedule.taken(step, pace, sample_cost, validation_cost * validations):
            return True
        schedule.thinned += 1
        if schedule.thinned == 1:
            self.bus.emit(WarningRaised(schedule.why(step, sample_cost, pace)))
        return False

    def validate(self) -> None:
        """The validation loss at this step, and a warning the first time it says over-training."""
        if self.validation is None or not self.main:
            return
        tic = time.perf_counter()
        self.bus.emit(PhaseProgress("validating", 0, 1))
        model = self.accelerator.unwrap_model(self.unet)  # no collectives: only rank 0 validates
        model.eval()
        with self.accelerator.autocast(), eval_weights(self.optimizer), in_use(self.ema):
            denoiser = Denoiser(self.family, model, self.condition, self.noise_scheduler)
            loss = self.validation.loss(denoiser, self.device, self.weight_dtype, self.check_batch())
        model.train()
        self.history.append((self.step, loss))
        self.optional("validation.json", lambda: atomic.write_json(
            self.run_dir / "validation.json", {"held_out": self.validation.held_out, "history": self.history}))
        self.bus.emit(PhaseProgress("validating", 1, 1))
        self.pass_seconds["validating"].append(time.perf_counter() - tic)
        self.bus.emit(ValidationLogged(self.step, loss, len(self.validation.latents), self.validation.held_out))
        best = overtraining_step(self.history)
        if best is not None and not self.warned_overtraining:
            self.warned_overtraining = True
            self.bus.emit(WarningRaised(
                f"validation loss rose after step {best}: the LoRA is over-training; "
                f"{self.name}-step{best:06d}.safetensors is likely the better file"))

    def take_samples(self) -> None:
        """The sample images at this step, all prompts in as few pipeline calls as memory allows."""
        if not self.main:
            return
        tic = time.perf_counter()
        config, prompts = self.config, self.prompts
        self.bus.emit(PhaseProgress("sampling", 0, len(prompts)))
        modules = {**self.comps.modules, **{n: self.accelerator.unwrap_model(m) for n, m in self.trained.items()}}
        pipe = build_pipeline(self.family, modules, self.comps.tokenizers, self.noise_scheduler.config)
        pipe.unet.eval()
        with self.accelerator.autocast(), eval_weights(self.optimizer), in_use(self.ema):
            images = render_batch(pipe, prompts, [config.seed + n for n in range(len(prompts))], config.resolution,
                                  config.resolution, config.sample_steps, micro_batch=self.check_batch())
        for n, image in enumerate(images):
            path = self.run_dir / "samples" / f"step{self.step:06d}-{n}.png"

            def write(image=image, path=path) -> None:
                faults.maybe_disk_full("sample")
                save_png(image, path)

            if self.optional(f"sample {path.name}", write):
                self.bus.emit(SampleSaved(str(path), self.step))
            self.bus.emit(PhaseProgress("sampling", n + 1, len(prompts)))
        pipe.unet.train()
        seconds = time.perf_counter() - tic
        self.pass_seconds["sampling"].append(seconds)
        if self.step < self.total_steps:
            self.sample_schedule.spent += seconds

    def check_batch(self) -> int:
        """Rows a validation or sample pass may put through the UNet at once on a GPU: as many
        as a training pass holds now (with gradients, so a pass without them fits)."""
        import math

        return math.ceil(self.config.batch_size / self.accelerator.num_processes / self.split.split)

    # -- the end ---------------------------------------------------------------------------------

    def stopped(self) -> RunResult:
        """A stop request, agreed by every process, after the checkpoint of this step."""
        step = self.step
        self.accelerator.wait_for_everyone()
        if not self.main:
            return RunResult("stopped", self.run_dir, None, step, self.total_steps, self.smoothed)
        self._record_speed()
        self.bus.emit(RunStopped(step, str(ckpt.latest_checkpoint(self.run_dir / "checkpoints"))))
        self.state.update(status="stopped", step=step, message=self.stop.reason)
        self.optional("the run card", lambda: self.writer.card(step, self.smoothed, "stopped", healed=self.healed))
        return RunResult("stopped", self.run_dir, self.last_lora, step, self.total_steps, self.smoothed)

    def finish(self) -> RunResult:
        """The final LoRA in both formats, the recommendation and the run card."""
        step = self.step
        if not self.main:
            self.accelerator.wait_for_everyone()
            return RunResult("finished", self.run_dir, None, step, self.total_steps, self.smoothed)
        final = self.writer.final(step)  # first: what the run is for, before anything optional
        if self.sampling:
            self.take_samples()
        advice = recommend(self.history, self.validation.held_out) if self.validation else None
        recommended = None
        if advice is not None:
            path = final if advice.step == step else self.run_dir / f"{self.name}-step{advice.step:06d}.safetensors"
            recommended = {"step": advice.step, "path": str(path), "strength": advice.strength,
                           "reason": advice.reason, "overtrained": advice.overtrained}
            self.bus.emit(RecommendationMade(**recommended))
        self.optional("the run card", lambda: self.writer.card(
            step, self.smoothed, "finished", recommended, self.history, self.healed))
        self.state.update(status="finished", step=step, lora=str(final), final_loss=self.smoothed,
                          finished_at=time.time(), recommendation=recommended, healed=self.healed)
        self.bus.emit(RunFinished(str(final), step))
        # after "done": the first run of a setting measures the model's FLOPs for it (seconds)
        self._record_speed()
        self.accelerator.wait_for_everyone()
        return RunResult("finished", self.run_dir, final, step, self.total_steps, self.smoothed)

    def _record_speed(self) -> None:
        """Keep the FLOP/s this run reached on its GPU or CPU, for the wizard's time estimates
        (planning/speed.py), from the last steps: (seconds, images, passes) of this process,
        which has the most rows of a batch split across GPUs, with short batches counted as they are.
        A CPU is kept under its model name and thread count, the tiny model's speed apart."""
        import torch

        device = speed.gpu_name(self.device) or speed.cpu_key(torch.get_num_threads(), self.spec.kind == "tiny")
        if len(self.done) < 10:
            return
        from loratui.engine.planning.footprint import memory_model

        try:
            unet = memory_model(self.config, self.spec, self.precision).unet
        except Exception:  # a model the measurement does not understand: nothing to record
            return
        flops = sum(unet.flops_per_image * images + unet.flops_fixed * passes for _, images, passes in self.done)
        speed.record_speed(device, self.precision, flops / sum(seconds for seconds, _, _ in self.done))
        if not self.resume and self.setup_seconds is not None:  # a resume restores a checkpoint too
            speed.record_setup(device, self.config.base_model, self.setup_seconds)


def _free_memory(device) -> None:
    import gc

    gc.collect()
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        torch.cuda.empty_cache()
