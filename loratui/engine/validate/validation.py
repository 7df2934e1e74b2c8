"""Measuring over-fitting: a validation loss per checkpoint, and which checkpoint to use.

The validation loss is the denoising loss on a fixed set of images at fixed noise and fixed
timesteps, so it moves only when the LoRA does. Held-out images (when the dataset is big
enough to spare a few) show over-fitting directly: the loss falls, then rises. With a tiny
dataset the training images are used, which still shows when learning stalls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Spare images only when the dataset has enough: at 20+ images one in twenty, at most four.
HOLDOUT_MIN_IMAGES = 20
HOLDOUT_MAX = 4
# A rise counts once the loss is this far above its best, so noise does not cry wolf.
RISE_TOLERANCE = 0.02


def holdout_count(n_images: int, mode: str) -> int:
    """How many images to hold back for validation (``mode``: auto | holdout | train | off)."""
    if mode in ("train", "off"):
        return 0
    if mode == "holdout":
        return max(1, min(HOLDOUT_MAX, n_images // 10)) if n_images > 1 else 0
    return min(HOLDOUT_MAX, n_images // HOLDOUT_MIN_IMAGES) if n_images >= HOLDOUT_MIN_IMAGES else 0


def pick_holdout(n_images: int, count: int, seed: int) -> list[int]:
    """Which image indices to hold back: a seeded choice, stable for a given dataset and seed."""
    return sorted(random.Random(f"loratui-holdout-{seed}").sample(range(n_images), count)) if count else []


def fixed_timesteps(count: int) -> tuple[int, ...]:
    """``count`` timesteps at the centres of equal bins over 25..925: a stratified estimate of
    the same expected loss whatever the count (six give 100, 250, …, 850)."""
    width = 900 / count
    return tuple(int(round(25 + width * (i + 0.5))) for i in range(count))


# Three (175, 475, 775): compared at one fixed noise, two checkpoints' difference is resolved
# far below the 2% a rise must reach; six halved that noise at twice the UNet passes
# (benchmarks/RESULTS.md, "Validation: how many timesteps").
VALIDATION_TIMESTEPS = fixed_timesteps(3)


@dataclass
class ValidationSet:
    """Latents, caption states and fixed noise for the validation loss."""

    latents: list[Any]  # per image (C, h, w), already scaled
    captions: list[str]
    held_out: bool
    seed: int
    sizes: Any = None  # (N, 6) size conditioning per image, for families that use it
    masks: list[Any] | None = None  # per image a (1, h, w) uint8 loss mask or None (masked loss)
    timesteps: tuple[int, ...] = VALIDATION_TIMESTEPS

    def noise(self) -> list[list[Any]]:
        """The fixed noise, per image per timestep: drawn in that order from the set's seed, so
        the figure does not depend on how the passes are batched."""
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        return [[torch.randn((1, *latent.shape), generator=gen)[0] for _ in self.timesteps] for latent in self.latents]

    def loss(self, model: Any, device: Any, dtype: Any, micro_batch: int = 1) -> float:
        """The mean MSE over every image and every fixed timestep (``model``: a Denoiser), with
        as many (image, timestep) rows of one latent size in a UNet pass as ``rows_per_pass``
        allows; each caption's conditioning is computed once."""
        import torch

        from loratui.engine.data.masks import as_weights, masked_mean
        from loratui.engine.validate.batching import chunks, rows_per_pass

        noise = self.noise()
        rows = [(n, j) for n in range(len(self.latents)) for j in range(len(self.timesteps))]
        by_shape: dict[tuple, list[tuple[int, int]]] = {}
        for n, j in rows:  # one pass holds one latent size (aspect buckets differ)
            by_shape.setdefault(tuple(self.latents[n].shape), []).append((n, j))
        total, count = 0.0, 0
        with torch.no_grad():
            text = {c: model.condition([c]) for c in dict.fromkeys(self.captions)}
            for shape, group in by_shape.items():
                for part in chunks(group, rows_per_pass(device, micro_batch, shape[-1] * shape[-2])):
                    latents = torch.stack([self.latents[n] for n, _ in part]).to(device, dtype)
                    noises = torch.stack([noise[n][j] for n, j in part]).to(device, dtype)
                    steps = torch.tensor([self.timesteps[j] for _, j in part], device=device)
                    conditioning = {k: torch.cat([text[self.captions[n]][k] for n, _ in part])
                                    for k in text[self.captions[part[0][0]]]}
                    sizes = self.sizes[[n for n, _ in part]].to(device) if self.sizes is not None else None
                    noisy = model.noise_scheduler.add_noise(latents, noises, steps)
                    pred = model.predict(noisy, steps, conditioning, sizes)
                    target = model.target(latents, noises, steps)
                    error = (pred.float() - target.float()) ** 2
                    # the subject only where an image has a mask, as the run trains it; else the whole image
                    weights = torch.stack([self._weights(n, shape) for n, _ in part]).to(device)
                    total += masked_mean(error, as_weights(weights)).sum().item()
                    count += len(part)
        return total / max(1, count)

    def _weights(self, n: int, shape: tuple) -> Any:
        import torch

        mask = self.masks[n] if self.masks else None
        return mask if mask is not None else torch.full((1, *shape[1:]), 255, dtype=torch.uint8)


