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

__all__ = ["Components", "FAMILIES", "Family", "ModelSpec", "default_resolution", "family_of", "family_preset_values",
           "folder_family"]

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


def family_preset_values(base_model: str, preset: str, prediction_type: str = "auto") -> dict:
    """What preset ``preset`` sets differently for ``base_model``'s family: the family's own
    values (SDXL's rank, alpha, lr and batch) and the resolution the model was made for (SDXL's
    1024, SD-2 768-v's 768; 64 for the tiny models). Empty for SD-1.5, whose values the presets
    are, and for a model that cannot be looked at cheaply (it fails later with its own message)."""
    spec = _cheap_spec(base_model)
    if spec is None or spec.family not in FAMILIES:
        return {}
    family = FAMILIES[spec.family]
    values = dict(family.preset_values.get(preset, {}))
    if spec.kind == "tiny" or spec.family != "sd15":
        values["resolution"] = _family_resolution(spec, prediction_type)
    return values


def _v_pred(spec: ModelSpec, prediction_type: str) -> bool:
    """Whether a run of ``spec`` predicts v: the flag, else what the model says (cheaply)."""
    if prediction_type != "auto":
        return prediction_type == "v_prediction"
    if spec.kind == "single_file":
        from loratui.engine.train.noise import file_markers

        said = file_markers(Path(spec.location))
        return said is not None and said.type == "v_prediction"
    if spec.kind == "diffusers":
        try:
            config = json.loads((Path(spec.location) / "scheduler" / "scheduler_config.json").read_text("utf-8"))
            return config.get("prediction_type") == "v_prediction"
        except (OSError, ValueError, AttributeError):
            return False
    return False


def _cheap_spec(base_model: str) -> ModelSpec | None:
    """``base_model`` resolved (a header read at most; nothing is unpickled), or None."""
    from loratui.engine.families.models import resolve_model

    try:
        return resolve_model(base_model, allow_pickle=True)
    except ModelError:
        return None


def _family_resolution(spec: ModelSpec, prediction_type: str = "auto") -> int:
    if spec.kind == "tiny":
        return TINY_RESOLUTION
    if spec.family not in FAMILIES:
        return 512
    return FAMILIES[spec.family].training_resolution(spec, _v_pred(spec, prediction_type))
