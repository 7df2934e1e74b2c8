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


# peft's tensor names → the kohya/LyCORIS names AUTOMATIC1111 and ComfyUI read, per network type
PEFT_TO_KOHYA = {
    ".lora_A.weight": ".lora_down.weight", ".lora_B.weight": ".lora_up.weight",
    ".lora_magnitude_vector": ".dora_scale",
    **{f".hada_{p}": f".hada_{p}" for p in ("w1_a", "w1_b", "w2_a", "w2_b", "t1", "t2")},
    **{f".lokr_{p}": f".lokr_{p}" for p in ("w1", "w1_a", "w1_b", "w2", "w2_a", "w2_b", "t2")},
}
# what diffusers' LoRA loader cannot read: it has no LoHa or LoKr (peft's own formats)
NO_DIFFUSERS = (".hada_", ".lokr_")


def split_key(key: str) -> tuple[str, str] | None:
    """(module path, peft suffix) of a peft adapter key; None for anything else."""
    return next(((key[: -len(p)], p) for p in PEFT_TO_KOHYA if key.endswith(p)), None)


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
            split = split_key(key)
            if split is None:  # the rank and alpha lora_state_dict keeps beside the weights
                continue
            module, suffix = split
            names[f"{component}.{key}"] = f"{prefix}_{kohya_module(family, component, module)}{PEFT_TO_KOHYA[suffix]}"
    return names


def kohya_module(family: Any, component: str, module: str) -> str:
    """A module's kohya name less its prefix (see ``kohya_names``)."""
    if component == "unet":
        module = family.kohya_unet_module(module)
    elif not module.startswith("text_model."):
        module = f"text_model.{module}"  # see canonical_text_keys
    return module.replace(".", "_")


def to_kohya(family: Any, adapters: dict[str, dict[str, Any]], alpha: float, dtype: str) -> dict:
    """peft-format adapter weights per component → kohya/LyCORIS-format tensors in ``dtype``, with
    each module's real alpha beside it (diffusers' converter writes the rank there).

    ``alpha`` is every module's unless the state carries its own (``lora_state_dict`` keeps each
    module's rank and alpha for the network types other than LoRA). Where the loaders scale
    differently from peft, the tensors are made to agree: a LoKr module whose two factors are full
    matrices is applied at scale 1 by LyCORIS, ComfyUI and AUTOMATIC1111 (they have no rank to
    divide by) but at alpha/rank by peft, so its second factor carries peft's scale and its alpha is
    its rank, as LyCORIS writes it. DoRA's magnitude (one per output row in peft) is written
    ``dora_scale`` of shape (out, 1, …), the orientation loaders recognise as per output row.
    """
    import torch

    from loratui.engine.train.lora import ALPHA_KEY, RANK_KEY

    torch_dtype = getattr(torch, DTYPES[dtype])
    out: dict[str, Any] = {}
    for component, state in adapters.items():
        modules: dict[str, dict[str, Any]] = {}
        for key, value in state.items():
            split = split_key(key)
            if split is not None:
                modules.setdefault(split[0], {})[split[1]] = value.detach().to("cpu", torch.float32)
        prefix = family.kohya_prefixes[component]
        for module, tensors in modules.items():
            name = f"{prefix}_{kohya_module(family, component, module)}"
            module_alpha = float(state[module + ALPHA_KEY]) if module + ALPHA_KEY in state else float(alpha)
            rank = float(state[module + RANK_KEY]) if module + RANK_KEY in state else None
            if ".lokr_w1" in tensors and ".lokr_w2" in tensors and rank:
                tensors[".lokr_w2"] = tensors[".lokr_w2"] * (module_alpha / rank)
                module_alpha = rank
            if ".lora_magnitude_vector" in tensors:
                magnitude = tensors[".lora_magnitude_vector"]
                ndim = tensors[".lora_A.weight"].dim()
                tensors[".lora_magnitude_vector"] = magnitude.reshape(-1, *[1] * (ndim - 1))
            for suffix, value in tensors.items():
                out[name + PEFT_TO_KOHYA[suffix]] = value.to(torch_dtype).contiguous()
            out[name + ".alpha"] = torch.tensor(module_alpha, dtype=torch_dtype)
    return dict(sorted(out.items()))


def diffusers_can_load(adapters: dict[str, dict[str, Any]]) -> bool:
    """Whether diffusers' ``load_lora_weights`` reads these adapters (LoRA, LoCon, DoRA: yes;
    LoHa, LoKr: no)."""
    return not any(marker in key for state in adapters.values() for key in state for marker in NO_DIFFUSERS)


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
) -> Path | None:
    """Write ``folder/pytorch_lora_weights.safetensors`` with diffusers' own serializer (the
    family's pipeline class), atomically; nothing (None) for a network type diffusers cannot load
    (LoHa, LoKr: the run card says so)."""
    import diffusers
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers

    from loratui.engine.train.lora import weights_only

    if not diffusers_can_load(adapters):
        return None
    torch_dtype = getattr(torch, DTYPES[dtype])
    layers, adapter_meta = {}, {}
    for component, state in adapters.items():
        # diffusers' converter renames only the attention layers' keys: a LoCon or DoRA file would
        # mix two formats, and diffusers' loader would then skip the renamed ones. peft's own
        # format, which diffusers reads as it is, stays whole.
        convert = len(weights_only(state)) == len(state)  # plain LoRA: no rank and alpha entries
        state = weights_only(state)
        if component != "unet":
            state = canonical_text_keys(state)
        state = {k: v.to(torch_dtype) for k, v in state.items()}
        layers[f"{component}_lora_layers"] = convert_state_dict_to_diffusers(state) if convert else state
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
