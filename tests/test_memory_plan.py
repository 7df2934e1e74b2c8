"""The measured memory model (footprint) and what a run does with it (memory_plan)."""

from __future__ import annotations

import json
import math

import pytest

from loratui.engine.planning import footprint
from loratui.engine.families import FAMILIES
from loratui.engine.config import build_config
from loratui.engine.planning.memory_plan import AUTO_BATCH_LIMIT, budget_of, plan_memory
from loratui.engine.families.models import resolve_model
from loratui.engine.planning.presets import get_preset
from loratui.engine.families.shipped import shipped_config_root
from loratui.engine.families.tiny import UNET_CONFIG
from tests.tinyrun import tiny_config

pytestmark = pytest.mark.slow  # the memory model measured for several models

GIB = 2**30
PET_BATCH = get_preset("pet").batch_size


def _tiny_unet(rank: int, checkpointing: bool = False):
    return footprint.meta_unet(UNET_CONFIG, rank, "fp32", checkpointing)


def test_activations_grow_linearly_with_the_batch(tiny_model):
    measured = footprint.measure_unet(UNET_CONFIG, 64, 4, "fp32", False)
    assert measured.per_image > 0 and measured.lora_params > 0
    four = footprint.peak_of_pass(_tiny_unet(4), UNET_CONFIG, 4, 8, "fp32")
    assert four == pytest.approx(measured.fixed + 4 * measured.per_image, rel=0.05)


