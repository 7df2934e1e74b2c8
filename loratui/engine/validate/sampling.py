"""Rendering sample images with the model being trained (or any base model plus a LoRA).

One seed per prompt, so the same prompt is comparable across checkpoints and strengths.
The sampler draws only from its own generator (and the global RNG is forked around it), so
taking samples never changes what training sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine import atomic

SAMPLE_STEPS = 20
NEGATIVE = "lowres, blurry, deformed, watermark, text"


def default_prompts(preset_prompts: tuple[str, ...], trigger: str | None, fallback_caption: str) -> list[str]:
    """The preset's prompts around the trigger word; without one, a training caption."""
    if trigger:
        return [p.format(trigger=trigger) for p in preset_prompts]
    return [fallback_caption or "a photo"]


def build_pipeline(family: Any, modules: dict[str, Any], tokenizers: dict[str, Any], scheduler_config: Any):
    """The family's diffusers pipeline around existing modules (nothing is copied or reloaded),
    sampling with DPM-Solver++ on the training scheduler's settings."""
    from diffusers import DPMSolverMultistepScheduler

    from loratui.engine.train.noise import sampling_settings

    sampler = DPMSolverMultistepScheduler.from_config(scheduler_config, **sampling_settings(scheduler_config)["scheduler"])
    pipe = family.pipeline(modules, tokenizers, sampler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def components_pipeline(comps: Any):
    """``build_pipeline`` for loaded Components."""
    return build_pipeline(comps.family, comps.modules, comps.tokenizers, comps.noise_scheduler.config)


def render(pipe: Any, prompt: str, seed: int, width: int, height: int, steps: int = SAMPLE_STEPS,
           cross_attention_kwargs: dict | None = None):
    """One image for ``prompt`` at ``seed`` (a PIL image)."""
    return render_batch(pipe, [prompt], [seed], width, height, steps, cross_attention_kwargs)[0]


def render_batch(pipe: Any, prompts: list[str], seeds: list[int], width: int, height: int,
                 steps: int = SAMPLE_STEPS, cross_attention_kwargs: dict | None = None,
                 micro_batch: int = 1) -> list:
    """An image per prompt, each from its own seed (a generator per image, so an image is the
    one ``render`` gives alone), in as few pipeline calls as ``rows_per_pass`` allows (each
    prompt is two UNet rows with guidance)."""
    import torch

    from loratui.engine.train.noise import sampling_settings
    from loratui.engine.validate.batching import chunks, rows_per_pass

    device = next(pipe.unet.parameters()).device
    extra = sampling_settings(pipe.scheduler.config)["call"]  # guidance rescale for zero terminal SNR
    scale = getattr(pipe, "vae_scale_factor", 8)
    rows = rows_per_pass(device, micro_batch, (width // scale) * (height // scale))
    per_call = max(1, micro_batch if device.type != "cpu" else rows // 2)  # a GPU: the run's micro-batch of prompts
    images = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        for part in chunks(list(zip(prompts, seeds)), per_call):
            latents = pipe(
                [p for p, _ in part],
                negative_prompt=[NEGATIVE] * len(part),
                num_inference_steps=steps,
                width=width,
                height=height,
                guidance_scale=7.0,
                generator=[torch.Generator(device="cpu").manual_seed(s) for _, s in part],
                cross_attention_kwargs=cross_attention_kwargs,
                output_type="latent",
                **extra,
            ).images
            # one image at a time through the VAE: its decoder is a pass's memory peak
            images += [decode(pipe, latents[i : i + 1])[0] for i in range(len(part))]
    return images


def decode(pipe: Any, latents: Any) -> list:
    """Latents to PIL images with the VAE in fp32 and autocast off: SD's VAEs, SDXL's above all,
    overflow in fp16 and give black (NaN) images, and a training run samples under autocast."""
    import torch

    vae = pipe.vae
    with torch.autocast(latents.device.type, enabled=False):
        latents = latents.to(device=next(vae.parameters()).device, dtype=torch.float32)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:  # a VAE with per-channel latent statistics
            shape = (1, len(mean), 1, 1)
            latents = latents * torch.tensor(std).view(shape).to(latents) / vae.config.scaling_factor \
                + torch.tensor(mean).view(shape).to(latents)
        else:
            latents = latents / vae.config.scaling_factor
        dtype = vae.dtype
        if dtype != torch.float32:
            vae.to(torch.float32)
        try:
            image = vae.decode(latents, return_dict=False)[0]
        finally:
            if dtype != torch.float32:
                vae.to(dtype)
    return pipe.image_processor.postprocess(image.float(), output_type="pil")


def save_png(image: Any, path: Path) -> Path:
    """Write a PIL image as PNG atomically."""
    with atomic.atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
