"""Configs for single-file (A1111-style) checkpoints, so they load with no network.

A ``.safetensors`` checkpoint holds weights only. diffusers needs a config folder beside it
(model_index.json, each component's config, a tokenizer), which it would normally download
from the hub. loratui ships SD-1.5's component configs (``loratui/configs/sd15``) and derives
the real CLIP tokenizer offline (``clip_tokenizer``); ``sd15_config_dir()`` assembles the two
into one diffusers config folder in the user cache.

``config_dir_for_checkpoint()`` picks the folder by the checkpoint's tensor shapes, read from
its header only: a full SD-1.x model, or loratui's tiny SD-1.5-shaped model (whose built
folder is itself a valid config folder). SD-2 and SDXL files are refused with one clear line.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from loratui.engine.clip_tokenizer import TOKENIZER_VERSION, clip_tokenizer_dir
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


def shipped_config_root() -> Path:
    """Where the SD-1.5 component configs lie inside the installed package."""
    return Path(str(resources.files("loratui") / "configs" / "sd15"))


def sd15_config_dir() -> Path:
    """The complete SD-1.5 diffusers config folder in the user cache, assembled first if missing.

    The folder's name carries a digest of the shipped JSONs and the tokenizer version, so an
    upgraded loratui never trusts a folder an older one assembled.
    """
    root = shipped_config_root()
    digest = hashlib.sha256()
    for name in SD15_FILES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    target = cache_dir() / f"sd15-config-{digest.hexdigest()[:12]}-tok{TOKENIZER_VERSION}"
    if not _is_complete(target):
        _assemble(root, target)
    return target


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SD15_FILES) and all(
        (folder / "tokenizer" / name).is_file() for name in TOKENIZER_FILES
    )


def _assemble(root: Path, target: Path) -> None:
    """Copy the JSONs and the tokenizer into a temp folder, then rename it into place.

    A reader never sees a half-written folder; two processes assembling at once both succeed
    (the loser of the rename race finds the winner's identical folder).
    """
    tokenizer = clip_tokenizer_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sd15-config-", dir=target.parent))
    try:
        for name in SD15_FILES:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, staging / name)
        shutil.copytree(tokenizer, staging / "tokenizer")
        if target.exists():
            shutil.rmtree(target)  # an incomplete leftover (a crash mid-copy of an old version)
        try:
            staging.rename(target)
        except OSError:
            if not _is_complete(target):
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


def checkpoint_family(path: Path) -> str:
    """``"sd15"`` or ``"tiny"`` from the checkpoint's shapes; ModelError for anything else."""
    shapes = checkpoint_shapes(path)
    if any(key.startswith(SDXL_PREFIX) for key in shapes):
        raise ModelError(f"{path}: SDXL/SD-2 single files are not supported yet", UNSUPPORTED_HINT)
    if CONV_IN not in shapes:
        raise ModelError(
            f"{path}: no Stable Diffusion UNet in this file (no {UNET_PREFIX}* weights)",
            "pass a full SD-1.5 checkpoint (UNet, VAE and text encoder) or a diffusers folder",
        )
    width, in_channels = shapes[CONV_IN][0], shapes[CONV_IN][1]
    cross_dims = {shape[-1] for key, shape in shapes.items() if key.endswith(CROSS_ATTN_SUFFIX)}
    if SD2_CROSS_DIM in cross_dims or any(key.startswith(OPEN_CLIP_PREFIX) for key in shapes):
        raise ModelError(f"{path}: SDXL/SD-2 single files are not supported yet", UNSUPPORTED_HINT)
    if in_channels != 4:
        # 9 input channels: an inpainting model; 8: instruct-pix2pix. Neither trains as text-to-image.
        raise ModelError(
            f"{path}: a UNet with {in_channels} input channels (inpainting or pix2pix) is not supported",
            "pass a text-to-image SD-1.5 checkpoint or a diffusers folder",
        )
    from loratui.engine.tiny import UNET_CONFIG

    if width == SD15_WIDTH and cross_dims == {SD15_CROSS_DIM}:
        return SD15
    if width == UNET_CONFIG["block_out_channels"][0] and cross_dims == {UNET_CONFIG["cross_attention_dim"]}:
        return TINY
    found = ", ".join(str(d) for d in sorted(cross_dims)) or "none"
    raise ModelError(
        f"{path}: unknown UNet shape (first block width {width}, cross-attention dim {found})",
        "loratui reads SD-1.5 single files; pass a diffusers folder for other models",
    )


def config_dir_for_checkpoint(path: Path) -> Path:
    """The diffusers config folder that fits the single-file checkpoint at ``path``."""
    if checkpoint_family(path) == TINY:
        from loratui.engine.tiny import tiny_model_dir

        return tiny_model_dir()
    return sd15_config_dir()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