def test_meta_measurement_matches_a_real_cpu_pass(tiny_model):
    """The meta device frees tensors where real execution does: the same peak."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from loratui.engine.train import lora

    torch.manual_seed(0)
    real = UNet2DConditionModel.from_config(UNET_CONFIG)
    lora.add_lora(real, list(FAMILIES["sd15"].unet_targets), 4, 4.0)
    real.train()
    with torch.device("meta"):
        meta = UNet2DConditionModel.from_config(UNET_CONFIG)
        lora.add_lora(meta, list(FAMILIES["sd15"].unet_targets), 4, 4.0)
    meta.train()
    with sdpa_kernel(SDPBackend.MATH):  # one attention kernel on both devices
        on_cpu = footprint.peak_of_pass(real, UNET_CONFIG, 2, 8, "fp32", device="cpu")
        on_meta = footprint.peak_of_pass(meta, UNET_CONFIG, 2, 8, "fp32")
    assert on_cpu > 0 and on_meta == pytest.approx(on_cpu, rel=1e-3)  # a few scalars differ


def test_checkpointing_and_resolution_change_the_measurement(tiny_model):
    plain = footprint.measure_unet(UNET_CONFIG, 128, 4, "fp32", False)
    checkpointed = footprint.measure_unet(UNET_CONFIG, 128, 4, "fp32", True)
    small = footprint.measure_unet(UNET_CONFIG, 64, 4, "fp32", False)
    assert checkpointed.per_image < plain.per_image
    assert plain.per_image > 3 * small.per_image  # 4x the latent pixels


def test_sd15_attention_is_counted_as_the_fused_gpu_kernel():
    """Full-size SD-1.5 at 512 px in bf16. Counting the CPU's attention matrices instead (8
    heads x 4096^2 per self-attention at 64x64 latents) would add over 2.5 GiB per image."""
    unet_config = json.loads((shipped_config_root() / "unet" / "config.json").read_text())
    measured = footprint.measure_unet(unet_config, 512, 16, "bf16", False)
    assert 860e6 < measured.params < 866e6  # SD-1.5's UNet with a rank-16 LoRA
    assert measured.lora_params == 3_188_736
    assert 0.5 * GIB < measured.per_image < 1.2 * GIB
    # the same passes count the work: 1.725 TFLOP a step with attention as plain matmuls
    # (benchmarks/gpu_bench.py); the flash kernel's backward recomputes the scores, a little more
    assert 1.70e12 < measured.flops_per_image < 1.85e12
    assert measured.flops_fixed < 0.01 * measured.flops_per_image


def test_flops_are_counted_per_image_and_with_checkpointings_recompute(tiny_model):
    plain = footprint.measure_unet(UNET_CONFIG, 64, 4, "fp32", False)
    checkpointed = footprint.measure_unet(UNET_CONFIG, 64, 4, "fp32", True)
    assert plain.flops_per_image > 0 and plain.flops_fixed < 0.01 * plain.flops_per_image
    assert 1.2 < checkpointed.flops_per_image / plain.flops_per_image < 1.6  # the forward, again


def test_measurements_are_cached_and_a_broken_cache_is_remeasured(tiny_model):
    from loratui.engine.paths import cache_dir

    first = footprint.measure_unet(UNET_CONFIG, 64, 8, "fp32", False)
    cache = cache_dir() / footprint.CACHE_FILE
    assert first.__dict__ in json.loads(cache.read_text()).values()
    assert footprint.measure_unet(UNET_CONFIG, 64, 8, "fp32", False) == first
    cache.write_text("{not json")
    assert footprint.measure_unet(UNET_CONFIG, 64, 8, "fp32", False) == first


def _model_and_config(small_dataset, tmp_path, **overrides):
    config = tiny_config(small_dataset, tmp_path, sample_every=0, rank=4, **overrides)
    spec = resolve_model("tiny")
    return footprint.memory_model(config, spec, "fp32", "adamw"), config, spec


def _free_for(model, budget_images: int) -> int:
    """Free memory whose budget holds exactly ``budget_images`` images (with no checkpointing)."""
    need = model.estimate(budget_images).total + model.unet.per_image // 2
    return math.ceil((need + (512 << 20)) / 0.9) + 1


def test_auto_batch_takes_the_largest_that_fits(small_dataset, tmp_path, tiny_model):
    model, config, spec = _model_and_config(small_dataset, tmp_path, batch_size="auto")
    plan = plan_memory(config, spec, _free_for(model, 3), "fp32", "adamw")
    assert (plan.batch_size, plan.split) == (3, 1)
    assert plan.estimate <= plan.budget < model.estimate(4).total
    assert plan.messages[0].startswith("batch size auto: 3,")
    roomy = plan_memory(config, spec, 80 * GIB, "fp32", "adamw")
    assert roomy.batch_size == AUTO_BATCH_LIMIT
    two_gpus = plan_memory(config, spec, _free_for(model, 3), "fp32", "adamw", world=2)
    assert two_gpus.batch_size == 6 and "(3 per GPU)" in two_gpus.messages[0]


def test_a_batch_that_does_not_fit_is_split_before_it_runs_out(small_dataset, tmp_path, tiny_model):
    model, config, spec = _model_and_config(small_dataset, tmp_path, batch_size=8)
    plan = plan_memory(config, spec, _free_for(model, 3), "fp32", "adamw")
    assert (plan.batch_size, plan.split) == (8, 4)  # 4 passes of 2: the effective batch stays 8
    assert "4 passes of 2 image(s)" in plan.messages[0] and plan.estimate <= plan.budget
    fits = plan_memory(config, spec, 80 * GIB, "fp32", "adamw")
    assert (fits.batch_size, fits.split, fits.messages) == (8, 1, [])


def test_checkpointing_is_turned_on_when_one_image_does_not_fit(small_dataset, tmp_path, tiny_model):
    model, config, spec = _model_and_config(small_dataset, tmp_path, batch_size=2)
    checkpointed = footprint.memory_model(
        config.model_copy(update={"gradient_checkpointing": True}), spec, "fp32", "adamw")
    assert checkpointed.estimate(1).total < model.estimate(1).total
    free = math.ceil((checkpointed.estimate(1).total + (512 << 20)) / 0.9) + 1
    assert budget_of(free) < model.estimate(1).total
    plan = plan_memory(config, spec, free, "fp32", "adamw")
    assert plan.gradient_checkpointing and plan.split == 2
    assert any("gradient checkpointing turned on" in m for m in plan.messages)
    hopeless = plan_memory(config, spec, 1, "fp32", "adamw")
    advice = hopeless.messages[-1]
    assert advice.startswith("even one image may not fit") and "8-bit AdamW saves" in advice
    assert "--mixed-precision bf16" in advice


def test_without_a_gpu_auto_is_the_presets_batch(small_dataset, tmp_path):
    config = tiny_config(small_dataset, tmp_path, batch_size="auto")
    plan = plan_memory(config, resolve_model("tiny"), None, "fp32", "adamw")
    assert plan.batch_size == PET_BATCH
    assert plan.messages == [f"batch size auto: no GPU, so the pet preset's batch of {PET_BATCH}"]


def test_batch_size_auto_trains_and_records_the_number(small_dataset, tmp_path, tiny_model):
    import tomllib

    from loratui.engine.train.loop import train

    events = []
    config = tiny_config(small_dataset, tmp_path, batch_size="auto", steps=4, save_every=0, sample_every=0)
    result = train(config, tmp_path / "run", [events.append])
    assert result.status == "finished"
    saved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert saved["batch_size"] == PET_BATCH  # a resume reads the number, not "auto"
    assert any("batch size auto" in getattr(e, "message", "") for e in events)


def test_batch_size_flag_takes_a_number_or_auto(small_dataset):
    assert build_config(str(small_dataset), overrides={"batch_size": "auto"}).batch_size == "auto"
    assert build_config(str(small_dataset), overrides={"batch_size": "6"}).batch_size == 6
    from loratui.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a whole number from 1 to 256, or auto"):
        build_config(str(small_dataset), overrides={"batch_size": "many"})
