"""The UNet as a loss sees it: captions in, the family's prediction and target out.

The training step, the validation loss and the probe all ask the same two questions (what does
the model predict for these noisy latents, and what should it have predicted); the family
answers the first, the noise scheduler's prediction type the second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from loratui.engine.families import Family


@dataclass
class Denoiser:
    family: Family
    unet: Any
    condition: Callable[[list[str]], dict[str, Any]]  # captions -> named conditioning tensors
    noise_scheduler: Any

    @property
    def v_prediction(self) -> bool:
        return self.noise_scheduler.config.prediction_type == "v_prediction"

    def predict(self, noisy: Any, timesteps: Any, text: dict[str, Any], sizes: Any = None) -> Any:
        """The UNet's output; ``text`` from ``condition(captions)``."""
        return self.family.predict(self.unet, noisy, timesteps, text, sizes)

    def target(self, latents: Any, noise: Any, timesteps: Any) -> Any:
        """What the UNet should output: the noise, or the velocity for v-prediction models."""
        return self.noise_scheduler.get_velocity(latents, noise, timesteps) if self.v_prediction else noise
