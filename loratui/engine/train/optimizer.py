"""The optimizer a run trains its LoRA with, and the accelerator (device and precision) it runs on."""

from __future__ import annotations

import importlib.util

from loratui.engine.config import RunConfig
from loratui.engine.events import EventBus, WarningRaised


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
    return wanted and device.type == "cuda" and importlib.util.find_spec("bitsandbytes") is not None


def make_optimizer(config: RunConfig, groups: list[dict], device, bus: EventBus):
    """The optimizer over ``groups`` and its name for the metadata."""
    import torch

    if use_8bit(config, device):
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


def make_lr_schedule(config: RunConfig, optimizer, total_steps: int):
    """The LR schedule; warm-up defaults to 5% of the steps for any schedule but constant."""
    from diffusers.optimization import get_scheduler

    warmup = config.warmup_steps
    if warmup is None:
        warmup = 0 if config.lr_scheduler == "constant" else round(0.05 * total_steps)
    return get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
