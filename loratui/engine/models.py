"""Base models: what ``--base-model`` names, checked cheaply, then loaded into components.

``tiny`` (the embedded default), a diffusers folder, a hub id (downloaded as usual on the
user's machine) or a single A1111-style SD-1.5 checkpoint file. Pickle files (.ckpt, .pt,
.bin, .pth) can run code when loaded, so they are refused unless ``allow_pickle`` is set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loratui.engine.errors import ModelError

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
SINGLE_FILE_SUFFIXES = frozenset({".safetensors"}) | PICKLE_SUFFIXES
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSpec:
    """A resolved ``--base-model``: what kind it is and where it is."""

    kind: str  # "tiny" | "diffusers" | "hub" | "single_file"
    location: str
    name: str  # what the run card and ss_sd_model_name show


def resolve_model(base_model: str, allow_pickle: bool = False) -> ModelSpec:
    """Check ``base_model`` without loading anything heavy; ModelError with the fix otherwise."""
    text = base_model.strip()
    if text == "tiny":
        return ModelSpec("tiny", "tiny", "loratui-tiny-sd15")
    path = Path(os.path.expanduser(text))
    if path.exists():
        if path.is_dir():
            if (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file():
                return ModelSpec("diffusers", str(path.resolve()), path.name)
            raise ModelError(
                f"{path}: not a diffusers model folder (no model_index.json or unet/config.json)",
                "pass a diffusers folder, a .safetensors checkpoint or a hub id",
            )
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES and not allow_pickle:
            raise ModelError(
                f"{path}: pickle checkpoints can run code when loaded and are refused",
                "convert it to .safetensors, or pass --allow-pickle if you trust its source",
            )
        if suffix not in SINGLE_FILE_SUFFIXES:
            raise ModelError(
                f"{path}: not a model file ({suffix or 'no extension'})",
                "pass a .safetensors checkpoint, a diffusers folder or a hub id",
            )
        if suffix == ".safetensors":
            from loratui.engine.safety import check_safetensors_header

            check_safetensors_header(path)
        return ModelSpec("single_file", str(path.resolve()), path.stem)
    looks_like_path = (
        text.startswith((".", "/", "~"))
        or "\\" in text
        or Path(text).suffix.lower() in SINGLE_FILE_SUFFIXES
        or text.count("/") != 1
    )
    if looks_like_path or not HUB_ID.match(text):
        raise ModelError(
            f"{text}: no such model file or folder",
            "check the path, or use a hub id like stable-diffusion-v1-5/stable-diffusion-v1-5, or 'tiny'",
        )
    return ModelSpec("hub", text, text)


@dataclass
class Components:
    """The parts of a Stable Diffusion pipeline that training uses."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    spec: ModelSpec
    version: str = "sd_v1"  # kohya's ss_base_model_version


def load_components(spec: ModelSpec) -> Components:
    """Load the components named by ``spec`` in fp32 on the CPU (the trainer moves them)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # else it warns about torchvision
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet_libraries()
    if spec.kind == "single_file":
        return _load_single_file(spec)
    location = spec.location
    if spec.kind == "tiny":
        from loratui.engine.tiny import tiny_model_dir

        location = str(tiny_model_dir())
    try:
        unet = UNet2DConditionModel.from_pretrained(location, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(location, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(location, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(location, subfolder="tokenizer")
        scheduler = DDPMScheduler.from_pretrained(location, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "download it from the hub" if spec.kind == "hub" else "load it"
        raise ModelError(
            f"{spec.location}: could not {where}: {first}",
            "check the name and your connection, or pass a local folder or .safetensors file",
        ) from None
    version = "sd_v2" if unet.config.cross_attention_dim == 1024 else "sd_v1"
    if unet.config.get("addition_embed_type") == "text_time":
        raise ModelError(f"{spec.location}: this is an SDXL model", "loratui trains SD-1.5 models for now")
    return Components(unet, vae, text_encoder, tokenizer, scheduler, spec, version)


def _load_single_file(spec: ModelSpec) -> Components:
    """Load an A1111-style checkpoint with the config folder its shapes call for, offline."""
    import torch
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from loratui.engine.sd15_config import config_dir_for_checkpoint

    # Outside the try: an SDXL/SD-2 or unknown file already has its own one-line ModelError.
    config_dir = config_dir_for_checkpoint(Path(spec.location))
    try:
        pipe = StableDiffusionPipeline.from_single_file(
            spec.location,
            config=str(config_dir),
            local_files_only=True,
            torch_dtype=torch.float32,  # most shared checkpoints are fp16; training wants an fp32 base
            safety_checker=None,
            requires_safety_checker=False,
        )
    except Exception as exc:  # diffusers raises many kinds here; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{spec.location}: not a Stable Diffusion 1.5 checkpoint loratui can read: {first}",
            "pass an SD-1.5 .safetensors or a diffusers folder",
        ) from None
    # diffusers leaves a weight the file lacks on the meta device, and says nothing; name it here.
    for part in ("unet", "vae", "text_encoder"):
        missing = [name for name, p in getattr(pipe, part).named_parameters() if p.is_meta]
        if missing:
            raise ModelError(
                f"{spec.location}: the {part} weights are incomplete ({len(missing)} missing, e.g. {missing[0]})",
                "pass a full SD-1.5 checkpoint (UNet, VAE and text encoder) or a diffusers folder",
            )
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return Components(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, scheduler, spec)


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and info logs: the run has its own view."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
