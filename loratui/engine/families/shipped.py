"""Configs for single-file (A1111-style) checkpoints, so they load with no network.

A ``.safetensors`` checkpoint holds weights only. diffusers needs a config folder beside it
(model_index.json, each component's config, a tokenizer), which it would normally download
from the hub. loratui ships SD-1.5's component configs (``loratui/configs/sd15``) and derives
the real CLIP tokenizer offline (``clip_tokenizer``); ``sd15_config_dir()`` assembles the two
into one diffusers config folder in the user cache.

``config_dir_for_checkpoint()`` picks the folder by the checkpoint's tensor shapes, read from
its header only: a full SD-1.x or SDXL model, or one of loratui's tiny models (whose built
folder is itself a valid config folder). SD-2 files are refused with one clear line.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from loratui.engine.families.clip_tokenizer import TOKENIZER_VERSION, clip_tokenizer_dir
from loratui.engine.errors import ModelError
from loratui.engine.paths import cache_dir

# The shipped JSONs, relative to loratui/configs/sd15 (the tokenizer is added from the cache).
SD15_FILES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/scheduler_config.json",
)
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

# Keys and shapes that tell the model families apart (original LDM / A1111 key names).
UNET_PREFIX = "model.diffusion_model."
CONV_IN = UNET_PREFIX + "input_blocks.0.0.weight"  # [block_out_channels[0], in_channels, 3, 3]
CROSS_ATTN_SUFFIX = ".attn2.to_k.weight"  # [inner_dim, cross_attention_dim]
SDXL_PREFIX = "conditioner."  # SDXL's two text encoders live under conditioner.embedders.*
OPEN_CLIP_PREFIX = "cond_stage_model.model."  # SD-2's OpenCLIP text encoder
SD15_WIDTH, SD15_CROSS_DIM = 320, 768
SD2_CROSS_DIM = 1024

SD15 = "sd15"
TINY = "tiny"

UNSUPPORTED_HINT = "pass a diffusers folder"


# The shipped JSONs of SDXL, relative to loratui/configs/sdxl (two tokenizers added from the cache).
SDXL_FILES = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    "scheduler/scheduler_config.json",
)
# SDXL's second tokenizer (OpenCLIP bigG's) pads with "!" where CLIP-L's pads with <|endoftext|>
SDXL_TOKENIZERS = {"tokenizer": None, "tokenizer_2": "!"}


def shipped_config_root(family: str = SD15) -> Path:
    """Where a family's component configs lie inside the installed package."""
    return Path(str(resources.files("loratui") / "configs" / family))


# SD-2.x: SD-1.5's layout, OpenCLIP-H's 23 used layers as the text encoder, a tokenizer padding with "!"
SD2_FILES = SD15_FILES


def sd2_config_dir() -> Path:
    """The complete SD-2.x diffusers config folder in the user cache (epsilon, as 2.x base ships;
    a 768-v model is trained with --prediction-type v_prediction)."""
    return shipped_config_dir("sd2", SD2_FILES, {"tokenizer": "!"})


def sd15_config_dir() -> Path:
    """The complete SD-1.5 diffusers config folder in the user cache, assembled first if missing."""
    return shipped_config_dir(SD15, SD15_FILES, {"tokenizer": None})


def sdxl_config_dir() -> Path:
    """The complete SDXL diffusers config folder in the user cache, assembled first if missing."""
    return shipped_config_dir("sdxl", SDXL_FILES, SDXL_TOKENIZERS)


def shipped_config_dir(family: str, files: tuple[str, ...], tokenizers: dict[str, str | None]) -> Path:
    """A family's shipped JSONs plus the real CLIP tokenizer(s) as one diffusers config folder.

    The folder's name carries a digest of the shipped JSONs and the tokenizer version, so an
    upgraded loratui never trusts a folder an older one assembled.
    """
    root = shipped_config_root(family)
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    target = cache_dir() / f"{family}-config-{digest.hexdigest()[:12]}-tok{TOKENIZER_VERSION}"
    if not _is_complete(target, files, tokenizers):
        _assemble(root, target, files, tokenizers)
    return target


def _is_complete(folder: Path, files: tuple[str, ...], tokenizers: dict[str, str | None]) -> bool:
    return all((folder / name).is_file() for name in files) and all(
        (folder / sub / name).is_file() for sub in tokenizers for name in TOKENIZER_FILES
    )


