"""Stable Diffusion 1.x: one CLIP-L text encoder, 512 px, kohya's ``lora_unet_``/``lora_te_`` keys.

Loads a diffusers folder or hub id with diffusers, and an A1111-style single file offline with
the component configs loratui ships (``loratui/configs/sd15``, see ``shipped``). The
embedded ``tiny`` model is this family at tiny widths (``engine/tiny.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine.errors import ModelError
from loratui.engine.families.base import (
    Components, Family, ModelSpec, config_family, first_line, load_error, quiet_libraries,
)


class SD15(Family):
    name = "sd15"
    label = "SD-1.5"
    kohya_version = "sd_v1"
    modelspec_architecture = "stable-diffusion-v1/lora"

    def shipped_config_dir(self) -> Path:
        from loratui.engine.families.shipped import sd15_config_dir

        return sd15_config_dir()

    def load(self, spec: ModelSpec) -> Components:
        quiet_libraries()
        if spec.kind == "single_file":
            return self._load_single_file(spec)
        location = str(self.config_folder(spec)) if spec.kind == "tiny" else spec.location
        if spec.kind == "hub":  # a hub id's family is known once its UNet config is here
            from diffusers import UNet2DConditionModel

            try:
                actual = config_family(dict(UNet2DConditionModel.load_config(location, subfolder="unet")))
            except (OSError, ValueError) as exc:
                raise load_error(spec, exc) from None
            if actual != self.name:
                return self.load_as(spec, actual)
        return self.load_pretrained(spec, location)

    def _load_single_file(self, spec: ModelSpec) -> Components:
        """An A1111-style checkpoint with the config folder its shapes call for, offline."""
        import torch
        from diffusers import DDPMScheduler, StableDiffusionPipeline

        from loratui.engine.families.shipped import checkpoint_family
        from loratui.engine.families.tiny import TINY_NAMES

        found = checkpoint_family(Path(spec.location))
        family = TINY_NAMES.get(found, found)
        if family != self.name:  # a pickle: resolve_model did not open it
            return self.load_as(spec, family)
        config_dir = self.config_folder(spec)  # outside the try: it has its own one-line errors
        try:
            pipe = StableDiffusionPipeline.from_single_file(
                spec.location,
                config=str(config_dir),
                local_files_only=True,
                torch_dtype=torch.float32,  # most shared checkpoints are fp16; training wants an fp32 base
                safety_checker=None,
                requires_safety_checker=False,
            )
        except Exception as exc:  # diffusers raises many kinds here; the user needs one line
            raise ModelError(
                f"{spec.location}: not an {self.label} checkpoint loratui can read: {first_line(exc)}",
                f"pass an {self.label} .safetensors or a diffusers folder",
            ) from None
        modules = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
        require_complete(spec, modules)
        scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return Components(self, spec, modules, {"text_encoder": pipe.tokenizer}, scheduler)

    def build_tiny(self, tokenizer: Any) -> Any:
        from loratui.engine.families.tiny import build_sd15

        return build_sd15(tokenizer)

    def encode_text(self, encoders: dict[str, Any], tokenizers: dict[str, Any], captions: list[str],
                    device: Any) -> dict[str, Any]:
        tokenizer = tokenizers["text_encoder"]
        ids = tokenizer(
            list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)
        return {"states": encoders["text_encoder"](ids, return_dict=False)[0]}

    def pipeline(self, modules: dict[str, Any], tokenizers: dict[str, Any], scheduler: Any) -> Any:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=modules["vae"],
            text_encoder=modules["text_encoder"],
            tokenizer=tokenizers["text_encoder"],
            unet=modules["unet"],
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )


def require_complete(spec: ModelSpec, modules: dict[str, Any]) -> None:
    """diffusers leaves a weight a single file lacks on the meta device, and says nothing: name it."""
    for part, module in modules.items():
        missing = [name for name, p in module.named_parameters() if p.is_meta]
        if missing:
            raise ModelError(
                f"{spec.location}: the {part} weights are incomplete ({len(missing)} missing, e.g. {missing[0]})",
                "pass a full checkpoint (UNet, VAE and text encoders) or a diffusers folder",
            )
