"""A fixed probe loss on given pixels: the validation loss, for models outside a run.

It encodes the images, then measures exactly what ``ValidationSet.loss`` measures during
training (fixed noise, fixed timesteps), so tests and tools see the same number a run logs.
"""

from __future__ import annotations

from typing import Any

from loratui.engine.train.conditioning import TextConditioner
from loratui.engine.train.denoiser import Denoiser
from loratui.engine.families import Family
from loratui.engine.validate.validation import ValidationSet


def probe_loss(
    family: Family,
    modules: dict[str, Any],
    tokenizers: dict[str, Any],
    noise_scheduler: Any,
    pixels: Any,
    captions: list[str],
    seed: int = 0,
    sizes: Any = None,
) -> float:
    """The fixed-noise validation loss of ``modules["unet"]`` on ``pixels`` (N,3,H,W in [-1,1]);
    ``sizes``: each image's size conditioning (``TrainItem.size_conditioning``), by default the
    pixels' own size, uncropped."""
    import torch

    unet, vae = modules["unet"], modules["vae"]
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    with torch.no_grad():
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor
    encoders = {name: modules[name] for name in family.text_encoders}
    condition = TextConditioner(family, encoders, tokenizers, device)
    if sizes is None:
        height, width = pixels.shape[-2:]
        sizes = torch.tensor([[height, width, 0, 0, height, width]] * len(captions))
    probe = ValidationSet(list(latents), captions, held_out=False, seed=seed, sizes=sizes)
    return probe.loss(Denoiser(family, unet, condition, noise_scheduler), device, dtype)
