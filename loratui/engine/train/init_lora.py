"""``--init-lora``: start a run from an existing LoRA instead of from zero.

Staged training (a general LoRA first, then the user's own subject) and "train more" on a
finished run. Any kohya file (``lora_unet_…``, as loratui, kohya and the trainers the field
uses write it) or diffusers/peft file of the same model family and plain LoRA type is read
with the shared reader (export/lora_reader.py) and mapped back onto this run's adapters by the
names the exporter gives them, so a LoRA loratui wrote comes back exactly.

The file's own scale (alpha/rank) is kept: when its alpha differs from this run's, the up
weights are rescaled so the LoRA starts out doing exactly what the file does. A different
rank is an error naming the flag that fixes it; modules only one side has are a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loratui.engine.errors import ConfigError
from loratui.engine.events import EventBus, WarningRaised
from loratui.engine.export.lora_files import kohya_names
from loratui.engine.export.lora_reader import LoraFileError, read_lora
from loratui.engine.train import lora
from loratui.engine.hashing import file_sha256

DOWN, UP = ".lora_A.weight", ".lora_B.weight"


def resolve_init_lora(text: str) -> Path:
    """The LoRA file ``--init-lora`` names: a file, or a run folder's final (else newest) LoRA."""
    path = Path(text).expanduser()
    if not path.is_dir():
        return path
    final = path / f"{path.name}.safetensors"
    if final.is_file():
        return final
    steps = sorted(path.glob(f"{path.name}-step*.safetensors"))
    if steps:
        return steps[-1]
    raise ConfigError(f"{path}: --init-lora: this folder holds no LoRA ({path.name}.safetensors)",
                      "pass a .safetensors LoRA file, or a run folder that saved one")


