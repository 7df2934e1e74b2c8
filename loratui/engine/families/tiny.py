"""The embedded default: a tiny, randomly initialised SD-1.5-shaped pipeline.

It has the same component types and module names as Stable Diffusion 1.5 (a 4-level UNet with
cross-attention, an 8x VAE with 4 latent channels, a CLIP text encoder and tokenizer, a DDPM
scheduler with SD's betas) but only a few MB of weights, so it builds offline in under a
second and trains on a CPU. LoRA files made on it use the same key names as SD-1.5 ones.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from pathlib import Path

from loratui.engine.paths import cache_dir

# Bump when the configs below change, so stale caches are rebuilt rather than trusted.
TINY_VERSION = 1
TINY_RESOLUTION = 64  # what the demo trains at: 8x8 latents

UNET_CONFIG = {
    "sample_size": TINY_RESOLUTION // 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [16, 16, 32, 32],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
}
VAE_CONFIG = {
    "sample_size": TINY_RESOLUTION,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "latent_channels": 4,
    "scaling_factor": 0.18215,
}
TEXT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
}
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 1,
}


TINY_NAMES = {"tiny": "sd15", "tiny-sd2": "sd2", "tiny-sdxl": "sdxl"}  # --base-model name -> family


def tiny_model_dir(name: str = "tiny") -> Path:
    """The tiny pipeline's folder in the user cache, built first if it is missing or stale."""
    from loratui.engine.families import FAMILIES

    family = FAMILIES[TINY_NAMES[name]]
    version = TINY_VERSION if name == "tiny" else family.tiny_version
    target = cache_dir() / f"{name if name != 'tiny' else 'tiny-sd15'}-v{version}"
    if not (target / "model_index.json").is_file():
        with _BUILD_LOCK:  # the wizard's planning and memory workers may both ask for it first
            if not (target / "model_index.json").is_file():
                build_tiny(target, family.build_tiny)
    return target


_BUILD_LOCK = threading.Lock()


def build_tiny(target: Path, build) -> Path:
    """Build a tiny pipeline with ``build(tokenizer)`` (seeded, so every machine gets the same
    weights), save it and rename it into place: a half-built model is never found."""
    import torch

    from loratui.engine.families.base import quiet_libraries

    quiet_libraries()  # no "Writing model shards" bars or torchvision notes in a command's output
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        tokenizer = _build_tokenizer(staging / "_tok")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            pipe = build(tokenizer)
        pipe.save_pretrained(staging / "pipe", safe_serialization=True)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            (staging / "pipe").rename(target)
        except OSError:  # another process renamed its identical build into place first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_pipeline(target: Path) -> Path:
    """Build the tiny SD-1.5 pipeline into ``target``."""
    return build_tiny(target, build_sd15)


def build_sd15(tokenizer):
    """The tiny SD-1.5 pipeline's modules, built from the configs above."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(**UNET_CONFIG)  # this order draws the weights round 1 drew
    vae = AutoencoderKL(**VAE_CONFIG)
    encoder = text_encoder(tokenizer, TEXT_CONFIG)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDPMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def text_encoder(tokenizer, config: dict, projection: bool = False):
    """A tiny CLIP text encoder over ``tokenizer``'s vocabulary (with a projection: SDXL's second)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model = CLIPTextModelWithProjection if projection else CLIPTextModel
    return model(CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **config,
    ))


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-level alphabet: printable bytes map to themselves, the rest past U+0100."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    table: dict[int, str] = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


def _build_tokenizer(folder: Path):
    """A character-level CLIP BPE tokenizer: every byte, with and without the word end mark."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["</w>", "<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = ["#version: 0.2"] + [f"{c} </w>" for c in alphabet]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
