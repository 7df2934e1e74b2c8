"""Fitting a run into the GPU's free memory before the first step, from the measured model.

``--batch-size auto`` takes the largest batch (up to ``AUTO_BATCH_LIMIT`` per GPU) whose
estimate fits. A set batch that does not fit is split into passes (gradient accumulation
inside the step, the effective batch unchanged) before it can run out of memory; when even one
image does not fit, gradient checkpointing is turned on. Each decision is said in a warning
with the figures, with what gradient checkpointing and 8-bit AdamW would save. The
out-of-memory handler in the loop stays the last line of defence: the model counts tensors,
not the allocator's fragmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loratui.engine.planning.footprint import MemoryModel, memory_model
from loratui.engine.families.models import ModelSpec
from loratui.engine.planning.presets import get_preset

AUTO_BATCH_LIMIT = 8  # per GPU: past this the presets' learning rates are untested
HEADROOM = 0.9  # of the free memory, for the allocator's fragmentation and cuBLAS workspaces
RESERVE = 512 * 2**20  # bytes kept free besides


@dataclass(frozen=True)
class MemoryPlan:
    """What the run does to fit: its batch, passes per micro-batch, and checkpointing."""

    batch_size: int  # per optimizer micro-step, all GPUs together
    split: int  # passes each GPU's share of a micro-batch is cut into (1: at once)
    gradient_checkpointing: bool
    estimate: int  # bytes one pass needs on one GPU (0 when not measured)
    budget: int  # bytes the estimate was fitted into (0 without a GPU)
    messages: list[str] = field(default_factory=list)


def planned_batch(config: Any) -> int:
    """The batch to use where nothing is measured: the set one, or for "auto" the preset's."""
    return get_preset(config.preset).batch_size if config.batch_size == "auto" else config.batch_size


def budget_of(free: int) -> int:
    """The bytes of ``free`` GPU memory a run may plan to use."""
    return max(int(free * HEADROOM) - RESERVE, 0)


def plan_memory(
    config: Any, spec: ModelSpec, free: int | None, precision: str, optimizer: str, world: int = 1
) -> MemoryPlan:
    """Decide batch, split and checkpointing for ``config`` given ``free`` bytes on each GPU.

    ``free`` is None without a GPU: then "auto" is the preset's batch size and nothing is
    split (the CPU has no small memory to fit into).
    """
    auto = config.batch_size == "auto"
    checkpointing = config.gradient_checkpointing
    if free is None:
        batch = planned_batch(config)
        note = [f"batch size auto: no GPU, so the {config.preset} preset's batch of {batch}"] if auto else []
        return MemoryPlan(max(batch, world), 1, checkpointing, 0, 0, note)

    budget = budget_of(free)
    model = memory_model(config, spec, precision, optimizer)
    messages: list[str] = []
    if auto:
        per_gpu = model.largest_batch(budget, AUTO_BATCH_LIMIT)
        if not per_gpu and not checkpointing:
            model, checkpointing = _with_checkpointing(config, spec, precision, optimizer), True
            per_gpu = model.largest_batch(budget, AUTO_BATCH_LIMIT)
            messages.append("gradient checkpointing turned on: not even one image fits without it")
        per_gpu = max(per_gpu, 1)
        fit = model.estimate(per_gpu)
        messages.insert(0, (
            f"batch size auto: {per_gpu * world}{f' ({per_gpu} per GPU)' if world > 1 else ''}, "
            f"≈ {_gib(fit.total)} of {_gib(budget)} usable GPU memory"))
        if fit.total > budget:
            messages.append(_advice(model, precision, optimizer, budget, "even batch 1 may not fit"))
        return MemoryPlan(per_gpu * world, 1, checkpointing, fit.total, budget, messages)

    per_gpu = math.ceil(config.batch_size / world)
    whole = model.estimate(per_gpu).total
    if whole <= budget:
        return MemoryPlan(config.batch_size, 1, checkpointing, whole, budget)
    if model.estimate(1).total > budget and not checkpointing:
        model, checkpointing = _with_checkpointing(config, spec, precision, optimizer), True
        messages.append("gradient checkpointing turned on: not even one image fits without it")
    fits = max(model.largest_batch(budget, per_gpu), 1)
    split = 1
    while math.ceil(per_gpu / split) > fits:
        split *= 2  # powers of two, as the out-of-memory handler splits
    piece = math.ceil(per_gpu / split)
    estimate = model.estimate(piece).total
    if split > 1:
        tip = ""
        if not checkpointing:
            checkpointed = _with_checkpointing(config, spec, precision, optimizer).estimate(per_gpu).total
            if checkpointed <= budget:
                tip = f"; --gradient-checkpointing would fit it in one pass (≈ {_gib(checkpointed)}, ~30% more compute)"
        messages.insert(0, (
            f"batch {config.batch_size} needs ≈ {_gib(model.estimate(per_gpu).total)} of GPU memory and "
            f"{_gib(budget)} is usable: each batch runs as {split} passes of {piece} image(s), "
            f"the effective batch stays {config.batch_size}{tip}"))
    if estimate > budget:
        messages.append(_advice(model, precision, optimizer, budget, "even one image may not fit"))
    return MemoryPlan(config.batch_size, split, checkpointing, estimate, budget, messages)


