"""Stable Diffusion XL (and its lineages: Pony, Illustrious, NoobAI): two text encoders, 1024 px.

What differs from SD-1.5:
- the text conditioning is CLIP-L's and OpenCLIP bigG's penultimate hidden states side by side
  (768 + 1280 = 2048 wide), and the UNet also takes bigG's pooled, projected output;
- the UNet is told each image's original size, the crop's top-left corner and the target size
  (``time_ids``), so a cropped or upscaled photo does not teach it crops and blur;
- kohya's files name UNet modules by the original (LDM/SGM) block names
  (``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``) and the encoders
  ``lora_te1_``/``lora_te2_``; ComfyUI and AUTOMATIC1111 map those names, not diffusers' own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loratui.engine.families.base import Components, Family, ModelSpec, first_line, quiet_libraries

# The LDM names of a ResNet block's layers (for LoCon-style targets on convolutions).
_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
_FIXED = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
          "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
          "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
LAYERS_PER_BLOCK = 2  # SDXL's: each level has 2 resnets (+1 slot for the down/upsampler)

# The real SDXL topology at tiny widths: the same blocks, transformer depths (1, 2, 10) and text
# encoder depths (12 and 32 layers), so a tiny LoRA's key names are a real SDXL LoRA's.
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [16, 32, 64],
    "layers_per_block": LAYERS_PER_BLOCK,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [2, 4, 8],
    "norm_num_groups": 8,
    "cross_attention_dim": 80,  # text_encoder (32) + text_encoder_2 (48)
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + 48,  # six size numbers + the pooled text
}
TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 12, "num_attention_heads": 4,
             "max_position_embeddings": 77, "projection_dim": 32}
# bigG is wider than CLIP-L, here too: diffusers tells the two encoders of a single file apart by width
TINY_TEXT_2 = {**TINY_TEXT, "hidden_size": 48, "intermediate_size": 96, "projection_dim": 48,
               "num_hidden_layers": 32, "hidden_act": "gelu"}
TINY_VAE = {
    "sample_size": 64, "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8,
    "latent_channels": 4, "scaling_factor": 0.13025, "force_upcast": True,
}
SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "clip_sample": False,
             "steps_offset": 1, "timestep_spacing": "leading"}


class SDXL(Family):
    name = "sdxl"
    label = "SDXL"
    kohya_version = "sdxl_base_v1-0"
    modelspec_architecture = "stable-diffusion-xl-v1-base/lora"
    default_resolution = 1024
    text_encoders = ("text_encoder", "text_encoder_2")
    kohya_prefixes = {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
    pipeline_class = "StableDiffusionXLPipeline"
    module_classes = {**Family.module_classes, "text_encoder_2": "transformers.CLIPTextModelWithProjection"}
    tokenizer_folders = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}
    tiny_version = 2  # 2: text_encoder_2 wider than text_encoder, as in SDXL
    # What SDXL trainers' guides and hosted trainers use at 1024 px: a higher rank with alpha at
    # half of it (so these learning rates act like half as much at alpha = rank), and batch 2
    # (a 24 GB card's comfortable batch at 1024 px; --batch-size auto fits the GPU you have).
    preset_values = {
        "person": {"rank": 32, "alpha": 16.0, "lr": 2e-4, "batch_size": 2},
        "style": {"rank": 16, "alpha": 8.0, "lr": 1.5e-4, "batch_size": 2},
        "pet": {"rank": 16, "alpha": 8.0, "lr": 2e-4, "batch_size": 2},
    }

    def shipped_config_dir(self) -> Path:
        from loratui.engine.families.shipped import sdxl_config_dir

        return sdxl_config_dir()

    def load(self, spec: ModelSpec) -> Components:
        quiet_libraries()
        if spec.kind == "single_file":
            return self._load_single_file(spec)
        location = str(self.config_folder(spec)) if spec.kind == "tiny" else spec.location
        return self.load_pretrained(spec, location)

    def _load_single_file(self, spec: ModelSpec) -> Components:
        """An SDXL checkpoint as Civitai ships Pony, Illustrious or NoobAI (SGM key names, bigG in
        OpenCLIP's layout), with the shipped configs: offline."""
        import torch
        from diffusers import DDPMScheduler, StableDiffusionXLPipeline

        from loratui.engine.families.sd15 import require_complete

        config_dir = self.config_folder(spec)  # outside the try: it has its own one-line errors
        try:
            pipe = StableDiffusionXLPipeline.from_single_file(
                spec.location, config=str(config_dir), local_files_only=True, torch_dtype=torch.float32,
                add_watermarker=False,
            )
        except Exception as exc:  # diffusers raises many kinds here; the user needs one line
            from loratui.engine.errors import ModelError

            raise ModelError(f"{spec.location}: not an SDXL checkpoint loratui can read: {first_line(exc)}",
                             "pass an SDXL .safetensors or a diffusers folder") from None
        modules = {name: getattr(pipe, name) for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
        require_complete(spec, modules)
        tokenizers = {"text_encoder": pipe.tokenizer, "text_encoder_2": pipe.tokenizer_2}
        return Components(self, spec, modules, tokenizers, DDPMScheduler.from_config(pipe.scheduler.config))

    def encode_text(self, encoders: dict[str, Any], tokenizers: dict[str, Any], captions: list[str],
                    device: Any) -> dict[str, Any]:
        import torch

        states, pooled = [], None
        for name in self.text_encoders:
            tokenizer = tokenizers[name]
            ids = tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            out = encoders[name](ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])  # the penultimate layer, as SDXL was trained
            pooled = out[0]  # the last encoder's projected pooled output (text_embeds)
        return {"states": torch.cat(states, dim=-1), "pooled": pooled}

    def predict(self, unet: Any, noisy: Any, timesteps: Any, text: dict[str, Any], sizes: Any = None) -> Any:
        if sizes is None:  # no crop, nothing upscaled: the latents' own size
            import torch

            height, width = noisy.shape[-2] * 8, noisy.shape[-1] * 8
            sizes = torch.tensor([[height, width, 0, 0, height, width]], device=noisy.device).expand(len(noisy), 6)
        added = {"text_embeds": text["pooled"], "time_ids": sizes.to(text["pooled"].dtype)}
        return unet(noisy, timesteps, text["states"], added_cond_kwargs=added, return_dict=False)[0]

    def dummy_conditioning(self, unet_config: dict[str, Any], batch: int, device: Any, dtype: Any
                           ) -> tuple[dict[str, Any], Any]:
        import torch

        pooled_dim = unet_config["projection_class_embeddings_input_dim"] - 6 * unet_config["addition_time_embed_dim"]
        text = {"states": torch.randn(batch, 77, unet_config["cross_attention_dim"], device=device, dtype=dtype),
                "pooled": torch.randn(batch, pooled_dim, device=device, dtype=dtype)}
        return text, torch.ones(batch, 6, device=device, dtype=dtype)

    def pipeline(self, modules: dict[str, Any], tokenizers: dict[str, Any], scheduler: Any) -> Any:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=modules["vae"],
            text_encoder=modules["text_encoder"],
            text_encoder_2=modules["text_encoder_2"],
            tokenizer=tokenizers["text_encoder"],
            tokenizer_2=tokenizers["text_encoder_2"],
            unet=modules["unet"],
            scheduler=scheduler,
            add_watermarker=False,
        )

    def kohya_unet_module(self, module: str) -> str:
        return ldm_unet_module(module)

    def build_tiny(self, tokenizer):
        """The tiny SDXL pipeline's modules (see TINY_UNET)."""
        from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

        from loratui.engine.families.tiny import text_encoder

        unet = UNet2DConditionModel(**TINY_UNET)
        vae = AutoencoderKL(**TINY_VAE)
        first = text_encoder(tokenizer, TINY_TEXT)
        second = text_encoder(tokenizer, TINY_TEXT_2, projection=True)
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=first, text_encoder_2=second, tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=unet, scheduler=DDPMScheduler(**SCHEDULER), add_watermarker=False,
        )


