"""What each preset would make of a dataset before anything trains: its schedule, the base
model's family, GPU memory from the measured model, and a time counted from FLOPs. The wizard's
preset cards show these figures; the engine owns them so every front end shows the same."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PresetPlan:
    """The numbers one preset gives the dataset (or why it cannot be planned)."""

    preset: str
    total_steps: int = 0
    epochs: int = 0
    repeats: int = 0
    rank: int = 0
    lr: float = 0.0
    batch_size: int = 0
    resolution: int = 0
    explain: str = ""
    error: str = ""
    images_per_step: float = 0.0  # on average: a bucket's last batch may be short
    family: str = ""  # the base model's family as detected ("SDXL"), for the user to confirm
    # UNet forwards of one image the run's sample and validation passes make in all, and whether
    # a training pass recomputes its forward (checkpointing): they are counted in its time
    check_forwards: int = 0
    checkpointing: bool = False
    # of those, the sample passes at saves that the default schedule may skip on a CPU (planned
    # for a CPU only: validate/schedule.py)
    thinnable_forwards: int = 0


@dataclass(frozen=True)
class Hardware:
    gpu: str = ""  # name, empty without CUDA
    memory: int = 0  # bytes in all
    free: int = 0  # bytes free when looked at
    precision: str = "fp16"  # what --mixed-precision auto picks on it
    threads: int = 0  # the CPU threads torch runs on (0: not looked at yet)


@dataclass(frozen=True)
class MemoryNeed:
    """The measured GPU memory a preset's run needs, against what this GPU has free."""

    need: int  # bytes one pass of the plan's batch takes
    usable: int  # of the free memory, what a run plans with (0 without a GPU)
    fits: int  # the largest batch that fits ``usable`` (0 without a GPU)
    flops_per_image: int = 0  # the UNet's work per image of a training step
    flops_fixed: int = 0  # and per pass, whatever its batch


def plan_presets(build: Callable[[dict], Any], hw: Hardware | None = None) -> list[PresetPlan]:
    """Plan the run each preset would make of the dataset; ``build(overrides)`` gives the run
    config with the user's settings (the wizard's state, or the CLI's flags).

    A batch size of "auto" is planned with what it would pick on ``hw`` (the preset's batch
    without a GPU), as the run will when it starts.
    """
    from loratui.engine.errors import LoratuiError
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.planning.presets import PRESETS

    plans = []
    for name in PRESETS:
        try:
            config = build({"preset": name})
            if config.batch_size == "auto":
                config = config.model_copy(update={"batch_size": _auto_batch(config, hw or Hardware())})
            plan = plan_run(config)
        except LoratuiError as exc:
            plans.append(PresetPlan(name, error=exc.message))
            continue
        s = plan.schedule
        per_batch = sum(plan.batches.bucket_views()) / plan.batches.batches_per_epoch
        plans.append(PresetPlan(name, s.total_steps, s.epochs, s.repeats, config.rank, config.lr,
                                config.batch_size, config.resolution, s.explain,
                                images_per_step=per_batch * config.grad_accum, family=_family_label(config),
                                check_forwards=_check_forwards(config, plan),
                                thinnable_forwards=_thinnable_forwards(config, plan) if hw and not hw.gpu else 0,
                                checkpointing=bool(config.gradient_checkpointing)))
    return plans


def _check_forwards(config: Any, plan: Any) -> int:
    """One-image UNet forwards of the run's sample passes (steps × prompts × 2 for guidance)
    and validation passes (each image at each fixed timestep), as the loop schedules them."""
    from loratui.engine.validate.validation import VALIDATION_TIMESTEPS

    total = plan.schedule.total_steps

    def passes(interval: int) -> int:  # at every multiple of ``interval`` and at the end
        return total // interval + (1 if total % interval else 0) if interval > 0 else 1

    forwards = 0
    if config.sample_interval > 0:
        forwards += passes(config.sample_interval) * config.sample_steps * _prompt_count(config) * 2
    if config.validation != "off":
        images = len(plan.validation_items) or min(8, len(plan.items))
        forwards += passes(config.save_every or 0) * images * len(VALIDATION_TIMESTEPS)
    return forwards


