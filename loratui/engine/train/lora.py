"""Adapters through peft: which network type, where it goes, and its weights in and out.

Five network types, all built by peft (no hand-written layers): ``lora`` (attention only, as
kohya's default LoRA), ``locon`` (LoRA on the ResNet convolutions too, with their own rank and
alpha, as kohya's ``conv_dim``/``conv_alpha`` and LyCORIS's LoCon), ``loha`` and ``lokr`` (the
LyCORIS Hadamard and Kronecker products, on the same layers as LoCon) and ``dora`` (LoRA with a
trained magnitude per output row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ADAPTER = "default"  # where each family's modules get them: Family.unet_targets, text_targets
NETWORKS = ("lora", "locon", "loha", "lokr", "dora")
# The UNet layers kohya's LoCon (conv_dim) and LyCORIS train besides attention: every Linear and
# Conv2d inside the ResNet blocks and the down/upsamplers (the same diffusers names in SD-1.5,
# SD-2 and SDXL).
CONV_TARGETS = ("conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv")
# Of those, the 3x3 convolutions take the conv rank and alpha; the 1x1 shortcut and the Linear take
# the network's own (kohya's rule). peft matches these as a module path's last parts.
CONV_3X3 = ("conv1", "conv2", "conv")
TRAINS_CONVS = ("locon", "loha", "lokr")
# Reserved keys beside each module's weights in ``lora_state_dict``: its rank and alpha, which
# export needs (kohya files carry alpha per module; LoKr's scale depends on the rank) and no
# weight shape tells once a LoKr factor is a full matrix.
RANK_KEY, ALPHA_KEY = ".network_rank", ".network_alpha"


@dataclass(frozen=True)
class Network:
    """A network type with its ranks: ``conv_rank``/``conv_alpha`` for the 3x3 convolutions of
    the types that train them."""

    kind: str = "lora"
    rank: int = 16
    alpha: float = 16.0
    conv_rank: int | None = None
    conv_alpha: float | None = None

    @classmethod
    def of(cls, config: Any) -> "Network":
        """The network a ``RunConfig`` asks for."""
        return cls(config.network, config.rank, config.lora_alpha, config.conv_lora_rank, config.conv_lora_alpha)

    @property
    def trains_convs(self) -> bool:
        return self.kind in TRAINS_CONVS


def add_lora(model: Any, targets: list[str], rank: int, alpha: float) -> None:
    """Freeze ``model`` and give it plain LoRA adapters on ``targets`` (see ``add_network``)."""
    add_network(model, targets, Network("lora", rank, alpha))


def add_network(model: Any, targets: list[str], network: Network, unet: bool = False) -> None:
    """Freeze ``model`` and give it trainable adapters of ``network``'s type on ``targets`` (and,
    for a UNet and the types that train them, on its ResNet convolutions).

    Every type starts as an exact no-op (LoRA's B, LoHa's second pair and LoKr's second factor
    are zero; DoRA's magnitude is the base weight's row norm), so step 0 is the base model.

    peft injects the adapter directly, the same way for a diffusers UNet and a transformers text
    encoder: transformers' own ``add_adapter`` refuses peft releases older than the one it was
    built against (transformers 5.24 wants peft 0.22, unreleased), which broke text-encoder
    training on a fresh install.
    """
    from peft import inject_adapter_in_model

    model.requires_grad_(False)
    inject_adapter_in_model(peft_config(network, list(targets), unet), model, adapter_name=ADAPTER)


def peft_config(network: Network, targets: list[str], unet: bool = False) -> Any:
    """peft's config for ``network`` on ``targets``."""
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    patterns: dict[str, Any] = {}
    if unet and network.trains_convs:
        targets = [*targets, *CONV_TARGETS]
        conv_rank = network.conv_rank or network.rank
        conv_alpha = network.conv_alpha if network.conv_alpha is not None else float(conv_rank)
        patterns = {"rank_pattern": dict.fromkeys(CONV_3X3, conv_rank),
                    "alpha_pattern": dict.fromkeys(CONV_3X3, conv_alpha)}
    if network.kind == "loha":
        return LoHaConfig(r=network.rank, alpha=network.alpha, target_modules=targets, **patterns)
    if network.kind == "lokr":
        return LoKrConfig(r=network.rank, alpha=network.alpha, target_modules=targets, **patterns)
    if network.kind not in NETWORKS:
        raise ValueError(f"unknown network type {network.kind!r}: choose one of {', '.join(NETWORKS)}")
    return LoraConfig(r=network.rank, lora_alpha=network.alpha, init_lora_weights="gaussian",
                      target_modules=targets, use_dora=network.kind == "dora", **patterns)


def lora_parameters(model: Any) -> list:
    """The trainable (adapter) parameters of ``model``."""
    return [p for p in model.parameters() if p.requires_grad]


def network_kind(model: Any) -> str:
    """The network type ``model``'s adapter was built as."""
    config = model.peft_config[ADAPTER]
    kind = str(getattr(config.peft_type, "value", config.peft_type)).lower()
    if kind == "lora":
        if getattr(config, "use_dora", False):
            return "dora"
        return "locon" if config.rank_pattern else "lora"
    return kind


def module_scales(model: Any) -> dict[str, tuple[int, float]]:
    """(rank, alpha) of each adapted module of ``model``, by its path."""
    scales = {}
    for name, module in model.named_modules():
        ranks = getattr(module, "r", None)
        if isinstance(ranks, dict) and ADAPTER in ranks:
            alphas = getattr(module, "lora_alpha", None) or getattr(module, "alpha")
            scales[name] = (int(ranks[ADAPTER]), float(alphas[ADAPTER]))
    return scales


def lora_state_dict(model: Any) -> dict[str, Any]:
    """The adapter weights of ``model`` in peft's key format (``….lora_A.weight``), on CPU.

    For every network type but plain LoRA, each module's rank and alpha ride along as 0-d
    tensors (``RANK_KEY``/``ALPHA_KEY``): export needs them; ``load_lora_state_dict`` skips them.
    """
    import torch
    from peft.utils import get_peft_model_state_dict

    state = {k: v.detach().to("cpu")
             for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}
    if network_kind(model) != "lora":
        for name, (rank, alpha) in module_scales(model).items():
            state[name + RANK_KEY] = torch.tensor(float(rank))
            state[name + ALPHA_KEY] = torch.tensor(float(alpha))
    return state


def weights_only(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the rank and alpha entries ``lora_state_dict`` adds."""
    return {k: v for k, v in state.items() if not k.endswith((RANK_KEY, ALPHA_KEY))}


def load_lora_state_dict(model: Any, state: dict[str, Any]) -> None:
    """Put adapter weights saved by ``lora_state_dict`` back into ``model``."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, weights_only(state))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint has keys this model does not: {unexpected[:3]}")


def adapter_metadata(model: Any) -> dict[str, Any]:
    """The adapter's peft config as a dict (diffusers stores it so alpha survives a reload)."""
    config = model.peft_config[ADAPTER].to_dict()
    config["target_modules"] = sorted(config.get("target_modules") or [])
    return {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
