"""Stable Diffusion 2.x: SD-1.5's layout with an OpenCLIP-H text encoder (its penultimate layer is
the diffusers model's last: the converted encoder has 23 layers) and kohya's ``ss_v2``."""

from __future__ import annotations

from loratui.engine.families.sd15 import SD15


class SD2(SD15):
    name = "sd2"
    label = "SD-2.x"
    kohya_version = "sd_v2"
    modelspec_architecture = "stable-diffusion-v2-512/lora"
    v2 = True
