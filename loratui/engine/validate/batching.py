"""How many rows a validation or sampling pass puts through the UNet at once.

One row at a time wastes most of a pass on per-call overhead (the tiny model's validation took
48 UNet calls for what one call does). The bound is memory: on a GPU the run's micro-batch
(what training proved fits, with gradients; a pass without them needs less), on a CPU enough
rows to hold the latents of eight 512 px images (past that a bigger batch is no faster, only
bigger).
"""

from __future__ import annotations

from typing import Any

CPU_LATENT_PIXELS = 8 * 64 * 64  # eight 512 px images' latents


def rows_per_pass(device: Any, micro_batch: int, latent_pixels: int) -> int:
    """The most rows of ``latent_pixels`` (h × w of one row's latents) in one UNet pass."""
    if getattr(device, "type", str(device)) != "cpu":
        return max(1, micro_batch)
    return max(1, micro_batch, CPU_LATENT_PIXELS // max(1, latent_pixels))


def chunks(items: list, size: int) -> list[list]:
    """``items`` in runs of at most ``size``, in order."""
    return [items[i : i + size] for i in range(0, len(items), max(1, size))]
