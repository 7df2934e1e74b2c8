"""The noise schedule a run trains with: epsilon or v-prediction, with or without zero terminal SNR.

v-prediction models (SD-2 768-v, NoobAI-XL v-pred) are trained to predict the velocity, and the
newest ones on a schedule rescaled so the last timestep is pure noise (zero terminal SNR, Lin et
al. 2023). A model says so in its scheduler config, or in a single file's ``v_pred``/``ztsnr``
marker tensors (how NoobAI ships); the run config can override either. Sampling then needs the
same prediction type, "trailing" timesteps and a rescaled guidance, or images come out grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

GUIDANCE_RESCALE = 0.7  # with zero terminal SNR (the paper's value)


@dataclass(frozen=True)
class Prediction:
    """What the UNet predicts and whether the schedule reaches zero SNR."""

    type: str  # "epsilon" | "v_prediction"
    zero_terminal_snr: bool

    def describe(self) -> str:
        kind = "v-prediction" if self.type == "v_prediction" else "epsilon prediction"
        return kind + (" with zero terminal SNR" if self.zero_terminal_snr else "")


def file_markers(path: Path) -> Prediction | None:
    """What a single ``.safetensors`` file says about itself: NoobAI-style ``v_pred``/``ztsnr``
    keys, or ``modelspec.prediction_type`` in its metadata; None when it says nothing."""
    if path.suffix.lower() != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())
            meta = handle.metadata() or {}
    except Exception:  # an unreadable file fails at loading, with its own message
        return None
    v_pred = "v_pred" in keys or meta.get("modelspec.prediction_type") == "v"
    if not v_pred and "ztsnr" not in keys:
        return None
    return Prediction("v_prediction" if v_pred else "epsilon", "ztsnr" in keys)


def model_prediction(scheduler_config: Any, spec: Any) -> Prediction:
    """What the model says: its single file's markers, else its scheduler config."""
    if spec.kind == "single_file":
        marked = file_markers(Path(spec.location))
        if marked is not None:
            return marked
    return Prediction(scheduler_config.prediction_type, bool(scheduler_config.get("rescale_betas_zero_snr", False)))


def training_schedule(scheduler: Any, spec: Any, prediction_type: str = "auto",
                      zero_terminal_snr: bool | None = None, said: Prediction | None = None
                      ) -> tuple[Any, Prediction]:
    """The DDPM schedule to train with, from the model's and what the config asks for;
    ``said``: the model's own ``model_prediction``, when the caller has it already."""
    from diffusers import DDPMScheduler

    said = said or model_prediction(scheduler.config, spec)
    chosen = Prediction(
        said.type if prediction_type == "auto" else prediction_type,
        said.zero_terminal_snr if zero_terminal_snr is None else zero_terminal_snr,
    )
    extra = {"timestep_spacing": "trailing"} if chosen.zero_terminal_snr else {}
    schedule = DDPMScheduler.from_config(
        scheduler.config, prediction_type=chosen.type, rescale_betas_zero_snr=chosen.zero_terminal_snr, **extra)
    return schedule, chosen


def sampling_settings(scheduler_config: Any) -> dict[str, Any]:
    """Scheduler overrides and pipeline arguments that sample a model trained on ``scheduler_config``."""
    zsnr = bool(scheduler_config.get("rescale_betas_zero_snr", False))
    if not zsnr:
        return {"scheduler": {}, "call": {}}
    # the last step must start from pure noise: trailing timesteps, and a final sigma of zero
    return {"scheduler": {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
                          "final_sigmas_type": "zero"},
            "call": {"guidance_rescale": GUIDANCE_RESCALE}}
