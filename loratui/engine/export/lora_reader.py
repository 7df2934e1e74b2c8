"""A LoRA file of any common layout, read as modules: kohya (``lora_unet_…``), diffusers/peft
(``unet.….lora_A.weight``), diffusers' first format (``…processor.to_q_lora.down.weight``), and
the LyCORIS types (LoHa, LoKr, DoRA, full) as far as naming their tensors goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratui.engine.errors import LoratuiError

# tensor suffix → its role in the module; longer suffixes first so ".lora.down.weight" wins
# over a shorter one ending the same way
SUFFIXES: tuple[tuple[str, str], ...] = tuple(sorted({
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".lora_mid.weight": "mid", ".alpha": "alpha",
    ".lora_A.weight": "down", ".lora_B.weight": "up", ".lora.down.weight": "down", ".lora.up.weight": "up",
    "_lora.down.weight": "down", "_lora.up.weight": "up", ".dora_scale": "dora",
    ".lora_linear_layer.down.weight": "down", ".lora_linear_layer.up.weight": "up",
    ".lora_magnitude_vector": "dora", ".lora_magnitude_vector.weight": "dora",
    ".hada_w1_a": "hada_w1_a", ".hada_w1_b": "hada_w1_b", ".hada_w2_a": "hada_w2_a", ".hada_w2_b": "hada_w2_b",
    ".hada_t1": "hada_t1", ".hada_t2": "hada_t2",
    ".lokr_w1": "lokr_w1", ".lokr_w2": "lokr_w2", ".lokr_w1_a": "lokr_w1_a", ".lokr_w1_b": "lokr_w1_b",
    ".lokr_w2_a": "lokr_w2_a", ".lokr_w2_b": "lokr_w2_b", ".lokr_t2": "lokr_t2",
    ".diff": "diff", ".diff_b": "diff_b",
}.items(), key=lambda item: -len(item[0])))


class LoraFileError(LoratuiError):
    """A file that cannot be read as a LoRA at all."""


@dataclass
class Module:
    """One patched module of a LoRA file: its tensors by role, and the keys they came from."""

    name: str  # the key less its suffix: lora_unet_… or unet.down_blocks.…
    tensors: dict[str, Any] = field(default_factory=dict)  # role → float32 numpy array
    keys: dict[str, str] = field(default_factory=dict)  # role → full key

    @property
    def kind(self) -> str:
        """LoRA, LoCon (a LoRA on a convolution wider than 1x1), DoRA, LoHa, LoKr or full."""
        roles = set(self.tensors)
        if any(r.startswith("hada_") for r in roles):
            return "LoHa"
        if any(r.startswith("lokr_") for r in roles):
            return "LoKr"
        if "diff" in roles:
            return "full"
        if "dora" in roles:
            return "DoRA"
        down = self.tensors.get("down")
        if down is not None and down.ndim == 4 and tuple(down.shape[2:]) != (1, 1):
            return "LoCon"
        return "LoRA"

    @property
    def rank(self) -> int | None:
        for role, axis in (("down", 0), ("hada_w1_b", 0), ("lokr_w1_b", 0), ("lokr_w2_b", 0)):
            if role in self.tensors:
                return int(self.tensors[role].shape[axis])
        return None

    @property
    def alpha(self) -> float | None:
        value = self.tensors.get("alpha")
        return float(value.reshape(-1)[0]) if value is not None and value.size else None


@dataclass
class LoraFile:
    path: Path
    metadata: dict[str, str]
    modules: dict[str, Module]
    unparsed: list[str]  # keys no LoRA layout names: no loader uses them
    layout: str  # "kohya" | "diffusers" | "peft" | "mixed" | "unknown"


def read_lora(path: Path) -> LoraFile:
    """The file's metadata and its modules; LoraFileError naming the file when it is no LoRA."""
    import torch
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise LoraFileError(f"{path}: no such file", "pass the path of a .safetensors LoRA")
    if path.suffix.lower() != ".safetensors":
        raise LoraFileError(f"{path}: not a .safetensors file",
                            "loratui reads .safetensors LoRAs only (.pt/.ckpt files can run code)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            # float32 numpy arrays: verify's checks are many small ops, which numpy runs in
            # microseconds where torch's per-op overhead made a 700-module file take seconds
            tensors = {key: fh.get_tensor(key).to(torch.float32).numpy() for key in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoraFileError(f"{path}: not a readable safetensors file ({exc})",
                            "check the download: the file is truncated or not a LoRA") from None
    if not tensors:
        raise LoraFileError(f"{path}: holds no tensors", "this is not a LoRA file")
    modules: dict[str, Module] = {}
    unparsed = []
    for key, tensor in tensors.items():
        match = next(((key[: -len(s)], role) for s, role in SUFFIXES if key.endswith(s)), None)
        if match is None:
            unparsed.append(key)
            continue
        name, role = match
        module = modules.setdefault(name, Module(name))
        module.tensors[role] = tensor
        module.keys[role] = key
    return LoraFile(path, metadata, modules, sorted(unparsed), _layout(modules))


def _layout(modules: dict[str, Module]) -> str:
    kinds = set()
    for name in modules:
        if name.startswith("lora_"):
            kinds.add("kohya")
        elif name.startswith(("unet.", "text_encoder.", "text_encoder_2.")):
            kinds.add("diffusers")
        elif name.startswith(("base_model.model.", "down_blocks.", "up_blocks.", "mid_block.")):
            kinds.add("peft")
        else:
            kinds.add("unknown")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "unknown")
