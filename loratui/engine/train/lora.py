"""LoRA adapters through peft: where they go, and their weights in and out."""

from __future__ import annotations

from typing import Any

ADAPTER = "default"  # where each family's modules get them: Family.unet_targets, text_targets


def add_lora(model: Any, targets: list[str], rank: int, alpha: float) -> None:
    """Freeze ``model`` and give it trainable LoRA adapters on ``targets``.

    Gaussian init of A with B at zero: the adapter starts as an exact no-op, so step 0 is the
    base model.

    peft injects the adapter directly, the same way for a diffusers UNet and a transformers text
    encoder: transformers' own ``add_adapter`` refuses peft releases older than the one it was
    built against (transformers 5.24 wants peft 0.22, unreleased), which broke text-encoder
    training on a fresh install.
    """
    from peft import LoraConfig, inject_adapter_in_model

    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)


def lora_parameters(model: Any) -> list:
    """The trainable (LoRA) parameters of ``model``."""
    return [p for p in model.parameters() if p.requires_grad]


def lora_state_dict(model: Any) -> dict[str, Any]:
    """The adapter weights of ``model`` in peft's key format (``….lora_A.weight``), on CPU."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu") for k, v in get_peft_model_state_dict(model, save_embedding_layers=False).items()}


def load_lora_state_dict(model: Any, state: dict[str, Any]) -> None:
    """Put adapter weights saved by ``lora_state_dict`` back into ``model``."""
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"checkpoint has keys this model does not: {unexpected[:3]}")


def adapter_metadata(model: Any) -> dict[str, Any]:
    """The adapter's peft config as a dict (diffusers stores it so alpha survives a reload)."""
    config = model.peft_config[ADAPTER].to_dict()
    config["target_modules"] = sorted(config.get("target_modules") or [])
    return {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
