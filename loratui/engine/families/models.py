"""Base models: what ``--base-model`` names, checked cheaply, then loaded into components.

``tiny`` (the embedded default), a diffusers folder, a hub id (downloaded as usual on the
user's machine) or a single A1111-style SD-1.5 checkpoint file. Pickle files (.ckpt, .pt,
.bin, .pth) can run code when loaded, so they are refused unless ``allow_pickle`` is set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from loratui.engine.errors import ModelError
from loratui.engine.families import Components, ModelSpec, family_of, folder_family
from loratui.engine.families.base import quiet_libraries
from loratui.engine.families.tiny import TINY_NAMES

__all__ = ["Components", "ModelSpec", "load_components", "quiet_libraries", "resolve_model"]

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
SINGLE_FILE_SUFFIXES = frozenset({".safetensors"}) | PICKLE_SUFFIXES
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def resolve_model(base_model: str, allow_pickle: bool = False) -> ModelSpec:
    """Check ``base_model`` without loading anything heavy; ModelError with the fix otherwise."""
    text = base_model.strip()
    if text in TINY_NAMES:
        return ModelSpec("tiny", text, f"loratui-{text if text != 'tiny' else 'tiny-sd15'}", TINY_NAMES[text])
    path = Path(os.path.expanduser(text))
    if path.exists():
        if path.is_dir():
            if (path / "model_index.json").is_file() or (path / "unet" / "config.json").is_file():
                return ModelSpec("diffusers", str(path.resolve()), path.name, folder_family(path))
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
        return ModelSpec("single_file", str(path.resolve()), path.stem, _file_family(path))
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
    return ModelSpec("hub", text, text, "sd15")


def load_components(spec: ModelSpec) -> Components:
    """Load the components named by ``spec`` in fp32 on the CPU (the trainer moves them).

    A hub id that cannot be downloaded now (offline, hub unreachable) fails at once with one
    line; one already in the Hugging Face cache loads from there."""
    from loratui.engine.families.hub_access import loadable_spec

    spec = loadable_spec(spec)
    return family_of(spec).load(spec)


def _file_family(path: Path) -> str:
    """A single file's family from its header (safetensors only: a pickle is not opened here);
    a file the header check cannot place loads as SD-1.5, which names what is wrong with it."""
    if path.suffix.lower() != ".safetensors":
        return "sd15"
    from loratui.engine.families.shipped import checkpoint_family

    try:
        found = checkpoint_family(path)
        return TINY_NAMES.get(found, found)
    except ModelError:
        return "sd15"
