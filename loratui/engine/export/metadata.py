"""The ``ss_*`` metadata kohya writes into a LoRA file, filled from a loratui run.

AUTOMATIC1111's LoRA tab, civitai and kohya's own tools read these keys: network shape,
base model, training settings, dataset size and tag frequency.
"""

from __future__ import annotations

import random
import time
from collections import Counter

from loratui import __version__
from loratui.engine.export import lora_files as export
from loratui.engine.config import RunConfig
from loratui.engine.families.models import Components
from loratui.engine.planning.run_plan import RunPlan
from loratui.engine.data.prompts import with_trigger
from loratui.engine.data.tags import split_tags


def run_metadata(
    config: RunConfig, plan: RunPlan, comps: Components, step: int, total_steps: int, started_at: float,
    output_name: str,
    optimizer_name: str,
    parent: dict | None = None,
    weights: str = "raw",
) -> dict[str, str]:
    """kohya's ``ss_*`` metadata for a LoRA file saved at ``step`` of this run; ``parent`` the
    LoRA it started from (``--init-lora``: name and sha256); ``weights`` what the file holds with
    ``--ema``: "ema" (the average) or "raw" (the weights as trained)."""
    from loratui.engine.train.optimizer import learning_rates

    unet_lr, te_lr = learning_rates(config)
    by_folder: dict[str, Counter] = {}
    for item in plan.train_items:  # the class images' captions are not what the LoRA was taught
        folder = item.record.rel.split("/")[0] if "/" in item.record.rel else plan.dataset.folder.name
        by_folder.setdefault(folder, Counter()).update(
            split_tags(with_trigger(plan.caption_for(item), config.trigger))
        )
    kohya = export.kohya_metadata(
        session_id=random.Random(started_at).randrange(2**31),
        training_started_at=started_at,
        training_finished_at=time.time(),
        output_name=output_name,
        **network_metadata(config),
        base_model_version=base_model_version(comps),
        sd_model_name=comps.spec.name,
        v2=comps.family.v2,
        v_parameterization=comps.noise_scheduler.config.prediction_type == "v_prediction",
        zero_terminal_snr=bool(comps.noise_scheduler.config.get("rescale_betas_zero_snr", False)),
        resolution=f"({config.resolution}, {config.resolution})",
        enable_bucket=config.buckets,
        learning_rate=unet_lr,
        unet_lr=unet_lr,
        text_encoder_lr=te_lr if config.train_text_encoder else 0,
        network_train_unet_only=not config.train_text_encoder,
        lr_scheduler=config.lr_scheduler,
        lr_warmup_steps=config.warmup_steps,
        optimizer=optimizer_name,  # what ran, after any fallback (no GPU, no bitsandbytes)
        max_train_steps=total_steps,
        steps=step,
        epoch=(step * config.grad_accum - 1) // plan.batches.batches_per_epoch + 1 if step else 0,
        num_epochs=plan.schedule.epochs,
        num_train_images=sum(i.repeats for i in plan.train_items),
        num_reg_images=sum(i.repeats for i in plan.reg_items),
        prior_loss_weight=config.prior_loss_weight if config.reg_folder else None,
        masked_loss=plan.masked or None,
        batch_size_per_device=config.batch_size,
        total_batch_size=config.batch_size * config.grad_accum,
        gradient_accumulation_steps=config.grad_accum,
        gradient_checkpointing=config.gradient_checkpointing,
        mixed_precision=config.mixed_precision,
        save_precision=config.save_precision,
        min_snr_gamma=config.min_snr_gamma,
        noise_offset=config.noise_offset,
        seed=config.seed,
        keep_tokens=config.keep_tokens,
        shuffle_caption=config.shuffle_tags,
        caption_dropout_rate=config.caption_dropout,
        max_grad_norm=config.max_grad_norm,
        **loss_metadata(config),
        network_weights=parent["name"] if parent else None,  # kohya's key for the LoRA a run started from
        loratui_network_weights_sha256=parent["sha256"] if parent else None,
        loratui_train_layers=config.train_layers,
        **ema_metadata(config, weights),
        tag_frequency={k: dict(v) for k, v in by_folder.items()},
        training_comment=f"trigger: {config.trigger}" if config.trigger else None,
        loratui_preset=config.preset,
        loratui_version=__version__,
    )
    return {**kohya, **modelspec(comps, config, output_name, started_at)}


