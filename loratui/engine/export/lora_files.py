"""The LoRA as users load it: kohya format (AUTOMATIC1111, ComfyUI) and diffusers format.

kohya keys (``lora_unet_…``, ``lora_te_…``, ``.alpha``) are named as the family names its
modules, with the real alpha beside each. Metadata follows
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


PEFT_TO_KOHYA = {".lora_A.weight": ".lora_down.weight", ".lora_B.weight": ".lora_up.weight"}


def kohya_names(family: Any, adapters: dict[str, dict[str, Any]]) -> dict[str, str]:
    """peft key (``component.module.lora_A.weight``) → kohya key, as the family names modules.

    kohya's name of a module is its prefix (``lora_unet``, ``lora_te``, ``lora_te1``…) and its
    dotted path with every dot made ``_``; the UNet path is the family's own (SDXL's kohya files
    use the original LDM block names), the text encoders' carry ``text_model.``.
    """
    names = {}
    for component, state in adapters.items():
        prefix = family.kohya_prefixes[component]
        for key in state:
            module, suffix = next((key[: -len(p)], k) for p, k in PEFT_TO_KOHYA.items() if key.endswith(p))
            if component == "unet":
                module = family.kohya_unet_module(module)
            elif not module.startswith("text_model."):
                module = f"text_model.{module}"  # see canonical_text_keys
            names[f"{component}.{key}"] = f"{prefix}_{module.replace('.', '_')}{suffix}"
    return names


def to_kohya(family: Any, adapters: dict[str, dict[str, Any]], alpha: float, dtype: str) -> dict:
    """peft-format adapter weights per component → kohya-format tensors in ``dtype``, with the
    real alpha beside each module (diffusers' converter writes the rank there)."""
    import torch

    torch_dtype = getattr(torch, DTYPES[dtype])
    names = kohya_names(family, adapters)
    out: dict[str, Any] = {}
    for component, state in adapters.items():
        for key, value in state.items():
            kohya = names[f"{component}.{key}"]
            out[kohya] = value.detach().to("cpu", torch_dtype).contiguous()
            out[kohya.split(".")[0] + ".alpha"] = torch.tensor(float(alpha), dtype=torch_dtype)
    return dict(sorted(out.items()))


def model_hashes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as kohya's sd-scripts computes them.

    Both are taken over the file serialised with only the training metadata (the ``ss_*``
    keys, which never change after training): the model hash over the bytes after the header
    (the tensors), the legacy hash over the 64 KiB at offset 1 MiB of the whole file, header
    included, so it changes with the ``ss_*`` metadata too. A LoRA under 1 MiB has the hash of
    nothing there (``e3b0c442``), as in kohya.
    """
    from safetensors.torch import save

    training = {k: v for k, v in (metadata or {}).items() if k.startswith("ss_")}
    data = save(tensors, metadata=training or None)
    header_len = int.from_bytes(data[:8], "little")
    full = hashlib.sha256(data[8 + header_len :]).hexdigest()
    legacy = hashlib.sha256(data[0x100000 : 0x100000 + 0x10000]).hexdigest()[:8]
    return full, legacy


def save_kohya(path: Path, tensors: dict[str, Any], metadata: dict[str, Any], fault_point: str = "") -> Path:
    """Write a kohya-format LoRA atomically, with ``ss_*`` metadata and the model hashes."""
    from safetensors.torch import save

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    full, legacy = model_hashes(tensors, meta)
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
    family: Any,
    adapters: dict[str, dict[str, Any]],
    metas: dict[str, dict[str, Any]],
    dtype: str,
) -> Path:
    """Write ``folder/pytorch_lora_weights.safetensors`` with diffusers' own serializer (the
    family's pipeline class), atomically."""
    import diffusers
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers

    torch_dtype = getattr(torch, DTYPES[dtype])
    layers, adapter_meta = {}, {}
    for component, state in adapters.items():
        if component != "unet":
            state = canonical_text_keys(state)
        layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(
            {k: v.to(torch_dtype) for k, v in state.items()})
        adapter_meta[f"{component}_lora_adapter_metadata"] = metas[component]
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".diffusers-", dir=folder.parent))
    try:
        getattr(diffusers, family.pipeline_class).save_lora_weights(staging, **layers, **adapter_meta)
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
