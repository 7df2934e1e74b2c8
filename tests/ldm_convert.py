"""Test helper: a diffusers SD-1.x pipeline's weights as one original-LDM (A1111) state dict.

The inverse of what diffusers' ``from_single_file`` does, written from the LDM key layout so
that loading a file made here exercises the real conversion path. It works from the models'
configs, so both the tiny model (1 resnet per block) and SD-1.5 (2 per block) convert.

LDM layout, with L = layers_per_block:
- UNet ``model.diffusion_model.``: ``input_blocks.0.0`` is conv_in; down block i, layer j is
  ``input_blocks.{1 + i*(L+1) + j}`` (``.0`` resnet, ``.1`` transformer); its downsampler is
  ``input_blocks.{(i+1)*(L+1)}.0.op``; ``middle_block.{0,1,2}`` = resnet, transformer, resnet;
  up block i, layer j is ``output_blocks.{i*(L+1) + j}``, the upsampler at the block's last
  layer, after the transformer when there is one (``.2.conv``) or else ``.1.conv``.
- VAE ``first_stage_model.``: ``encoder.down.{i}.block.{j}``, ``decoder.up.{n-1-i}.block.{j}``
  (the decoder's up list is stored in reverse), ``mid.block_1/attn_1/block_2``, and the mid
  attention as 1x1 convs ``q/k/v/proj_out`` with ``norm``.
- CLIP ``cond_stage_model.transformer.text_model.`` + the transformers key.
"""

from __future__ import annotations

import re
from typing import Any

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "cond_stage_model.transformer.text_model."

UNET_RESNET = [
    ("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"),
]
VAE_ATTENTION = [
    ("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"),
]


def _rename(rest: str, table: list[tuple[str, str]]) -> str:
    for old, new in table:
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    """The UNet's weights under LDM names (``model.diffusion_model.*``)."""
    per_block = unet.config.layers_per_block + 1  # resnets (+ a downsampler/upsampler slot)
    up_has_attention = ["CrossAttn" in t for t in unet.config.up_block_types]
    fixed = {
        "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
        # SDXL's size and pooled-text embedding
        "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if module in fixed:
            new = f"{fixed[module]}.{leaf}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = 1 + i * per_block + j
            new = f"input_blocks.{index}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" \
                else f"input_blocks.{index}.1.{rest}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * per_block}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_rename(m[2], UNET_RESNET)}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            index = i * per_block + j
            new = f"output_blocks.{index}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" \
                else f"output_blocks.{index}.1.{rest}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            i = int(m[1])
            slot = 2 if up_has_attention[i] else 1
            new = f"output_blocks.{i * per_block + per_block - 1}.{slot}.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[UNET + new] = value
    assert len(out) == len(unet.state_dict()), "two UNet keys mapped to one LDM name"
    return out


def vae_to_ldm(vae: Any) -> dict[str, torch.Tensor]:
    """The VAE's weights under LDM names (``first_stage_model.*``), mid attention as 1x1 convs."""
    n_blocks = len(vae.config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        new = key
        if m := re.match(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            new = f"{m[1]}.norm_out.{m[2]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            new = f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            new = f"{m[1]}.mid.attn_1.{_rename(m[2], VAE_ATTENTION)}"
            if value.ndim == 2:  # LDM's AttnBlock uses 1x1 convs where diffusers uses linears
                value = value[:, :, None, None]
        elif not re.match(r"(encoder|decoder)\.conv_(in|out)\.|(post_)?quant_conv\.", key):
            raise KeyError(f"no LDM name for VAE key {key}")
        out[VAE + new] = value
    return out


def clip_to_ldm(text_encoder: Any) -> dict[str, torch.Tensor]:
    """The CLIP text encoder under A1111's names (``cond_stage_model.transformer.text_model.*``)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in text_encoder.state_dict().items():
        # transformers < 5.6 wraps the model in `text_model.`; later versions do not.
        out[CLIP + key.removeprefix("text_model.")] = value
    # Real SD-1.x files carry this buffer; transformers no longer saves it, loaders must cope.
    positions = text_encoder.config.max_position_embeddings
    out[CLIP + "embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def pipeline_to_ldm(unet: Any, vae: Any, text_encoder: Any) -> dict[str, torch.Tensor]:
    """One A1111-style state dict, with the DDPM schedule buffers real SD-1.x files also hold."""
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae), **clip_to_ldm(text_encoder)}
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    state["betas"] = betas.float()
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return {key: value.detach().contiguous() for key, value in state.items()}


SGM_CLIP_L = "conditioner.embedders.0.transformer.text_model."
SGM_BIGG = "conditioner.embedders.1.model."
OPEN_CLIP_LAYER = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def open_clip_bigg(encoder: Any, extra_layer: bool = False) -> dict[str, torch.Tensor]:
    """A CLIP text encoder in OpenCLIP's layout (``transformer.resblocks.N.attn.in_proj_*`` holding
    q, k and v stacked; ``text_projection`` as a (width, dim) matrix), as SDXL files keep bigG and
    SD-2 files OpenCLIP-H. ``extra_layer``: SD-2 files hold OpenCLIP-H's 24th layer, unused (a copy)."""
    state = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    width = encoder.config.hidden_size
    projection = state.get("text_projection.weight", torch.eye(width))
    out = {
        "token_embedding.weight": state["embeddings.token_embedding.weight"],
        "positional_embedding": state["embeddings.position_embedding.weight"],
        "ln_final.weight": state["final_layer_norm.weight"],
        "ln_final.bias": state["final_layer_norm.bias"],
        "text_projection": projection.T.contiguous(),
    }
    layers = encoder.config.num_hidden_layers
    for i in range(layers + (1 if extra_layer else 0)):
        source = min(i, layers - 1)
        layer = f"encoder.layers.{source}."
        block = f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[block + f"attn.in_proj_{kind}"] = torch.cat(
                [state[layer + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for old, new in OPEN_CLIP_LAYER:
                out[block + f"{new}.{kind}"] = state[layer + f"{old}.{kind}"].clone()
    return out


def sdxl_pipeline_to_sgm(pipe: Any) -> dict[str, torch.Tensor]:
    """An SDXL pipeline as one SGM-layout state dict, the way Civitai's SDXL files are laid out."""
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae)}
    for key, value in pipe.text_encoder.state_dict().items():
        state[SGM_CLIP_L + key.removeprefix("text_model.")] = value
    state.update({SGM_BIGG + k: v for k, v in open_clip_bigg(pipe.text_encoder_2).items()})
    return {key: value.detach().contiguous() for key, value in state.items()}


def sd2_pipeline_to_ldm(pipe: Any) -> dict[str, torch.Tensor]:
    """An SD-2.x pipeline as an A1111-style file: OpenCLIP-H under ``cond_stage_model.model.``."""
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae)}
    state.update({"cond_stage_model.model." + k: v for k, v in open_clip_bigg(pipe.text_encoder, True).items()})
    return {key: value.detach().contiguous() for key, value in state.items()}
