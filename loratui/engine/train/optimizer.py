"""The optimizer a run trains its LoRA with, its learning rates and LR schedule, and the
accelerator (device and precision) it runs on.

Each optimizer comes from the library the field uses, with the settings LoRA trainers ship:

- ``adamw`` / ``adamw8bit``: torch's fused AdamW; bitsandbytes' 8-bit AdamW on CUDA.
- ``prodigy``: d-adaptation (prodigyopt) finds the step size itself, so its lr is 1.0 and
  ``d_coef`` scales it; bias correction and the warm-up safeguard on, as kohya guides set them.
- ``adafactor``: transformers' Adafactor at a fixed lr (no relative step, no parameter scaling).
- ``lion``: sign updates (lion-pytorch; bitsandbytes' 8-bit Lion on CUDA).
- ``schedulefree``: schedule-free AdamW; it replaces the LR schedule (constant, with its own
  warm-up), and its weights for use are an average: ``eval_weights`` switches to them around
  validation, sampling and saving.
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Any, Iterator

from loratui.engine.config import RunConfig
from loratui.engine.events import EventBus, WarningRaised
from loratui.engine.train.kept_weights import restored

OPTIMIZERS = ("adamw", "adamw8bit", "prodigy", "adafactor", "lion", "schedulefree")
WEIGHT_DECAY = 1e-2
PRODIGY_LR = 1.0  # Prodigy's lr multiplies the step size it estimates: 1 is the method as published


def make_accelerator(config: RunConfig, bus: EventBus):
    """The accelerate ``Accelerator`` for this machine, and the dtype the frozen base runs in."""
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


def use_8bit(config: RunConfig, device) -> bool:
    """8-bit AdamW when asked for (or "auto") on CUDA with bitsandbytes installed."""
    wanted = config.optimizer == "adamw8bit" or (config.optimizer == "auto" and device.type == "cuda")
    return wanted and _bitsandbytes(device)


def _bitsandbytes(device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def learning_rates(config: RunConfig) -> tuple[float, float]:
    """(UNet lr, text-encoder lr) the optimizer's parameter groups start at."""
    if config.optimizer == "prodigy":
        return PRODIGY_LR, PRODIGY_LR
    unet = config.unet_lr or config.lr
    return unet, config.text_encoder_lr or unet / 2


def lr_note(config: RunConfig) -> str:
    """Why the optimizer changed the learning rate or its schedule ("" when it did not): shown
    beside the schedule's derivation and on the run card."""
    if config.optimizer == "prodigy":
        return (f"optimizer prodigy: lr {PRODIGY_LR:g} for every component, not {config.unet_lr or config.lr:g} "
                f"(Prodigy estimates its own step size; d_coef {config.d_coef:g} scales it)")
    if config.optimizer == "schedulefree":
        return "optimizer schedulefree: constant lr, warm-up inside the optimizer (it needs no LR schedule)"
    if config.optimizer == "adafactor":
        return "optimizer adafactor: constant lr (relative step off)"
    return ""


def make_optimizer(config: RunConfig, groups: list[dict], device, bus: EventBus, total_steps: int = 0):
    """The optimizer over ``groups`` and its name for the metadata (kohya's ``ss_optimizer``)."""
    import torch

    choice = config.optimizer
    if choice == "prodigy":
        from prodigyopt import Prodigy

        args = dict(d_coef=config.d_coef, decouple=True, weight_decay=WEIGHT_DECAY, use_bias_correction=True,
                    safeguard_warmup=True)
        return Prodigy(groups, lr=PRODIGY_LR, **args), _named("prodigyopt.Prodigy", args)
    if choice == "adafactor":
        from transformers.optimization import Adafactor

        args = dict(relative_step=False, scale_parameter=False, warmup_init=False)
        return Adafactor(groups, lr=groups[0]["lr"], **args), _named("transformers.optimization.Adafactor", args)
    if choice == "schedulefree":
        import schedulefree

        args = dict(warmup_steps=_warmup(config, total_steps), weight_decay=WEIGHT_DECAY)
        optimizer = schedulefree.AdamWScheduleFree(groups, lr=groups[0]["lr"], **args)
        optimizer.train()
        return optimizer, _named("schedulefree.AdamWScheduleFree", args)
    if choice == "lion":
        if _bitsandbytes(device):
            with contextlib.suppress(ImportError):
                import bitsandbytes as bnb

                return bnb.optim.Lion8bit(groups, weight_decay=WEIGHT_DECAY), "bitsandbytes.optim.Lion8bit"
        from lion_pytorch import Lion

        return Lion(groups, weight_decay=WEIGHT_DECAY), "lion_pytorch.Lion"
    if use_8bit(config, device):
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, weight_decay=WEIGHT_DECAY), "bitsandbytes.optim.AdamW8bit"
        except ImportError as exc:  # installed but broken (e.g. built for another CUDA)
            bus.emit(WarningRaised(f"bitsandbytes does not load ({exc}); using AdamW"))
    elif choice == "adamw8bit":
        bus.emit(WarningRaised(
            "8-bit AdamW needs a CUDA GPU; using AdamW" if device.type != "cuda"
            else "bitsandbytes is not installed; using AdamW (pip install bitsandbytes)"))
    # one fused kernel for all LoRA tensors: on the CPU too, 7x faster than the default (foreach)
    # on the tiny model's 160 small tensors (benchmarks/RESULTS.md)
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(groups, weight_decay=WEIGHT_DECAY, **fused), "torch.optim.AdamW"


def _named(cls: str, args: dict[str, Any]) -> str:
    """kohya's way of naming an optimizer with its arguments: ``Class(key=value,…)``."""
    return f"{cls}({','.join(f'{k}={v}' for k, v in args.items())})"


def _warmup(config: RunConfig, total_steps: int) -> int:
    """The warm-up steps: as set, else 5% of the run for any schedule but constant."""
    if config.warmup_steps is not None:
        return config.warmup_steps
    constant = config.lr_scheduler == "constant" and config.optimizer not in ("schedulefree", "adafactor")
    return 0 if constant else round(0.05 * total_steps)


def make_lr_schedule(config: RunConfig, optimizer, total_steps: int):
    """The LR schedule; warm-up defaults to 5% of the steps for any schedule but constant.
    Schedule-free AdamW and Adafactor train at a constant lr (schedule-free warms up itself)."""
    from diffusers.optimization import get_scheduler

    if config.optimizer == "schedulefree":
        return get_scheduler("constant", optimizer)
    name = "constant_with_warmup" if config.optimizer == "adafactor" else config.lr_scheduler
    warmup = _warmup(config, total_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def is_schedule_free(optimizer: Any) -> bool:
    """True for an optimizer with train/eval weights (schedule-free), wrapped by accelerate or not."""
    groups = getattr(optimizer, "param_groups", None) or []
    return bool(groups) and "train_mode" in groups[0]


@contextlib.contextmanager
def eval_weights(optimizer: Any) -> Iterator[None]:
    """The weights to use (not the ones being trained) inside the block; a no-op for every
    optimizer but schedule-free, whose usable weights are the average it keeps."""
    if optimizer is None or not is_schedule_free(optimizer):
        yield
        return
    # eval() then train() moves the weights there and back through floating-point lerps, which do
    # not return them bit for bit: the trained weights are put back exactly after the block
    with restored(p for group in optimizer.param_groups for p in group["params"]):
        optimizer.eval()
        try:
            yield
        finally:
            optimizer.train()
