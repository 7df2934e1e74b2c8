"""v-prediction and zero terminal SNR (NoobAI-XL v-pred, SD-2 768-v): detected, settable, sampled to match."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from tinyrun import tiny_config
from loratui.engine.events import WarningRaised
from loratui.engine.train.loop import train


def _metadata(path: Path) -> dict:
    with safe_open(str(path), "pt") as fh:
        return fh.metadata()


def test_a_v_prediction_schedule_with_zero_terminal_snr_targets_the_velocity():
    from diffusers import DDPMScheduler

    from loratui.engine.train.denoiser import Denoiser
    from loratui.engine.families import FAMILIES
    from loratui.engine.families.models import resolve_model
    from loratui.engine.train.noise import training_schedule
    from loratui.engine.families.tiny import SCHEDULER_CONFIG

    schedule, chosen = training_schedule(DDPMScheduler(**SCHEDULER_CONFIG), resolve_model("tiny"), "v_prediction", True)
    assert chosen.describe() == "v-prediction with zero terminal SNR"
    assert float(schedule.alphas_cumprod[-1]) == 0.0  # the last timestep is pure noise
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    model = Denoiser(FAMILIES["sd15"], None, None, schedule)
    last = torch.tensor([999, 999])
    # v = sqrt(a)·noise − sqrt(1−a)·x0, and a = 0 at the end: the target is −x0 exactly
    assert torch.equal(model.target(latents, noise, last), -latents)
    mid = torch.tensor([500, 500])
    assert torch.equal(model.target(latents, noise, mid), schedule.get_velocity(latents, noise, mid))
    # and the model's own (epsilon, SD) schedule is kept when nothing is asked
    same, said = training_schedule(DDPMScheduler(**SCHEDULER_CONFIG), resolve_model("tiny"))
    assert said.describe() == "epsilon prediction" and float(same.alphas_cumprod[-1]) > 0


def test_a_v_prediction_run_trains_warns_and_samples_with_the_matching_scheduler(tmp_path, small_dataset):
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.train.noise import training_schedule
    from loratui.engine.validate.sampling import components_pipeline

    events: list = []
    cfg = tiny_config(small_dataset, tmp_path, steps=6, save_every=0, sample_every=6, sample_steps=3,
                      prediction_type="v_prediction", zero_terminal_snr=True)
    result = train(cfg, tmp_path / "v", [events.append])
    assert result.status == "finished" and np.isfinite(result.final_loss)
    warnings = [e.message for e in events if isinstance(e, WarningRaised)]
    assert any("training with v-prediction with zero terminal SNR" in w and "epsilon" in w for w in warnings)
    meta = _metadata(result.lora_path)
    assert (meta["ss_v_parameterization"], meta["ss_zero_terminal_snr"]) == ("True", "True")
    assert meta["modelspec.prediction_type"] == "v"
    sample = np.asarray(Image.open(result.run_dir / "samples" / "step000006-0.png"), dtype=np.float32)
    assert sample.std() > 1.0  # an image, not a flat grey field

    comps = load_components(resolve_model("tiny"))
    comps.noise_scheduler, _ = training_schedule(comps.noise_scheduler, comps.spec, "v_prediction", True)
    sampler = components_pipeline(comps).scheduler.config
    assert sampler.prediction_type == "v_prediction" and sampler.rescale_betas_zero_snr
    assert sampler.timestep_spacing == "trailing"

    saved = tomllib.loads((result.run_dir / "config.toml").read_text())
    assert saved["prediction_type"] == "v_prediction" and saved["zero_terminal_snr"] is True


def test_a_noobai_style_single_file_is_trained_as_v_prediction_without_being_told(tmp_path, small_dataset):
    """NoobAI-XL v-pred files carry empty ``v_pred`` and ``ztsnr`` tensors: that is the whole signal."""
    from diffusers import StableDiffusionXLPipeline

    from ldm_convert import sdxl_pipeline_to_sgm
    from loratui.engine.families.tiny import tiny_model_dir

    state = sdxl_pipeline_to_sgm(StableDiffusionXLPipeline.from_pretrained(tiny_model_dir("tiny-sdxl")))
    state.update(v_pred=torch.tensor([]), ztsnr=torch.tensor([]))
    path = tmp_path / "noobaiXL-vpred.safetensors"
    save_file(state, str(path))
    events: list = []
    cfg = tiny_config(small_dataset, tmp_path, base_model=str(path), steps=2, save_every=0, sample_every=0,
                      validation="off")
    result = train(cfg, tmp_path / "noob", [events.append])
    assert not [e for e in events if isinstance(e, WarningRaised) and "training with" in e.message]
    meta = _metadata(result.lora_path)
    assert (meta["ss_v_parameterization"], meta["ss_zero_terminal_snr"]) == ("True", "True")
    assert meta["ss_base_model_version"].startswith("sdxl_")


def test_an_sd2_single_file_loads_offline_and_a_768v_run_is_asked_for_by_flag(tmp_path, small_dataset):
    """tiny-sd2 (SD-2's layout, v-prediction) as an A1111-style file with OpenCLIP-H's 24 layers."""
    from diffusers import StableDiffusionPipeline

    from ldm_convert import sd2_pipeline_to_ldm
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.families.tiny import tiny_model_dir

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir("tiny-sd2"))
    path = tmp_path / "v2-1_768-ema-pruned.safetensors"
    save_file(sd2_pipeline_to_ldm(pipe), str(path))
    spec = resolve_model(str(path))
    assert (spec.kind, spec.family) == ("single_file", "sd2")
    comps = load_components(spec)
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(pipe, part).state_dict(), comps.modules[part].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), part
    # the file cannot say it is 768-v; the flag does, and the LoRA records it
    cfg = tiny_config(small_dataset, tmp_path, base_model=str(path), steps=2, save_every=0, sample_every=0,
                      validation="off", prediction_type="v_prediction")
    meta = _metadata(train(cfg, tmp_path / "v2").lora_path)
    assert (meta["ss_v2"], meta["ss_v_parameterization"], meta["ss_base_model_version"]) == ("True", "True", "sd_v2")
    assert meta["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"  # as sd-scripts names 768-v


def test_presets_train_sd2_at_the_resolution_it_was_made_for(tmp_path, small_dataset):
    """2.x base is a 512 px model, 768-v a 768 px one: a diffusers folder's UNet says which; a
    single file cannot, so the v-prediction flag stands for 768-v. A value the user set stays."""
    import json
    import shutil

    from loratui.engine.config import build_config
    from loratui.engine.families.tiny import tiny_model_dir

    folder = tmp_path / "sd2-folder"
    shutil.copytree(tiny_model_dir("tiny-sd2"), folder)
    unet_config = folder / "unet" / "config.json"
    for sample_size, want in ((96, 768), (64, 512)):
        config = json.loads(unet_config.read_text())
        unet_config.write_text(json.dumps({**config, "sample_size": sample_size}))
        assert build_config(str(small_dataset), "pet", overrides={"base_model": str(folder)}).resolution == want
    assert build_config(str(small_dataset), "pet",
                        overrides={"base_model": str(folder), "resolution": 640}).resolution == 640

    from diffusers import StableDiffusionPipeline
    from ldm_convert import sd2_pipeline_to_ldm

    path = tmp_path / "v2-1.safetensors"
    save_file(sd2_pipeline_to_ldm(StableDiffusionPipeline.from_pretrained(tiny_model_dir("tiny-sd2"))), str(path))
    for flag, want in (("auto", 512), ("epsilon", 512), ("v_prediction", 768)):
        cfg = build_config(str(small_dataset), "pet", overrides={"base_model": str(path), "prediction_type": flag})
        assert cfg.resolution == want, flag
