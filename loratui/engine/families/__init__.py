"""The model families loratui trains, one module each, and how a base model's family is found.

Adding a family: a module with a ``Family`` subclass, its configs, and a line in ``FAMILIES``.
"""

from __future__ import annotations

import json
from pathlib import Path

from loratui.engine.errors import ModelError
from loratui.engine.families.base import Components, Family, ModelSpec, config_family
from loratui.engine.families.sd2 import SD2
from loratui.engine.families.sd15 import SD15
from loratui.engine.families.sdxl import SDXL

FAMILIES: dict[str, Family] = {family.name: family for family in (SD15(), SD2(), SDXL())}

__all__ = ["Components", "FAMILIES", "Family", "ModelSpec", "default_resolution", "family_of", "folder_family"]

TINY_RESOLUTION = 64  # the tiny models' latents are 8x8 there


def family_of(spec: ModelSpec) -> Family:
    """The family object of a resolved model."""
    try:
        return FAMILIES[spec.family]
    except KeyError:
        raise ModelError(f"{spec.location}: {spec.family} models are not supported yet",
                         f"loratui trains {', '.join(f.label for f in FAMILIES.values())} models") from None


def folder_family(folder: Path) -> str:
    """The family of a diffusers folder, from its UNet config (no weights read)."""
    try:
        config = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "sd15"  # a model_index.json without a readable UNet config: loading will say more
    return config_family(config) if isinstance(config, dict) else "sd15"


def default_resolution(base_model: str) -> int:
    """The training resolution of ``base_model``'s family (64 for the tiny models); 512 when the
    model cannot be looked at cheaply (a bad path fails later with its own message)."""
    spec = _cheap_spec(base_model)
    return _family_resolution(spec) if spec is not None else FAMILIES["sd15"].default_resolution


def preset_resolution(base_model: str, preset_value: int) -> int:
    """The resolution a preset trains ``base_model`` at: the preset's (SD-1.5's) own value, or
    the family's where it differs (SDXL's 1024; 64 for tiny-sdxl)."""
    spec = _cheap_spec(base_model)
    return preset_value if spec is None or spec.family == "sd15" else _family_resolution(spec)


def _cheap_spec(base_model: str) -> ModelSpec | None:
    """``base_model`` resolved (a header read at most; nothing is unpickled), or None."""
    from loratui.engine.families.models import resolve_model

    try:
        return resolve_model(base_model, allow_pickle=True)
    except ModelError:
        return None


def _family_resolution(spec: ModelSpec) -> int:
    if spec.kind == "tiny":
        return TINY_RESOLUTION
    return FAMILIES[spec.family].default_resolution if spec.family in FAMILIES else 512
