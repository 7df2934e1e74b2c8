"""Which LoRA key names a base model accepts, as AUTOMATIC1111 and ComfyUI map them.

Derived from the base model itself, not from loratui's exporter: the model is built from its
configs on the meta device (no weights), every module that holds a weight is listed, and each
is given the names loaders look for:
- UNet: ``lora_unet_`` + its original LDM/SGM path with ``.`` made ``_`` (the path A1111 and
  ComfyUI patch, walked here from the UNet config), the same with the diffusers path (kohya's
  SD-1.x files use it; both UIs convert it), and ``unet.<diffusers path>`` for diffusers files;
- text encoders: ``lora_te_`` (SD-1/2) or ``lora_te1_``/``lora_te2_`` (SDXL) + the
  transformers path under ``text_model.``, and ``text_encoder[_2].text_model.…`` for diffusers.
Only the encoder layers' projections and the text projection are mapped: ComfyUI loads no
other text-encoder key.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per family: each text encoder's kohya prefixes (the first is the one kohya writes) and the name
# ComfyUI gives the encoder. Kept here, apart from the families' export data, so that verify
# checks the exporter instead of repeating it.
TEXT_NAMING: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "sd15": {"text_encoder": (("lora_te",), "clip_l")},
    "sd2": {"text_encoder": (("lora_te",), "clip_h")},
    # ComfyUI also takes SD-1 style lora_te_ keys for SDXL's CLIP-L
    "sdxl": {"text_encoder": (("lora_te1", "lora_te"), "clip_l"), "text_encoder_2": (("lora_te2",), "clip_g")},
}
TEXT_CLASSES = {"text_encoder": "CLIPTextModel", "text_encoder_2": "CLIPTextModelWithProjection"}

# A diffusers ResNet block's layers under their LDM names.
RESNET_LAYERS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
OUTSIDE_BLOCKS = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
                  "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
                  "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


@dataclass(frozen=True)
class Target:
    """A module of the base model that a LoRA key patches."""

    component: str  # "unet", "text_encoder", "text_encoder_2"
    name: str  # as ComfyUI names the weight's module: diffusion_model.input_blocks.4.1.… / clip_l.transformer.…
    shape: tuple[int, ...]  # its weight's shape
    block: str  # where it sits, for the strength per block: IN04, MID, OUT03, BASE, TE, TE1, TE2


@dataclass(frozen=True)
class KeyMap:
    """Every module name a loader accepts for one base model (a LoRA key less its suffix)."""

    family: str
    where: str  # the config folder it was derived from
    targets: dict[str, Target]


def ldm_blocks(config: dict[str, Any]) -> dict[str, str]:
    """diffusers UNet block path → LDM block path, walked from the UNet config the way the LDM
    UNet is built: input blocks level by level (resnet ``.0``, transformer ``.1``, then the
    downsampler), the middle block, then the output blocks with one more layer per level."""
    levels = len(config["block_out_channels"])
    per_level = config["layers_per_block"]
    per_level = list(per_level) if isinstance(per_level, (list, tuple)) else [per_level] * levels
    pairs: dict[str, str] = {}
    index = 1  # input_blocks.0 is conv_in
    for level, kind in enumerate(config["down_block_types"]):
        for layer in range(per_level[level]):
            pairs[f"down_blocks.{level}.resnets.{layer}"] = f"input_blocks.{index}.0"
            if "CrossAttn" in kind:
                pairs[f"down_blocks.{level}.attentions.{layer}"] = f"input_blocks.{index}.1"
            index += 1
        if level < levels - 1:
            pairs[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    pairs["mid_block.resnets.0"] = "middle_block.0"
    if "CrossAttn" in (config.get("mid_block_type") or "UNetMidBlock2DCrossAttn"):
        pairs["mid_block.attentions.0"] = "middle_block.1"
        pairs["mid_block.resnets.1"] = "middle_block.2"
    else:
        pairs["mid_block.resnets.1"] = "middle_block.1"
    index = 0
    reversed_layers = list(reversed(per_level))
    for level, kind in enumerate(config["up_block_types"]):
        for layer in range(reversed_layers[level] + 1):
            pairs[f"up_blocks.{level}.resnets.{layer}"] = f"output_blocks.{index}.0"
            if "CrossAttn" in kind:
                pairs[f"up_blocks.{level}.attentions.{layer}"] = f"output_blocks.{index}.1"
            index += 1
        if level < levels - 1:
            slot = 2 if "CrossAttn" in kind else 1
            pairs[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{index - 1}.{slot}.conv"
    return pairs


def ldm_module(path: str, blocks: dict[str, str]) -> str | None:
    """The LDM path of a diffusers UNet module path (None when it has no LDM twin)."""
    for old, new in OUTSIDE_BLOCKS.items():
        if path == old or path.startswith(old + "."):
            return new + path[len(old):]
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):  # the longest block path that contains it
        head = ".".join(parts[:cut])
        if head in blocks:
            rest = parts[cut:]
            if ".resnets." in head and rest:
                rest = RESNET_LAYERS.get(rest[0], rest[0]).split(".") + rest[1:]
            return ".".join([blocks[head], *rest])
    return None


def block_label(ldm: str) -> str:
    """IN04 / MID / OUT03 / BASE for an LDM path (the block names of A1111's block weights)."""
    if m := re.match(r"input_blocks\.(\d+)\.", ldm + "."):
        return f"IN{int(m[1]):02d}"
    if ldm.startswith("middle_block"):
        return "MID"
    if m := re.match(r"output_blocks\.(\d+)\.", ldm + "."):
        return f"OUT{int(m[1]):02d}"
    return "BASE"


def _weighted_modules(model: Any) -> dict[str, tuple[int, ...]]:
    import torch

    return {name: tuple(module.weight.shape) for name, module in model.named_modules()
            if name and isinstance(getattr(module, "weight", None), torch.Tensor)}


def unet_targets(config: dict[str, Any]) -> dict[str, Target]:
    """Every accepted UNet LoRA module name → its target (on the meta device: no weights)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    blocks = ldm_blocks(config)
    out: dict[str, Target] = {}
    for path, shape in _weighted_modules(unet).items():
        ldm = ldm_module(path, blocks)
        if ldm is None:
            continue
        target = Target("unet", f"diffusion_model.{ldm}", shape, block_label(ldm))
        out[f"lora_unet_{ldm.replace('.', '_')}"] = target
        out[f"lora_unet_{path.replace('.', '_')}"] = target
        for diffusers_name in (path, _old_processor_name(path)):
            out[f"unet.{diffusers_name}"] = target
            out[diffusers_name] = target  # peft's own files carry no component prefix
    return out


def _old_processor_name(path: str) -> str:
    """diffusers' first LoRA format named attention layers through their processor."""
    name = re.sub(r"\.(to_[qkv]|to_out)(\.0)?$", r".processor.\1", path)
    return name


def text_targets(family: str, component: str, config: dict[str, Any]) -> dict[str, Target]:
    """Every accepted LoRA module name of one text encoder → its target."""
    import torch
    import transformers

    prefixes, comfy = TEXT_NAMING[family][component]
    cls = getattr(transformers, TEXT_CLASSES[component])
    settings = {k: v for k, v in config.items() if not k.startswith("_")}
    with torch.device("meta"):
        model = cls(cls.config_class(**settings))
    label = "TE" if len(TEXT_NAMING[family]) == 1 else f"TE{component[-1] if component[-1].isdigit() else 1}"
    out: dict[str, Target] = {}
    for path, shape in _weighted_modules(model).items():
        canonical = path if path.startswith("text_model.") else f"text_model.{path}"
        if not (re.search(r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$", canonical)
                or path == "text_projection"):
            continue
        name = path if path == "text_projection" else canonical
        target = Target(component, f"{comfy}.transformer.{name}", shape, label)
        for prefix in prefixes:
            out[f"{prefix}_{name.replace('.', '_')}"] = target
        out[f"{component}.{name}"] = target
    return out


@functools.lru_cache(maxsize=8)
def key_map(config_folder: str, family: str) -> KeyMap:
    """The key map of the base model whose diffusers configs are in ``config_folder``."""
    from loratui.engine.families.base import quiet_libraries

    quiet_libraries()
    folder = Path(config_folder)
    targets = unet_targets(_config(folder / "unet" / "config.json"))
    for component in TEXT_NAMING[family]:
        targets.update(text_targets(family, component, _config(folder / component / "config.json")))
    return KeyMap(family, config_folder, targets)


def _config(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
