"""``loratui verify``: will this LoRA load, and does it do anything?

Reads a LoRA of any common layout (see ``lora_reader``), maps every key onto the base model's
modules as AUTOMATIC1111 and ComfyUI would (see ``key_map``), and reports what a user meets as
"lora key not loaded" or "my LoRA does nothing": keys no loader maps, shapes that do not fit,
non-finite or all-zero tensors, metadata that contradicts the tensors, and the strength each
block of the model receives. An ``error`` finding is a defect (the CLI exits 1); a ``warning``
is worth knowing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loratui.engine.export.key_map import TEXT_NAMING, KeyMap, Target, key_map
from loratui.engine.export.lora_reader import LoraFile, Module, read_lora

LABELS = {"sd15": "SD-1.5", "sd2": "SD-2.x", "sdxl": "SDXL"}
# what kohya's ss_base_model_version and modelspec.architecture start with, per family
VERSION_PREFIXES = {"sdxl": "sdxl", "sd_v2": "sd2", "sd_v1": "sd15"}
ARCHITECTURE_PREFIXES = {"stable-diffusion-xl": "sdxl", "stable-diffusion-v2": "sd2", "stable-diffusion-v1": "sd15"}
SHOWN_KEYS = 8  # a finding's message names this many keys; the JSON has them all


@dataclass
class Finding:
    severity: str  # "error" | "warning"
    code: str
    message: str
    keys: list[str] = field(default_factory=list)


@dataclass
class ModuleReport:
    module: str  # the file's name for it (key less its suffix)
    target: str | None  # the base model's module, as ComfyUI names it (None: not loaded)
    kind: str
    rank: int | None
    alpha: float | None
    strength: float | None  # ||ΔW|| (Frobenius) at strength 1, alpha/rank applied
    block: str | None


@dataclass
class VerifyReport:
    path: str
    layout: str
    network_type: str
    family: str | None
    family_from: str  # "base model" or "keys"
    base_model: str | None
    modules: list[ModuleReport]
    blocks: dict[str, dict[str, float]]
    findings: list[Finding]
    metadata: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` structure (stable: add keys, never rename)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["family_label"] = LABELS.get(self.family or "", None)
        data["metadata"] = {k: v for k, v in self.metadata.items() if not k.startswith("ss_tag_frequency")}
        return data


def verify_lora(path: Path, base_model: str | None = None, allow_pickle: bool = False) -> VerifyReport:
    """Check ``path`` against ``base_model`` (or, without one, the family its keys fit best)."""
    lora = read_lora(path)
    if base_model is not None:
        keys = base_key_map(base_model, allow_pickle)
        family_from = "base model"
    else:
        keys = best_shipped_map(lora)
        family_from = "keys"
    findings: list[Finding] = []
    modules = [_module_report(lora, m, _target(keys, m.name)) for m in lora.modules.values()]
    _check_mapping(lora, keys, findings, from_keys=base_model is None)
    _check_tensors(lora, findings)
    _check_alpha(lora, findings)
    _check_family(lora, keys, findings)
    blocks = _blocks(modules)
    if modules and all(m.strength == 0 for m in modules if m.strength is not None) \
            and any(m.strength is not None for m in modules):
        findings.append(Finding("error", "no_effect", "every module's weight change is zero: the LoRA does nothing"))
    return VerifyReport(
        str(path), lora.layout, _network_type(lora), keys.family if keys.targets else None, family_from,
        base_model, modules, blocks, findings, lora.metadata,
    )


def base_key_map(base_model: str, allow_pickle: bool = False) -> KeyMap:
    """The key map of ``--base-model`` (a diffusers folder, single file, hub id or tiny), from its
    configs: no weights are read."""
    from loratui.engine.families import family_of
    from loratui.engine.families.models import resolve_model

    spec = resolve_model(base_model, allow_pickle)
    folder = family_of(spec).config_folder(spec)
    return key_map(str(folder), spec.family)


def best_shipped_map(lora: LoraFile) -> KeyMap:
    """The shipped family whose modules take the most of the file's modules, shapes included
    (SD-1.5 and SD-2 share names; their widths tell them apart)."""
    from loratui.engine.families import FAMILIES

    claimed = _claimed_family(lora.metadata)
    best, best_score = None, (-1, -1, False)
    for name, family in FAMILIES.items():
        if name not in TEXT_NAMING:
            continue
        candidate = key_map(str(family.shipped_config_dir()), name)
        targets = [(m, t) for m in lora.modules.values() if (t := _target(candidate, m.name)) is not None]
        fits = sum(1 for m, t in targets if not _shape_problem(m, t))
        score = (fits, len(targets), name == claimed)
        if score > best_score:
            best, best_score = candidate, score
    assert best is not None
    # names that fit but shapes that do not (a fine-tune of another width): still that family,
    # and the shapes are reported
    return best if best_score[1] else KeyMap(best.family, best.where, {})


def _target(keys: KeyMap, name: str) -> Target | None:
    target = keys.targets.get(name)
    if target is None and name.startswith("base_model.model."):  # peft's PeftModel.save_pretrained
        target = keys.targets.get(name[len("base_model.model."):])
    return target


def _module_report(lora: LoraFile, module: Module, target: Target | None) -> ModuleReport:
    alpha = module.alpha if "alpha" in module.tensors else _diffusers_alpha(lora, module)
    return ModuleReport(module.name, target.name if target else None, module.kind, module.rank, alpha,
                        _strength(module, alpha), target.block if target else None)


def _diffusers_alpha(lora: LoraFile, module: Module) -> float | None:
    """A diffusers file's alpha lives in its peft config (``lora_adapter_metadata``)."""
    raw = lora.metadata.get("lora_adapter_metadata")
    if not raw:
        return None
    try:
        meta = json.loads(raw)
        return float(meta[f"{module.name.split('.')[0]}.lora_alpha"])
    except (ValueError, KeyError, TypeError):
        return None


