"""The training loss options the field's trainers ship, as pure functions of tensors.

- ``elementwise_loss``: squared error (l2), absolute error (l1), or the pseudo-Huber loss of
  kohya's sd-scripts (``huber``: ``2c(sqrt(d² + c²) - c)``; ``smooth_l1``: ``2(sqrt(d² + c²) - c)``),
  quadratic for small errors and linear for large ones, so outlier samples pull less.
- ``huber_threshold``: that ``c`` per sample, constant or following the timestep: ``exponential``
  decays from 1 at t=0 to ``huber_c`` at the last step; ``snr`` is ``(1 - c)/(1 + σ_t)² + c``
  with ``σ_t = sqrt((1 - ᾱ_t)/ᾱ_t)``, near 1 (L2-like) at low noise, ``c`` at high noise.
- ``debiased_weight``: the debiased-estimation weighting (Yu et al. 2024), ``1/sqrt(SNR)``
  (``1/(SNR + 1)`` for v-prediction) with the SNR capped at 1000, which evens out how much each
  timestep's loss counts.
- ``pyramid_noise``: multi-resolution noise, Gaussian noise plus ever coarser upsampled
  Gaussian noise at ``discount**i``, normalised to unit variance per sample.
"""

from __future__ import annotations

import math
from typing import Any

SNR_CAP = 1000.0


def elementwise_loss(pred: Any, target: Any, loss_type: str, c: Any = None) -> Any:
    """The per-element loss of ``pred`` against ``target``; ``c`` (per sample) for the Huber kinds."""
    import torch.nn.functional as F

    if loss_type == "l2":
        return F.mse_loss(pred, target, reduction="none")
    if loss_type == "l1":
        return F.l1_loss(pred, target, reduction="none")
    c = c.view(-1, *([1] * (pred.dim() - 1)))
    smooth = 2 * (((pred - target) ** 2 + c**2).sqrt() - c)
    return smooth * c if loss_type == "huber" else smooth


def huber_threshold(schedule: str, huber_c: float, timesteps: Any, alphas_cumprod: Any, num_timesteps: int) -> Any:
    """The pseudo-Huber ``c`` for each sample at ``timesteps`` (see the module docstring)."""
    import torch

    t = timesteps.to(torch.float64)
    if schedule == "constant":
        c = torch.full_like(t, huber_c)
    elif schedule == "exponential":
        c = torch.exp(math.log(huber_c) * t / num_timesteps)
    else:  # snr
        abar = alphas_cumprod.to(timesteps.device, torch.float64)[timesteps]
        sigma = ((1 - abar) / abar.clamp(min=1e-12)).sqrt()
        c = (1 - huber_c) / (1 + sigma) ** 2 + huber_c
    return c.to(torch.float32)


def debiased_weight(snr: Any, v_prediction: bool) -> Any:
    """Each sample's debiased-estimation weight from its SNR."""
    snr = snr.clamp(max=SNR_CAP)
    return 1 / (snr + 1) if v_prediction else 1 / snr.clamp(min=1e-8).sqrt()


def pyramid_noise(noise: Any, iterations: int, discount: float, gen: Any) -> Any:
    """``noise`` (B, C, H, W) with ``iterations`` coarser levels added, unit variance per sample.

    Each level's size shrinks by a random factor in [2, 4) per level (drawn from ``gen``, so a
    run repeats), as in the multi-resolution noise LoRA trainers use; it stops at 1 pixel."""
    import torch
    import torch.nn.functional as F

    b, ch, h, w = noise.shape
    out = noise.clone()
    for i in range(1, iterations + 1):
        r = 2 + 2 * torch.rand((), generator=gen).item()
        hi, wi = max(1, int(h / r**i)), max(1, int(w / r**i))
        coarse = torch.randn((b, ch, hi, wi), generator=gen)
        out += F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * discount**i
        if hi == 1 or wi == 1:
            break
    return out / out.flatten(1).std(dim=1).view(b, 1, 1, 1)