def start_from(text: str, family: Any, trained: dict[str, Any], accelerator: Any, config: Any,
               bus: EventBus) -> dict[str, str]:
    """Load the LoRA ``text`` names into the adapters of ``trained`` (component name → model);
    returns the parent record (file name and sha256) for the metadata and the run card."""
    import torch

    path = resolve_init_lora(text)
    if getattr(config, "network", "lora") != "lora":
        raise ConfigError(f"--init-lora {path}: continuing is for plain LoRA runs; this run trains {config.network}",
                          "drop --init-lora, or train with --network lora")
    try:
        source = read_lora(path)
    except LoraFileError as exc:
        raise ConfigError(f"--init-lora: {exc.message}", exc.hint) from None
    other = sorted({m.kind for m in source.modules.values()} - {"LoRA"})
    if other:
        raise ConfigError(f"{path}: --init-lora: a {'/'.join(other)} network; this run trains a plain LoRA",
                          "pass a plain LoRA (lora_down/lora_up) file")
    models = {name: accelerator.unwrap_model(model) for name, model in trained.items()}
    ours = {name: lora.lora_state_dict(model) for name, model in models.items()}
    index = _module_index(family, ours)
    diffusers_alphas = _diffusers_alphas(source.metadata)
    loaded: dict[str, dict[str, Any]] = {name: {} for name in models}
    alphas: set[float] = set()
    dropped: list[str] = []
    for module in source.modules.values():
        where = index.get(_lookup_name(module.name))
        if where is None or "down" not in module.tensors or "up" not in module.tensors:
            dropped.append(module.name)
            continue
        component, peft = where
        down = torch.from_numpy(module.tensors["down"].copy())
        up = torch.from_numpy(module.tensors["up"].copy())
        own_down, own_up = ours[component][peft + DOWN], ours[component][peft + UP]
        rank = down.shape[0]
        alpha = module.alpha if module.alpha is not None else \
            diffusers_alphas.get(component, diffusers_alphas.get("", float(rank)))
        if rank != config.rank:
            raise ConfigError(f"{path}: --init-lora: rank {rank}, this run's rank is {config.rank}",
                              f"set --rank {rank} --alpha {alpha:g} to continue it")
        if own_down.shape != down.reshape(own_down.shape).shape or own_up.numel() != up.numel():
            raise ConfigError(
                f"{path}: --init-lora: {module.name} has shape {tuple(up.shape[:1]) + tuple(down.shape[1:])}, "
                f"this model's is {tuple(own_up.shape[:1]) + tuple(own_down.shape[1:])}",
                f"pass a LoRA trained on a {family.label} model like this run's base model")
        alphas.add(alpha)
        scale = (alpha / rank) / (config.lora_alpha / config.rank)
        loaded[component][peft + DOWN] = down.reshape(own_down.shape).float()
        loaded[component][peft + UP] = (up.reshape(own_up.shape).double() * scale).float() if scale != 1 else \
            up.reshape(own_up.shape).float()
    count = sum(len(state) // 2 for state in loaded.values())
    if not count:
        raise ConfigError(
            f"{path}: --init-lora: none of its {len(source.modules)} modules is one this run trains "
            f"({family.label}, {' and '.join(models)})",
            f"pass a LoRA trained on a {family.label} model (same family, attention layers)")
    for name, model in models.items():
        if loaded[name]:
            lora.load_lora_state_dict(model, loaded[name])
    total = sum(1 for state in ours.values() for key in state if key.endswith(DOWN))
    notes = [f"starting from {path.name}: {count} of this run's {total} modules loaded"]
    if dropped:
        kinds = "text-encoder " if all(_is_text(n) for n in dropped) and not config.train_text_encoder else ""
        notes.append(f"{len(dropped)} {kinds}modules of it are not trained here and left out"
                     f" (e.g. {dropped[0]})" + ("; add --train-text-encoder to continue them" if kinds else ""))
    if count < total:
        notes.append(f"{total - count} modules start at zero as in a new LoRA")
    if alphas - {config.lora_alpha}:
        notes.append(f"its alpha {'/'.join(f'{a:g}' for a in sorted(alphas))} differs from this run's "
                     f"{config.lora_alpha:g}: up weights rescaled so it starts equal")
    if len(notes) > 1:  # the differences are worth a warning; a clean match is the run's plan
        bus.emit(WarningRaised("; ".join(notes)))
    return {"name": path.name, "sha256": file_sha256(path)}


def _module_index(family: Any, ours: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Every name a file may give one of this run's modules → (component, peft module path):
    the kohya name the exporter writes, and the diffusers/peft one."""
    index: dict[str, tuple[str, str]] = {}
    for full, kohya in kohya_names(family, ours).items():
        component, _, key = full.partition(".")
        if not key.endswith(DOWN):
            continue
        peft = key[: -len(DOWN)]
        index[kohya.split(".")[0]] = (component, peft)
        index[_lookup_name(f"{component}.{peft}")] = (component, peft)
    return index


def _lookup_name(name: str) -> str:
    """A module name with the prefixes formats differ in taken off (``text_model.``, peft's
    ``base_model.model.``); a UNet path without a component is the UNet's."""
    name = name.removeprefix("base_model.model.")
    if name.startswith("lora_"):
        return name
    component, _, rest = name.partition(".")
    if component not in ("unet", "text_encoder", "text_encoder_2"):
        component, rest = "unet", name
    return f"{component}.{rest.removeprefix('text_model.')}"


def _is_text(name: str) -> bool:
    return name.startswith(("lora_te", "text_encoder"))


def _diffusers_alphas(metadata: dict[str, str]) -> dict[str, float]:
    """The alpha diffusers writes into a file's ``lora_adapter_metadata``, by component
    (``unet.lora_alpha``…; "" for a file with one adapter's config)."""
    try:
        data = json.loads(metadata.get("lora_adapter_metadata", "{}"))
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for key, value in data.items():
        component, _, field = key.rpartition(".")
        if field == "lora_alpha" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[component] = float(value)
    return out

