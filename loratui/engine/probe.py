"""A fixed probe loss: the denoising loss on given images at fixed noise and timesteps.

With everything random held fixed, the number moves only when the model does: it is how
tests see a LoRA learn, and how a run can measure over-fitting on held-out images.
"""

from __future__ import annotations

from typing import Any


def probe_loss(
    unet: Any,
    text_encoder: Any,
    tokenizer: Any,
    vae: Any,
    noise_scheduler: Any,
    pixels: Any,
    captions: list[str],
    seed: int = 0,
    timesteps: tuple[int, ...] = (100, 300, 500, 700, 900),
) -> float:
    """Mean MSE of the noise prediction over ``timesteps`` for ``pixels`` (N,3,H,W in [-1,1])."""
    import torch
    import torch.nn.functional as F

    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mean * vae.config.scaling_factor
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        states = text_encoder(ids, return_dict=False)[0].to(dtype)
        total = 0.0
        for t in timesteps:
            noise = torch.randn(latents.shape, generator=gen).to(device, latents.dtype)
            steps = torch.full((latents.shape[0],), t, dtype=torch.long, device=device)
            noisy = noise_scheduler.add_noise(latents, noise, steps)
            pred = unet(noisy.to(dtype), steps, states, return_dict=False)[0]
            target = noise
            if noise_scheduler.config.prediction_type == "v_prediction":
                target = noise_scheduler.get_velocity(latents, noise, steps)
            total += F.mse_loss(pred.float(), target.float()).item()
    return total / len(timesteps)