def _thinnable_forwards(config: Any, plan: Any) -> int:
    """The forwards of the sample passes before the last step, when the default schedule holds."""
    total, interval = plan.schedule.total_steps, config.sample_interval
    if config.sample_every is not None or interval <= 0:
        return 0
    return ((total - 1) // interval) * config.sample_steps * _prompt_count(config) * 2


def _prompt_count(config: Any) -> int:
    """The prompts of a sample pass: the user's, the preset's around a trigger word, or a caption."""
    from loratui.engine.planning.presets import get_preset

    return max(1, len(config.sample_prompts) or (len(get_preset(config.preset).sample_prompts) if config.trigger else 1))


def _family_label(config: Any) -> str:
    """"SDXL", "SD-1.5"…: what loratui takes the base model for (a header read at most)."""
    from loratui.engine.errors import LoratuiError
    from loratui.engine.families import FAMILIES
    from loratui.engine.families.models import resolve_model

    try:
        family = FAMILIES.get(resolve_model(config.base_model, allow_pickle=True).family)
    except LoratuiError:
        return ""
    return family.label if family else ""


def _auto_batch(config: Any, hw: Hardware) -> int:
    from loratui.engine.planning.memory_plan import plan_memory, planned_batch
    from loratui.engine.families.models import resolve_model

    try:
        spec = resolve_model(config.base_model, config.allow_pickle)
        return plan_memory(config, spec, hw.free if hw.gpu else None, hw.precision, "adamw").batch_size
    except Exception:  # no measurable model (yet): the run decides when it starts
        return planned_batch(config)


def measure_needs(build: Callable[[dict], Any], plans: list[PresetPlan], hw: Hardware
                  ) -> dict[str, MemoryNeed | None]:
    """Each plan's GPU memory from the measured model (a second or two per new model); None
    for a plan whose model cannot be measured."""
    from loratui.engine.planning.footprint import memory_model
    from loratui.engine.planning.memory_plan import budget_of
    from loratui.engine.families.models import resolve_model

    needs: dict[str, MemoryNeed | None] = {}
    for plan in plans:
        if plan.error:
            continue
        try:
            config = build({"preset": plan.preset, "batch_size": plan.batch_size})
            spec = resolve_model(config.base_model, config.allow_pickle)
            model = memory_model(config, spec, hw.precision, "adamw")
        except Exception:  # a bad path, or a model the measurement does not understand: no figure
            needs[plan.preset] = None
            continue
        usable = budget_of(hw.free) if hw.gpu else 0
        fits = model.largest_batch(usable, max(plan.batch_size, 8)) if hw.gpu else 0
        needs[plan.preset] = MemoryNeed(model.estimate(plan.batch_size).total, usable, fits,
                                        model.unet.flops_per_image, model.unet.flops_fixed)
    return needs


def detect_hardware() -> Hardware:
    """The GPU, if torch sees one, and the CPU threads (torch imported here, in a worker: it
    takes a second)."""
    try:
        import torch

        threads = torch.get_num_threads()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info(0)
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            return Hardware(props.name, int(total), int(free), precision, threads)
        return Hardware(threads=threads)
    except Exception:
        pass
    return Hardware()


MEASURING = MemoryNeed(-1, 0, 0)  # the card's figure while the measurement runs


def estimate(plan: PresetPlan, hw: Hardware, base_model: str, need: MemoryNeed | None) -> str:
    """Time and GPU memory for ``plan`` on ``hw``, both from the measured model; ``need`` is
    MEASURING until measured, None where it cannot be. The time is the plan's FLOPs (training
    steps, sample and validation passes) over the speed this GPU or CPU reached in earlier runs,
    or "est." from a GPU's data-sheet peak or a conservative CPU figure, plus the time earlier
    runs of this base model here took to their first step."""
    if not hw.gpu:
        if need is MEASURING:
            return "timing…"
        return f"{_duration(need, plan, hw, base_model)} · no GPU" if need else "time n/a · no GPU"
    memory = ("measuring memory…" if need is MEASURING else "memory: n/a" if need is None
              else f"needs ≈ {need.need / 2**30:.1f} GiB")
    if need is None or need is MEASURING:
        return memory
    text = f"{_duration(need, plan, hw, base_model)} · {need.need / 2**30:.1f} of {hw.free / 2**30:.0f} GiB free"
    if need.need > need.usable:
        text += f" (tight: {need.fits} per pass)" if need.fits else " (too big: see Advanced)"
    return text


def run_flops(need: MemoryNeed, plan: PresetPlan) -> float:
    """The run's UNet work: its training passes, and the forwards of its sample and validation
    passes (a training pass of a frozen model with LoRA is about two forwards, three when
    checkpointing recomputes one; loading and caching are left out). On a CPU the default
    schedule spends on the sample passes it may skip at most what its share of the run leaves."""
    from loratui.engine.validate.schedule import CHECK_SHARE

    training = (need.flops_fixed + need.flops_per_image * plan.images_per_step) * plan.total_steps
    forward = need.flops_per_image / (3 if plan.checkpointing else 2)
    checks = forward * plan.check_forwards
    if plan.thinnable_forwards:
        kept = forward * (plan.check_forwards - plan.thinnable_forwards)
        checks = max(kept, min(checks, CHECK_SHARE / (1 - CHECK_SHARE) * training))
    return training + checks


def _duration(need: MemoryNeed, plan: PresetPlan, hw: Hardware, base_model: str) -> str:
    from loratui.engine.planning.speed import cpu_key, measured_setup, run_time

    from loratui.engine.families.tiny import TINY_NAMES

    tiny = base_model.strip() in TINY_NAMES
    device = hw.gpu or cpu_key(run_threads(tiny), tiny)
    time = run_time(run_flops(need, plan), 1, device, hw.precision if hw.gpu else "fp32")
    if time is None:
        return "time n/a"
    seconds = time.seconds + (measured_setup(device, base_model) or 0.0)  # loading, caching: measured
    return f"~{_length(seconds)} on this {'GPU' if hw.gpu else 'CPU'}" + ("" if time.measured else " (est.)")


def _length(seconds: float) -> str:
    """"~15 s" under a minute (up to the next 5 s: what the count leaves out, as starting the
    process and saving, only adds), then minutes, and hours past 90 minutes."""
    if seconds < 55:
        return f"{max(5, 5 * math.ceil(seconds / 5))} s"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def run_threads(tiny: bool) -> int:
    """The CPU threads a run started now would compute with (train/threads.py)."""
    import os

    from loratui.engine.train.threads import choose_threads, usable_cores

    return choose_threads(usable_cores(), os.getloadavg()[0], tiny)