@dataclass(frozen=True)
class Recommendation:
    step: int
    strength: str
    reason: str
    overtrained: bool


def recommend(history: list[tuple[int, float]], held_out: bool) -> Recommendation | None:
    """The checkpoint with the lowest validation loss, a strength range, and why."""
    if not history:
        return None
    best_step, best = min(history, key=lambda h: (h[1], h[0]))
    last_step, last = history[-1]
    rose = overtraining_step(history)
    if rose is not None:
        return Recommendation(
            best_step,
            "0.7-1.0",
            f"validation loss was lowest at step {best_step} ({best:.4f}) and rose after it "
            f"to {last:.4f} at step {last_step}: later checkpoints are over-trained",
            True,
        )
    what = "held-out" if held_out else "training-image"
    if len(history) == 1:  # one point shows no trend: say so, not "still falling"
        return Recommendation(
            best_step, "0.6-0.9",
            f"the {what} validation loss was measured once, at step {best_step} ({best:.4f}), so it shows "
            "no trend; save more often (--save-every) to compare checkpoints", False,
        )
    if best_step == last_step:
        return Recommendation(
            best_step, "0.6-0.9",
            f"the {what} validation loss was still falling at the end ({best:.4f}); "
            "if the likeness is weak, train longer", False,
        )
    return Recommendation(
        best_step, "0.6-0.9",
        f"lowest {what} validation loss ({best:.4f}) at step {best_step}; later ones are within noise",
        False,
    )


def overtraining_step(history: list[tuple[int, float]]) -> int | None:
    """The best step when the loss has since risen in two checks in a row past the tolerance."""
    if len(history) < 3:
        return None
    best_index = min(range(len(history)), key=lambda i: (history[i][1], i))
    best = history[best_index][1]
    after = history[best_index + 1 :]
    if len(after) < 2:
        return None
    risen = [loss > best * (1 + RISE_TOLERANCE) for _, loss in after[-2:]]
    increasing = after[-1][1] >= after[-2][1] * (1 - RISE_TOLERANCE / 2)
    return history[best_index][0] if all(risen) and increasing else None


def validation_set(plan: Any, config: Any, vae, device, cache: dict) -> ValidationSet | None:
    """A run's validation images: held-out ones when the plan has them, else up to eight
    training images (their cached latents when there are some)."""
    import torch

    from loratui.engine.data.latents import encode_item
    from loratui.engine.data.prompts import with_trigger

    if config.validation == "off":
        return None
    held_out = bool(plan.validation_items)
    items = plan.validation_items if held_out else plan.train_items[:8]
    latents = []
    for item in items:
        mean, _ = cache[item.index] if (not held_out and item.index in cache) else encode_item(vae, item, device)
        latents.append(mean * vae.config.scaling_factor)
    captions = [with_trigger(plan.caption_for(i), config.trigger) for i in items]
    sizes = torch.tensor([i.size_conditioning() for i in items]) if items else None
    masks = [validation_mask(i) for i in items] if plan.masked else None
    return ValidationSet(latents, captions, held_out, config.seed, sizes, masks)


def validation_mask(item: Any) -> Any:
    """A validation image's latent mask; None (the whole image) when it has none or it is unusable."""
    from loratui.engine.data.masks import item_mask

    if not item.mask:
        return None
    mask = item_mask(item)
    return None if isinstance(mask, str) else mask


def load_history(run_dir: Path) -> list[tuple[int, float]]:
    """The validation losses a run folder's validation.json holds (none if it is unreadable)."""
    import json

    try:
        data = json.loads((run_dir / "validation.json").read_text())
        return [(int(a), float(b)) for a, b in data.get("history", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return []
