"""A fixed probe loss on given pixels: the validation loss, for models outside a run.

It encodes the images, then measures exactly what ``ValidationSet.loss`` measures during
training (fixed noise, fixed timesteps), so tests and tools see the same number a run logs.
"""

from __future__ import annotations

from typing import Any

from loratui.engine.validation import ValidationSet


def probe_loss(
    unet: Any,
    text_encoder: Any,
    tokenizer: Any,
    vae: Any,
    noise_scheduler: Any,
    pixels: Any,
    captions: list[str],
    seed: int = 0,
) -> float:
    """The fixed-noise validation loss of ``unet`` on ``pixels`` (N,3,H,W in [-1,1])."""
    import torch

    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    with torch.no_grad():
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor

    def text_states(texts: list[str]) -> Any:
        ids = tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        return text_encoder(ids, return_dict=False)[0].to(dtype)

    probe = ValidationSet(list(latents), captions, held_out=False, seed=seed)
    return probe.loss(unet, text_states, noise_scheduler, device, dtype)
