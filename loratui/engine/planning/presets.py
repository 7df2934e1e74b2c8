"""Presets from the field, and the derivation of repeats, epochs and steps from a dataset.

The values follow common community practice for SD-1.5 LoRAs (kohya_ss guides, the
lora-scripts defaults): people need more capacity (rank 16) to hold a face; styles train
slower and longer at a lower learning rate; pets sit in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from loratui.engine.errors import ConfigError

# Far past any LoRA (presets aim at 1,200-2,000 steps), and the bound --steps already has:
# a typo such as --epochs 10000 --repeats 1000 must not quietly mean months of GPU time.
MAX_TOTAL_STEPS = 1_000_000


@dataclass(frozen=True)
class Preset:
    """What a preset sets; every value can be overridden by a flag or the config file."""

    name: str
    summary: str
    rank: int
    lr: float
    target_steps: int  # what the derivation aims for at the preset batch size
    epochs: int = 10  # ten epochs gives ten checkpoints to choose from
    batch_size: int = 4
    resolution: int = 512
    save_every: int = 100
    noise_offset: float = 0.0
    shuffle_tags: bool = False
    keep_tokens: int = 1
    sample_prompts: tuple[str, ...] = field(default_factory=tuple)

    @property
    def alpha(self) -> float:
        # alpha = rank keeps the LoRA scale at 1, which is what these learning rates assume.
        return float(self.rank)


PRESETS: dict[str, Preset] = {
    "person": Preset(
        name="person",
        summary="A face or a whole person: higher rank to hold likeness, 30-50 photos is ideal.",
        rank=16,
        lr=1.5e-4,
        target_steps=1500,
        sample_prompts=("a portrait photo of {trigger}, studio lighting",),
    ),
    "style": Preset(
        name="style",
        summary="An art style: lower rank and lr over more steps; tags shuffled so no subject sticks.",
        rank=8,
        lr=1e-4,
        target_steps=2000,
        noise_offset=0.05,
        shuffle_tags=True,
        sample_prompts=("a lighthouse on a cliff, {trigger} style",),
    ),
    "pet": Preset(
        name="pet",
        summary="A dog, cat or other animal: rank 8 with a brisk lr; 15-40 photos is plenty.",
        rank=8,
        lr=2e-4,
        target_steps=1200,
        sample_prompts=("a photo of {trigger} sitting on a beach",),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class Schedule:
    """How many steps a run takes and why (``explain`` is shown to the user)."""

    repeats: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    explain: str


def derive_schedule(
    bucket_views: list[int],
    batch_size: int,
    target_steps: int,
    epochs: int | None = None,
    repeats: int | None = None,
    steps: int | None = None,
    grad_accum: int = 1,
    folder_repeats: bool = False,
) -> Schedule:
    """Choose repeats and epochs so that the run gets about ``target_steps`` optimizer steps.

    ``bucket_views`` is, per aspect-ratio bucket, how many images (times their kohya folder
    repeats) fall in it; a batch never mixes buckets, so a bucket's last batch may be short.
    ``steps`` (total) or ``epochs``/``repeats`` given by the user win over the derivation.
    With kohya repeat folders the folder names already say the repeats, so only epochs vary.
    """
    images = sum(bucket_views)
    if images == 0:
        raise ValueError("no images to train on")

    def per_epoch(rep: int) -> int:
        micro = sum(math.ceil(v * rep / batch_size) for v in bucket_views)
        return max(1, math.ceil(micro / grad_accum))

    how = []
    if repeats is None:
        if folder_repeats or steps is not None:
            repeats = 1
            if folder_repeats:
                how.append("repeats from the kohya folder names")
        else:
            want_epochs = epochs or 10
            views_wanted = target_steps * batch_size * grad_accum / want_epochs
            repeats = min(100, max(1, round(views_wanted / images)))
            how.append(f"repeats {repeats} so {want_epochs} epochs reach about {target_steps} steps")
    else:
        how.append(f"repeats {repeats} as set")
    spe = per_epoch(repeats)
    if steps is not None:
        total = steps
        epochs = max(1, math.ceil(total / spe))
        how.append(f"{steps} steps as set")
    else:
        epochs = epochs or 10
        total = spe * epochs
    views = images * repeats
    per = (
        f"{images} images × {repeats} repeats = {views} per epoch ÷ batch {batch_size}"
        + (f" × accumulation {grad_accum}" if grad_accum > 1 else "")
    )
    buckets = sum(1 for v in bucket_views if v)
    if buckets > 1 and spe > math.ceil(math.ceil(views / batch_size) / grad_accum):
        # a batch never mixes aspect buckets: each bucket's last batch may be short
        per += f" in {buckets} aspect buckets"
    if steps is not None:
        explain = f"{per} = {spe} steps per epoch; {total} steps as set ≈ {epochs} epochs"
    else:
        explain = f"{per} = {spe} steps × {epochs} epochs = {total} steps"
    if total > MAX_TOTAL_STEPS:
        raise ConfigError(
            f"the schedule comes to {total:,} steps ({per} = {spe:,} steps × {epochs:,} epochs), "
            f"over the limit of {MAX_TOTAL_STEPS:,}",
            "lower --epochs or --repeats, or set --steps; kohya folder names like 10_cat count as repeats",
        )
    how = [h for h in how if not h.endswith("as set") or not h.startswith(str(steps))]
    if how:
        explain += f" ({'; '.join(how)})"
    return Schedule(repeats, epochs, spe, total, explain)