def _strength(module: Module, alpha: float | None) -> float | None:
    """||ΔW||_F of the module at strength 1 (LoRA via the rank-sized Gram matrices: no ΔW built)."""
    import numpy as np

    t = module.tensors
    try:
        if module.kind in ("LoRA", "LoCon", "DoRA") and "down" in t and "up" in t and "mid" not in t:
            up, down = t["up"].reshape(t["up"].shape[0], -1), t["down"].reshape(t["down"].shape[0], -1)
            scale = (alpha / down.shape[0]) if alpha is not None else 1.0
            gram = (up.T @ up) * (down @ down.T)
            return math.sqrt(max(float(gram.sum()), 0.0)) * abs(scale)
        if module.kind == "LoHa" and "hada_t1" not in t:
            delta = (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])
            scale = (alpha / t["hada_w1_b"].shape[0]) if alpha is not None else 1.0
            return float(np.linalg.norm(delta)) * abs(scale)
        if module.kind == "full":
            return float(np.linalg.norm(t["diff"]))
    except (ValueError, KeyError):  # shapes that do not multiply: reported as a shape problem
        return None
    return None


def _shape_problem(module: Module, target: Target) -> str | None:
    """Why ``module`` cannot patch ``target`` (None when it fits)."""
    t = module.tensors
    out_dim, in_dim = target.shape[0], math.prod(target.shape[1:])
    if module.kind in ("LoRA", "LoCon", "DoRA"):
        if "down" not in t or "up" not in t:
            return f"has {'no lora_up' if 'down' in t else 'no lora_down'} tensor"
        down, up = t["down"], t["up"]
        if math.prod(down.shape[1:]) != in_dim or up.shape[0] != out_dim:
            return f"is {up.shape[0]}x{math.prod(down.shape[1:])}, the model's layer is {out_dim}x{in_dim}"
        if up.shape[1] != down.shape[0]:
            return f"lora_up has rank {up.shape[1]}, lora_down {down.shape[0]}"
    elif module.kind == "full" and tuple(t["diff"].shape) != tuple(target.shape):
        return f"is {tuple(t['diff'].shape)}, the model's layer is {tuple(target.shape)}"
    return None


def _check_mapping(lora: LoraFile, keys: KeyMap, findings: list[Finding], from_keys: bool) -> None:
    unmapped: list[str] = list(lora.unparsed)
    names: list[str] = list(lora.unparsed)  # what the message shows: modules, not each tensor
    hint = " (a model of another size? pass it as --base-model)" if from_keys else ""
    misfits: list[tuple[Module, str]] = []
    for module in lora.modules.values():
        target = _target(keys, module.name)
        if target is None:
            unmapped += module.keys.values()
            names.append(module.name)
            continue
        problem = _shape_problem(module, target)
        if problem:
            misfits.append((module, problem))
    if misfits:
        first, problem = misfits[0]
        findings.append(Finding(
            "error", "shape_mismatch",
            f"{len(misfits)} modules do not fit the model's layers and would fail to load{hint}; "
            f"e.g. {first.name} {problem}", sorted(k for m, _ in misfits for k in m.keys.values())))
    if unmapped:
        where = f"{LABELS.get(keys.family, keys.family)} model" if keys.targets else "model loratui knows"
        findings.append(Finding("error", "not_loaded",
                                f"{len(unmapped)} keys ({len(names)} modules) map to no module of the {where}; "
                                f"AUTOMATIC1111 and ComfyUI would not load them: {_some(names)}", sorted(unmapped)))


def _check_tensors(lora: LoraFile, findings: list[Finding]) -> None:
    import numpy as np

    bad, zero = [], []
    for module in lora.modules.values():
        for role, value in module.tensors.items():
            key = module.keys[role]
            if not bool(np.isfinite(value).all()):
                bad.append(key)
            elif value.size and not bool(value.any()):
                zero.append(key)
    if bad:
        findings.append(Finding("error", "non_finite",
                                f"{len(bad)} tensors hold NaN or infinite values: {_some(bad)}", sorted(bad)))
    if zero:
        findings.append(Finding("warning", "all_zero",
                                f"{len(zero)} tensors are all zero (those modules change nothing): {_some(zero)}",
                                sorted(zero)))


