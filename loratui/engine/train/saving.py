"""What a run writes as it goes: step LoRA files with resume checkpoints, the final LoRA in
both formats, and the run card; and reading the newest checkpoint back on ``--resume``.

A full or read-only disk during any of these becomes one clear, resumable error.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratui.engine.config import RunConfig
from loratui.engine.errors import DiskFullError, RunError
from loratui.engine.events import CheckpointSaved, EventBus, WarningRaised
from loratui.engine.export import lora_files as export
from loratui.engine.export.metadata import run_metadata
from loratui.engine.export.runcard import progress_strip, training_method, write_run_card
from loratui.engine.families.models import Components
from loratui.engine.planning.run_plan import RunPlan
from loratui.engine.runs.reserve import SpaceReserve
from loratui.engine.train import checkpoint as ckpt
from loratui.engine.train import lora
from loratui.engine.train.ema import WeightAverage
from loratui.engine.train.optimizer import eval_weights

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def guard_disk(run_dir: Path, step: int, write):
    """Run ``write``; a full or read-only disk becomes one clear, resumable error (and the run's
    space reserve is given back, so its state and last events can still be written)."""
    try:
        return write()
    except OSError as exc:
        if exc.errno not in DISK_ERRORS:
            raise
        SpaceReserve(run_dir).release()
        what = f"save step {step}" if step else "write the run's files"
        raise DiskFullError(
            f"{run_dir}: could not {what}: {exc.strerror or exc}",
            "free disk space or fix the folder's permissions, then loratui train --resume " + str(run_dir),
        ) from None


@dataclass
class RunWriter:
    """Writes one run's files; the trained models are read at each write, by component name."""

    run_dir: Path
    config: RunConfig
    plan: RunPlan
    comps: Components
    accelerator: Any
    trained: dict  # component name -> model with adapters ("unet", "text_encoder"…)
    total_steps: int
    started_at: float
    optimizer_name: str
    bus: EventBus
    optimizer: Any = None  # schedule-free AdamW's usable weights are its average: see eval_weights
    lr_note: str = ""  # why the optimizer set the learning rate (optimizer.lr_note)
    parent: dict | None = None  # the LoRA this run started from (--init-lora): name, sha256
    ema: WeightAverage | None = None  # --ema keep|final: the average of the weights (train/ema.py)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def adapters(self) -> dict[str, dict]:
        """Each trained component's adapter weights (peft keys), by component name."""
        return {n: lora.lora_state_dict(self.accelerator.unwrap_model(m)) for n, m in self.trained.items()}

    def save(self, step: int, optimizer, lr_scheduler) -> Path:
        """A step LoRA file (kohya format) and a resume checkpoint."""
        return guard_disk(self.run_dir, step, lambda: self._save(step, optimizer, lr_scheduler))

    def final(self, step: int) -> Path:
        """The finished LoRA: ``RUN_DIR/NAME.safetensors`` (kohya) and ``diffusers/``; with
        ``--ema keep`` the average beside it (``NAME-ema``), with ``final`` the raw weights (``NAME-raw``)."""
        return guard_disk(self.run_dir, step, lambda: self._final(step))

    def lora_file(self, stem: str, step: int, fault_point: str = "", weights: str = "use") -> tuple[Path, dict]:
        """``RUN_DIR/stem.safetensors``: the adapters now, in kohya format with the run's metadata;
        the path and the adapter weights (peft keys, by component). ``weights``: "use" (the LoRA to
        use: the EMA with ``--ema final``), "ema" or "raw" (the weights as trained)."""
        average = self.ema is not None and (weights == "ema" or weights == "use" and self.ema.mode == "final")
        chosen = self.ema.applied() if average and self.ema else contextlib.nullcontext()
        with eval_weights(self.optimizer), chosen:  # copies: on the CPU the state dict shares the weights' memory
            adapters = {n: {k: v.clone() for k, v in state.items()} for n, state in self.adapters().items()}
        holds = "ema" if average else "raw"
        meta = run_metadata(self.config, self.plan, self.comps, step, self.total_steps, self.started_at, stem,
                            self.optimizer_name, self.parent, weights=holds)
        tensors = export.to_kohya(self.comps.family, adapters, self.config.lora_alpha, self.config.save_precision)
        path = export.save_kohya(self.run_dir / f"{stem}.safetensors", tensors, meta, fault_point=fault_point)
        return path, adapters

    def _save(self, step: int, optimizer, lr_scheduler) -> Path:
        path, _ = self.lora_file(f"{self.name}-step{step:06d}", step)
        # the weights being trained (for schedule-free, not the averaged ones the LoRA file holds)
        flat = {f"{component}.{k}": v for component, state in self.adapters().items() for k, v in state.items()}
        scaler = self.accelerator.scaler.state_dict() if getattr(self.accelerator, "scaler", None) else None
        ckpt.save_checkpoint(
            self.run_dir / "checkpoints",
            ckpt.TrainerState(
                step, step * self.config.grad_accum, flat, optimizer.state_dict(), lr_scheduler.state_dict(),
                scaler, {"total_steps": self.total_steps, "seed": self.config.seed,
                         **({"parent": self.parent} if self.parent else {})},
                self.ema.state_dict() if self.ema else None,
            ),
            self.config.keep_checkpoints,
        )
        self.bus.emit(CheckpointSaved(str(path), step))
        return path

    def _final(self, step: int) -> Path:
        final, adapters = self.lora_file(self.name, step, fault_point="export")
        metas = {n: lora.adapter_metadata(self.accelerator.unwrap_model(m)) for n, m in self.trained.items()}
        export.save_diffusers(self.run_dir / "diffusers", self.comps.family, adapters, metas,
                              self.config.save_precision)
        if self.config.ema == "keep":
            self.lora_file(f"{self.name}-ema", step, weights="ema")
        elif self.config.ema == "final":
            self.lora_file(f"{self.name}-raw", step, weights="raw")
        return final

    def restore(self, optimizer, lr_scheduler) -> int:
        """Load the newest intact checkpoint; the step it was saved at (0 when there is none)."""
        saved, note = ckpt.load_latest(self.run_dir / "checkpoints")
        if note:  # latest.json was lost or names a deleted folder: say which checkpoint we took
            self.bus.emit(WarningRaised(note))
        if saved is None:
            # stopped before its first save: every draw derives from the seed, so starting over
            # from step 0 gives exactly the run that was lost
            return 0
        by_component: dict[str, dict] = {}
        for key, value in saved.adapters.items():
            component, _, rest = key.partition(".")
            by_component.setdefault(component, {})[rest] = value
        for component, model in self.trained.items():
            if component in by_component:
                lora.load_lora_state_dict(self.accelerator.unwrap_model(model), by_component[component])
        optimizer.load_state_dict(saved.optimizer)
        lr_scheduler.load_state_dict(saved.scheduler)
        if saved.scaler is not None and getattr(self.accelerator, "scaler", None):
            self.accelerator.scaler.load_state_dict(saved.scaler)
        self.parent = (saved.extra or {}).get("parent") or self.parent
        if self.ema is not None:
            self._restore_ema(saved)
        return saved.step

    def _restore_ema(self, saved: ckpt.TrainerState) -> None:
        """The checkpoint's EMA; one saved without (a run started before ``--ema`` was set)
        starts the average again at the restored weights, and says so."""
        assert self.ema is not None
        if saved.ema is None:
            self.ema.reset()
            self.bus.emit(WarningRaised(f"the checkpoint of step {saved.step} holds no EMA: "
                                        f"the average starts again from step {saved.step}'s weights"))
            return
        try:
            self.ema.load_state_dict(saved.ema)
        except ValueError as exc:
            raise RunError(f"{self.run_dir / 'checkpoints'}: {exc}",
                           "resume with the settings the run started with (config.toml)") from None

    def card(self, step: int, loss: float | None, status: str, recommended: dict | None = None,
             history: list | None = None, healed: list | None = None) -> None:
        """README.md in the run folder: what was trained and how to use it."""
        config, plan, comps = self.config, self.plan, self.comps
        strip = progress_strip(self.run_dir) if status == "finished" else None
        write_run_card(
            self.run_dir,
            {
                "progress": "samples/progress-0.png" if strip else None,
                "healed": healed or [],
                "recommendation": recommended,
                "run_dir": str(self.run_dir),
                "validation": history or [],
                "held_out": [i.record.rel for i in plan.validation_items],
                "name": self.name,
                "status": status,
                "trigger": config.trigger,
                "preset": config.preset,
                "base_model": comps.spec.name if comps.spec.kind != "hub" else comps.spec.location,
                "family": comps.family.label,
                "pipeline_class": comps.family.pipeline_class,
                "images": len(plan.train_items),
                "regularisation": regularisation_note(config, plan),
                "masked": (f"{sum(1 for i in plan.train_items if i.mask)} of {len(plan.train_items)} images "
                           "have a mask; the loss is taken inside it") if plan.masked else None,
                "schedule": plan.schedule.explain,
                "rank": config.rank,
                "alpha": config.lora_alpha,
                "lr": config.lr,
                "lr_scheduler": config.lr_scheduler,
                **training_method(config, self.optimizer_name, self.lr_note, self.parent),
                "batch_size": config.batch_size,
                "resolution": config.resolution,
                "seed": config.seed,
                "step": step,
                "total_steps": self.total_steps,
                "final_loss": loss,
            },
        )


def regularisation_note(config: RunConfig, plan: RunPlan) -> str | None:
    """The run card's line on the class images: how many, from where, their weight and caption."""
    if not plan.reg_items:
        return None
    views = sum(i.repeats for i in plan.reg_items)
    caption = f"; captions without their own: “{config.class_prompt}”" if config.class_prompt else ""
    return (f"{len(plan.reg_items)} class images from `{config.reg_folder}` ({views} views per epoch, as many as "
            f"the training views), prior loss weight {config.prior_loss_weight:g}{caption}")