def ldm_unet_module(module: str, layers_per_block: int = LAYERS_PER_BLOCK, up_attention: tuple = (True, True, False)
                    ) -> str:
    """A diffusers SDXL UNet module path under its original LDM/SGM name (kohya's SDXL naming).

    Level i's layer j is ``input_blocks.{1 + i*(L+1) + j}`` (``.0`` the resnet, ``.1`` the
    transformer) going down and ``output_blocks.{i*(L+1) + j}`` going up; the middle block is
    resnet, transformer, resnet.
    """
    per = layers_per_block + 1
    for old, new in _FIXED.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old):]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(\..+)?", module):
        index = 1 + int(m[1]) * per + int(m[3])
        return f"input_blocks.{index}." + _inner(m[2], m[4] or "")
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(\..+)?", module):
        return f"input_blocks.{(int(m[1]) + 1) * per}.0.op{m[2] or ''}"
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)(\..+)?", module):
        index = 1 if m[1] == "attentions" else 2 * int(m[2])
        return f"middle_block.{index}" + (_inner(m[1], m[3] or "")[1:] if m[1] == "resnets" else (m[3] or ""))
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)(\..+)?", module):
        index = int(m[1]) * per + int(m[3])
        return f"output_blocks.{index}." + _inner(m[2], m[4] or "")
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv(\..+)?", module):
        i = int(m[1])
        slot = 2 if up_attention[i] else 1
        return f"output_blocks.{i * per + per - 1}.{slot}.conv{m[2] or ''}"
    raise KeyError(f"no LDM name for SDXL UNet module {module}")


def _inner(kind: str, rest: str) -> str:
    """``0.<resnet layer>`` or ``1.<transformer path>`` inside an LDM block."""
    if kind == "attentions":
        return "1" + rest
    tail = rest[1:]
    for old, new in _RESNET:
        if tail == old or tail.startswith(old + "."):
            tail = new + tail[len(old):]
            break
    return "0." + tail if tail else "0"