def _check_alpha(lora: LoraFile, findings: list[Finding]) -> None:
    """Alpha tensors against ``ss_network_alpha`` (``conv_alpha`` for LoCon), and a kohya file
    with no alpha (loaders then take alpha = rank: a different strength than trained)."""
    meta = lora.metadata
    network_alpha = _number(meta.get("ss_network_alpha"))
    network_dim = _number(meta.get("ss_network_dim"))
    try:
        args = json.loads(meta.get("ss_network_args") or "{}")
    except ValueError:
        args = {}
    args = args if isinstance(args, dict) else {}
    conv_alpha, conv_dim = _number(args.get("conv_alpha")), _number(args.get("conv_dim"))
    wrong, missing, ranks = [], [], []
    for module in lora.modules.values():
        if module.kind not in ("LoRA", "LoCon", "DoRA") or not module.name.startswith("lora_"):
            continue
        conv = module.kind == "LoCon"
        expected = conv_alpha if conv and conv_alpha is not None else network_alpha
        if "alpha" not in module.tensors:
            missing.append(module.name)
        elif expected is not None and module.alpha is not None \
                and abs(module.alpha - expected) > 1e-3 * max(1.0, abs(expected)):
            wrong.append(module.keys["alpha"])
        dim = conv_dim if conv and conv_dim is not None else network_dim
        if dim is not None and module.rank is not None and module.rank != dim:
            ranks.append(module.keys.get("down", module.name))
    if wrong:
        findings.append(Finding("error", "alpha_mismatch",
                                f"{len(wrong)} alpha tensors differ from ss_network_alpha={meta.get('ss_network_alpha')}: "
                                f"{_some(wrong)}", sorted(wrong)))
    if missing:
        findings.append(Finding("warning", "missing_alpha",
                                f"{len(missing)} modules have no .alpha (loaders take alpha = rank): {_some(missing)}",
                                sorted(missing)))
    if ranks:
        findings.append(Finding("warning", "rank_mismatch",
                                f"{len(ranks)} modules' rank differs from ss_network_dim={meta.get('ss_network_dim')}: "
                                f"{_some(ranks)}", sorted(ranks)))
    if lora.layout == "kohya" and not any(k.startswith("ss_") for k in meta):
        findings.append(Finding("warning", "no_metadata",
                                "no ss_* metadata: AUTOMATIC1111 cannot tell the base model or settings"))


def _claims(meta: dict[str, str]) -> list[tuple[str, str]]:
    """(family, "key=value") for each metadata key that names the base model's family."""
    claims = []
    for key, prefixes in (("ss_base_model_version", VERSION_PREFIXES), ("modelspec.architecture", ARCHITECTURE_PREFIXES)):
        value = meta.get(key, "")
        # a LoRA of loratui's tiny test model names its family after "loratui_tiny_"/"loratui-tiny-":
        # its keys are that family's layout
        layout = value.removeprefix("loratui_tiny_").removeprefix("loratui-tiny-")
        family = next((f for p, f in prefixes.items() if layout.startswith(p)), None)
        if family:
            claims.append((family, f"{key}={value}"))
    if not claims and meta.get("ss_v2") == "True":
        claims.append(("sd2", "ss_v2=True"))
    return claims


def _claimed_family(meta: dict[str, str]) -> str | None:
    claims = _claims(meta)
    return claims[0][0] if claims else None


def _check_family(lora: LoraFile, keys: KeyMap, findings: list[Finding]) -> None:
    """The metadata's base model against the model the keys were mapped to."""
    if not keys.targets:
        return
    wrong = [(family, said) for family, said in _claims(lora.metadata) if family != keys.family]
    if wrong:
        said = ", ".join(s for _, s in wrong)
        findings.append(Finding(
            "error", "base_model_mismatch",
            f"the metadata says {LABELS[wrong[0][0]]} ({said}) but the keys were mapped to "
            f"{LABELS.get(keys.family, keys.family)}: the LoRA is for another model, or its metadata is wrong",
            [s.split("=")[0] for _, s in wrong]))


def _blocks(modules: list[ModuleReport]) -> dict[str, dict[str, float]]:
    """Per block: modules, the root-sum-square of their ΔW norms, and its share of the whole."""
    squares: dict[str, float] = {}
    counts: dict[str, int] = {}
    for m in modules:
        if m.block is None:
            continue
        counts[m.block] = counts.get(m.block, 0) + 1
        squares[m.block] = squares.get(m.block, 0.0) + (m.strength or 0.0) ** 2
    total = sum(squares.values())
    return {block: {"modules": counts[block], "strength": math.sqrt(squares[block]),
                    "share": squares[block] / total if total else 0.0}
            for block in sorted(counts, key=_block_order)}


def _block_order(block: str) -> tuple[int, str]:
    order = ("TE", "BASE", "IN", "MID", "OUT")
    return next((i for i, p in enumerate(order) if block.startswith(p)), len(order)), block


def _network_type(lora: LoraFile) -> str:
    kinds = sorted({m.kind for m in lora.modules.values()})
    text = " + ".join(kinds) if kinds else "none"
    module = lora.metadata.get("ss_network_module")
    return f"{text} ({module})" if module else text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _some(keys: list[str]) -> str:
    shown = ", ".join(sorted(keys)[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
