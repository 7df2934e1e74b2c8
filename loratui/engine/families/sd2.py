"""Stable Diffusion 2.x: SD-1.5's layout with an OpenCLIP-H text encoder (its penultimate layer is
the diffusers model's last: the converted encoder has 23 layers), linear attention projections,
and kohya's ``ss_v2``. 2.x base is epsilon at 512 px; 768-v is v-prediction at 768 px, which a
single file does not say: ``--prediction-type v_prediction`` (a diffusers folder says it itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loratui.engine.families.base import ModelSpec
from loratui.engine.families.sd15 import SD15

# SD-2's topology at tiny widths: SD-1.5's blocks, linear projections, a 23-layer text encoder,
# v-prediction (as 768-v); the cross-attention width (48) tells it from tiny SD-1.5's (32).
TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [16, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
    "cross_attention_dim": 48, "attention_head_dim": [2, 2, 4, 4], "use_linear_projection": True,
}
TINY_TEXT = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 23, "num_attention_heads": 4,
             "max_position_embeddings": 77, "projection_dim": 48, "hidden_act": "gelu"}


class SD2(SD15):
    name = "sd2"
    label = "SD-2.x"
    kohya_version = "sd_v2"
    modelspec_architecture = "stable-diffusion-v2-512/lora"
    v2 = True

    def architecture(self, v_pred: bool) -> str:
        return "stable-diffusion-v2-768-v/lora" if v_pred else self.modelspec_architecture

    def training_resolution(self, spec: ModelSpec, v_pred: bool) -> int:
        """2.x base is 512 px, 768-v 768 px: a diffusers folder's UNet says which (its latent
        size), a single file cannot, so v-prediction stands for 768-v there."""
        if spec.kind == "diffusers":
            try:
                size = json.loads((Path(spec.location) / "unet" / "config.json").read_text(encoding="utf-8"))["sample_size"]
                if isinstance(size, int) and 32 <= size <= 256:
                    return size * 8
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return 768 if v_pred else 512

    def shipped_config_dir(self) -> Path:
        from loratui.engine.families.shipped import sd2_config_dir

        return sd2_config_dir()

    def build_tiny(self, tokenizer: Any) -> Any:
        from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel

        from loratui.engine.families.tiny import SCHEDULER_CONFIG, VAE_CONFIG, text_encoder

        unet = UNet2DConditionModel(**TINY_UNET)
        vae = AutoencoderKL(**VAE_CONFIG)
        encoder = text_encoder(tokenizer, TINY_TEXT)
        return StableDiffusionPipeline(
            vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet,
            scheduler=DDPMScheduler(**{**SCHEDULER_CONFIG, "prediction_type": "v_prediction"}),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