def ema_metadata(config: RunConfig, weights: str) -> dict[str, object]:
    """``ss_loratui_ema`` (keep or final), its decay, and which weights this file holds (``ema``
    or ``raw``); nothing for a run without an EMA."""
    if config.ema == "off":
        return {}
    return {"loratui_ema": config.ema, "loratui_ema_decay": config.ema_decay, "loratui_weights": weights}


def loss_metadata(config: RunConfig) -> dict[str, object]:
    """The loss options under kohya's names (``ss_loss_type``, ``ss_huber_c``…)."""
    huber = config.loss_type in ("huber", "smooth_l1")
    return {
        "loss_type": config.loss_type,
        "huber_c": config.huber_c if huber else None,
        "huber_schedule": config.huber_schedule if huber else None,
        "debiased_estimation": config.debiased_estimation,
        "multires_noise_iterations": config.multires_noise_iterations or None,
        "multires_noise_discount": config.multires_noise_discount if config.multires_noise_iterations else None,
    }


def network_metadata(config: RunConfig) -> dict[str, object]:
    """``ss_network_module``/``_dim``/``_alpha``/``_args`` as the trainer of each type writes them:
    kohya's ``networks.lora`` for LoRA and LoCon (``conv_dim``/``conv_alpha`` in its args),
    LyCORIS's ``lycoris.kohya`` with ``algo`` for LoHa and LoKr, and for DoRA (``dora_wd``, the
    magnitude per output row: ``wd_on_output``). Args are strings, as both write them."""
    args: dict[str, str] = {}
    if config.network in ("locon", "loha", "lokr"):
        args = {"conv_dim": str(config.conv_lora_rank), "conv_alpha": f"{config.conv_lora_alpha:g}"}
    if config.network in ("loha", "lokr"):
        args = {"algo": config.network, **args}
    if config.network == "dora":
        args = {"algo": "lora", "dora_wd": "True", "wd_on_output": "True"}
    return {
        "network_module": "networks.lora" if config.network in ("lora", "locon") else "lycoris.kohya",
        "network_dim": config.rank,
        "network_alpha": config.lora_alpha,
        "network_args": args,
    }


TINY_PREFIX = "loratui_tiny_"  # the tiny model's LoRAs name their family after it, never as it
TINY_DESCRIPTION = ("for loratui's tiny test model (random weights, a few channels wide); "
                    "it loads in no real Stable Diffusion model")


def base_model_version(comps: Components) -> str:
    """kohya's ``ss_base_model_version``: the family's (``sd_v1``, ``sdxl_base_v1-0``…), or for
    the tiny model ``loratui_tiny_`` and the family's, which no UI takes for a real model's."""
    return TINY_PREFIX + comps.version if comps.spec.kind == "tiny" else comps.version


def modelspec(comps: Components, config: RunConfig, title: str, started_at: float) -> dict[str, str]:
    """The ``modelspec.*`` keys (Stability's model spec, as sd-scripts writes them): which
    architecture the LoRA is for, its prediction type and training resolution. A LoRA of the
    tiny model says so (architecture ``loratui-tiny-…``, and a description)."""
    v_pred = comps.noise_scheduler.config.prediction_type == "v_prediction"
    architecture = comps.family.architecture(v_pred)
    tiny = {}
    if comps.spec.kind == "tiny":
        architecture = "loratui-tiny-" + architecture
        tiny = {"modelspec.description": TINY_DESCRIPTION}
    return {
        **tiny,
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": architecture,
        "modelspec.title": title,
        "modelspec.resolution": f"{config.resolution}x{config.resolution}",
        "modelspec.prediction_type": "v" if v_pred else "epsilon",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started_at)),
    }