def _assemble(root: Path, target: Path, files: tuple[str, ...], tokenizers: dict[str, str | None]) -> None:
    """Copy the JSONs and the tokenizer(s) into a temp folder, then rename it into place.

    A reader never sees a half-written folder; two processes assembling at once both succeed
    (the loser of the rename race finds the winner's identical folder).
    """
    import json

    tokenizer = clip_tokenizer_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".config-", dir=target.parent))
    try:
        for name in files:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, staging / name)
        for sub, pad in tokenizers.items():
            shutil.copytree(tokenizer, staging / sub)
            if pad is not None:  # same vocabulary and merges, another padding token
                for name in ("tokenizer_config.json", "special_tokens_map.json"):
                    path = staging / sub / name
                    data = json.loads(path.read_text(encoding="utf-8"))
                    data["pad_token"] = pad
                    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)  # an incomplete leftover (a crash mid-copy of an old version)
        try:
            staging.rename(target)
        except OSError:
            if not _is_complete(target, files, tokenizers):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, without reading the weights where the format allows.

    ``.safetensors``: the header only. Pickle files (reached only with ``--allow-pickle``) are
    memory-mapped with ``weights_only=True``, as diffusers itself loads them.
    """
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise ModelError(
                f"{path}: not a readable .safetensors file ({_first_line(exc)})",
                "check the download is complete, or pass a diffusers folder",
            ) from None
    import torch

    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the pre-zip (legacy) format cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{path}: could not read this checkpoint ({_first_line(exc)})",
            "convert it to .safetensors, or pass a diffusers folder",
        ) from None
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # LDM training checkpoints nest the weights
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}


SDXL_WIDTH, SDXL_CROSS_DIM = 320, 2048


def checkpoint_family(path: Path) -> str:
    """``"sd15"``, ``"sd2"``, ``"sdxl"`` or a tiny model's name from the checkpoint's shapes (its
    header only, for ``.safetensors``); ModelError for anything else."""
    shapes = checkpoint_shapes(path)
    xl = any(key.startswith(SDXL_PREFIX) for key in shapes)
    if CONV_IN not in shapes:
        raise ModelError(
            f"{path}: no Stable Diffusion UNet in this file (no {UNET_PREFIX}* weights)",
            "pass a full checkpoint (UNet, VAE and text encoders) or a diffusers folder",
        )
    width, in_channels = shapes[CONV_IN][0], shapes[CONV_IN][1]
    cross_dims = {shape[-1] for key, shape in shapes.items() if key.endswith(CROSS_ATTN_SUFFIX)}
    open_clip = not xl and any(key.startswith(OPEN_CLIP_PREFIX) for key in shapes)
    if in_channels != 4:
        # 9 input channels: an inpainting model; 8: instruct-pix2pix. Neither trains as text-to-image.
        raise ModelError(
            f"{path}: a UNet with {in_channels} input channels (inpainting or pix2pix) is not supported",
            "pass a text-to-image checkpoint or a diffusers folder",
        )
    from loratui.engine.families.sd2 import TINY_UNET as TINY_SD2
    from loratui.engine.families.sdxl import TINY_UNET
    from loratui.engine.families.tiny import UNET_CONFIG

    kind = "sdxl" if xl else "open_clip" if open_clip else "clip"
    known = {
        ("clip", SD15_WIDTH, SD15_CROSS_DIM): SD15,
        ("clip", UNET_CONFIG["block_out_channels"][0], UNET_CONFIG["cross_attention_dim"]): TINY,
        ("open_clip", SD15_WIDTH, SD2_CROSS_DIM): "sd2",
        ("open_clip", TINY_SD2["block_out_channels"][0], TINY_SD2["cross_attention_dim"]): "tiny-sd2",
        ("sdxl", SDXL_WIDTH, SDXL_CROSS_DIM): "sdxl",
        ("sdxl", TINY_UNET["block_out_channels"][0], TINY_UNET["cross_attention_dim"]): "tiny-sdxl",
    }
    if len(cross_dims) == 1 and (kind, width, *cross_dims) in known:
        return known[(kind, width, *cross_dims)]
    found = ", ".join(str(d) for d in sorted(cross_dims)) or "none"
    raise ModelError(
        f"{path}: unknown UNet shape (first block width {width}, cross-attention dim {found})",
        "loratui reads SD-1.5, SD-2.x and SDXL single files; pass a diffusers folder for other models",
    )


def config_dir_for_checkpoint(path: Path) -> Path:
    """The diffusers config folder that fits the single-file checkpoint at ``path``."""
    family = checkpoint_family(path)
    if family.startswith(TINY):
        from loratui.engine.families.tiny import tiny_model_dir

        return tiny_model_dir(family)
    return {"sdxl": sdxl_config_dir, "sd2": sd2_config_dir}.get(family, sd15_config_dir)()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