def _with_checkpointing(config: Any, spec: ModelSpec, precision: str, optimizer: str) -> MemoryModel:
    return memory_model(config.model_copy(update={"gradient_checkpointing": True}), spec, precision, optimizer)


def _advice(model: MemoryModel, precision: str, optimizer: str, budget: int, lead: str) -> str:
    """What would make one image fit, with the measured saving of each remedy."""
    need = model.estimate(1)
    tips = []
    if optimizer != "adamw8bit":
        saved = model.trainable_params * (model.optimizer_state_bytes - 2)
        tips.append(f"8-bit AdamW saves {_mib(saved)} (pip install bitsandbytes)")
    if need.parts["vae"]:
        tips.append(f"--sample-every 0 frees the VAE's {_mib(need.parts['vae'])}")
    if precision == "fp32":
        tips.append("--mixed-precision bf16 or fp16 halves the weights and activations")
    tips.append("a lower --resolution shrinks the activations with the pixel count")
    return f"{lead} (≈ {_gib(need.total)} of {_gib(budget)} usable): " + "; ".join(tips)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def fit_to_device(config: Any, spec: ModelSpec, accelerator: Any, precision: str, optimizer: str, bus: Any):
    """``config`` with its batch and checkpointing fitted to the GPU, and the passes per batch.

    Every process decides from its own GPU and then all agree on the tightest answer, so the
    ranks of a data-parallel run never differ. The estimate must never stop a run: if it
    cannot be made, the run goes on as configured (the out-of-memory handler still guards it).
    """
    import torch

    from loratui.engine.events import WarningRaised

    device = accelerator.device
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    if free is None and config.batch_size != "auto":
        return config, 1
    world = accelerator.num_processes
    try:
        plan = plan_memory(config, spec, free, precision, optimizer, world)
    except Exception as exc:  # a model the measurement does not understand
        fallback = planned_batch(config)
        plan = MemoryPlan(max(fallback, world), 1, config.gradient_checkpointing, 0, 0, [
            f"no memory estimate for this model ({type(exc).__name__}: {exc}); batch {fallback}"])
    batch, split, checkpointing = plan.batch_size, plan.split, plan.gradient_checkpointing
    if world > 1:
        agreed = torch.tensor([-batch, split, int(checkpointing)], device=device)
        agreed = accelerator.reduce(agreed, "max")
        batch, split, checkpointing = -int(agreed[0]), int(agreed[1]), bool(agreed[2])
    for message in plan.messages:
        bus.emit(WarningRaised(message))
    return config.model_copy(update={"batch_size": batch, "gradient_checkpointing": checkpointing}), split
