"""The resolution a dataset is judged at before training: the one `train` would use.

`loratui check` and the wizard's folder step both judge image sizes by it, so that what they
call an error is what a run skips: the preset's resolution for the base model's family, or
the one set; the demo dataset, with no model named, for the tiny model it is made for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Judgement:
    resolution: int
    family: str  # "the tiny model", "SDXL"… (the model as given when it cannot be told)
    base_model: str  # the model judged for ("tiny" for the demo dataset with none named)
    demo: bool  # the demo dataset, judged for the tiny model because no model was named


def judged_resolution(folder: Path | str, preset: str | None, base_model: str | None,
                      resolution: int | None) -> Judgement:
    """What `train FOLDER` with these choices would train at. A preset that is not known is
    left to the caller to name (the default preset's resolution is taken); a bad value is the
    config's one-line ConfigError."""
    from loratui.engine.config import build_config
    from loratui.engine.data.demo import is_demo_dataset
    from loratui.engine.errors import LoratuiError
    from loratui.engine.families import FAMILIES
    from loratui.engine.families.models import resolve_model
    from loratui.engine.planning.presets import PRESETS

    demo = not base_model and is_demo_dataset(Path(folder))
    known = preset if preset in PRESETS else None
    config = build_config(str(folder), known, overrides={"base_model": "tiny" if demo else base_model or None,
                                                        "resolution": resolution})
    try:
        spec = resolve_model(config.base_model, allow_pickle=True)
        family = "the tiny model" if spec.kind == "tiny" else FAMILIES[spec.family].label
    except (KeyError, LoratuiError):
        family = config.base_model
    return Judgement(config.resolution, family, config.base_model, demo)
