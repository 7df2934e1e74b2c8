"""The LoRA as users load it: kohya format (AUTOMATIC1111, ComfyUI) and diffusers format.

kohya keys (``lora_unet_…``, ``lora_te_…``, ``.alpha``) come from diffusers' own converter;
it sets every ``.alpha`` to the rank, so the real alpha is written here. Metadata follows
kohya's ``ss_*`` keys, plus the ``sshs_*`` hashes A1111 shows as the model hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loratui.engine import atomic, faults

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def canonical_text_keys(te_sd: dict[str, Any]) -> dict[str, Any]:
    """Text-encoder keys as SD checkpoints name them (``text_model.encoder…``).

    transformers 5 flattened CLIPTextModel (``encoder.layers…``); AUTOMATIC1111, ComfyUI and
    older diffusers expect the ``text_model.`` prefix, and current diffusers accepts it too.
    """
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in te_sd.items()}


def to_kohya(unet_sd: dict[str, Any], te_sd: dict[str, Any] | None, alpha: float, dtype: str) -> dict:
    """peft-format adapter weights → kohya-format tensors in ``dtype`` with the real alpha."""
    import torch
    from diffusers.utils.state_dict_utils import convert_state_dict_to_kohya

    torch_dtype = getattr(torch, DTYPES[dtype])
    combined = {f"unet.{k}": v for k, v in unet_sd.items()}
    if te_sd:
        combined.update({f"text_encoder.{k}": v for k, v in canonical_text_keys(te_sd).items()})
    kohya = convert_state_dict_to_kohya(combined)
    out: dict[str, Any] = {}
    for key, value in kohya.items():
        key = key.replace("lora_te1_", "lora_te_")  # SD-1.x has one text encoder: kohya says lora_te_
        if key.endswith(".alpha"):
            out[key] = torch.tensor(float(alpha), dtype=torch_dtype)
        else:
            out[key] = value.detach().to("cpu", torch_dtype).contiguous()
    return out


def model_hashes(tensors: dict[str, Any]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as kohya computes them: over the file without metadata."""
    from safetensors.torch import save

    data = save(tensors)
    header_len = int.from_bytes(data[:8], "little")
    full = hashlib.sha256(data[8 + header_len :]).hexdigest()
    legacy = hashlib.sha256(data[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    return full, legacy


def save_kohya(path: Path, tensors: dict[str, Any], metadata: dict[str, Any], fault_point: str = "") -> Path:
    """Write a kohya-format LoRA atomically, with ``ss_*`` metadata and the model hashes."""
    from safetensors.torch import save

    full, legacy = model_hashes(tensors)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta.update(sshs_model_hash=full, sshs_legacy_hash=legacy)
    data = save(tensors, metadata=meta)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data[: len(data) // 2])
            if fault_point:  # the reliability tests crash or fill the disk half way through
                faults.maybe_kill(fault_point)
                faults.maybe_disk_full(fault_point)
            fh.write(data[len(data) // 2 :])
    return path


def save_diffusers(
    folder: Path,
    unet_sd: dict[str, Any],
    te_sd: dict[str, Any] | None,
    unet_meta: dict[str, Any],
    te_meta: dict[str, Any] | None,
    dtype: str,
) -> Path:
    """Write ``folder/pytorch_lora_weights.safetensors`` with diffusers' own serializer, atomically."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    torch_dtype = getattr(torch, DTYPES[dtype])
    cast = lambda sd: {k: v.to(torch_dtype) for k, v in sd.items()}  # noqa: E731
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".diffusers-", dir=folder.parent))
    try:
        StableDiffusionPipeline.save_lora_weights(
            staging,
            unet_lora_layers=convert_state_dict_to_diffusers(cast(unet_sd)),
            text_encoder_lora_layers=(
                convert_state_dict_to_diffusers(cast(canonical_text_keys(te_sd))) if te_sd else None
            ),
            unet_lora_adapter_metadata=unet_meta,
            text_encoder_lora_adapter_metadata=te_meta if te_sd else None,
        )
        target = folder / "pytorch_lora_weights.safetensors"
        os.replace(staging / "pytorch_lora_weights.safetensors", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def kohya_metadata(**values: Any) -> dict[str, str]:
    """``ss_*`` metadata from keyword values (``network_dim=16`` → ``ss_network_dim``)."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        out[f"ss_{key}"] = str(value)
    return out
