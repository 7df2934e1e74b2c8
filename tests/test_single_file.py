"""A1111-style single-file checkpoints load offline, through diffusers' real conversion path.

The tiny pipeline is written out as an original-LDM ``.safetensors`` (``ldm_convert``), then
loaded and trained on exactly as a user's ``v1-5-pruned-emaonly.safetensors`` would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ldm_convert import pipeline_to_ldm  # tests/ is on sys.path (pytest's rootdir conftest)


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_pipe, tmp_path_factory) -> Path:
    """The tiny model as one A1111-style file (UNet, VAE and CLIP under their LDM names)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny-sd15-pruned.safetensors"
    save_file(pipeline_to_ldm(tiny_pipe.unet, tiny_pipe.vae, tiny_pipe.text_encoder), str(path))
    return path


def write_header_only(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A file with a real safetensors header of ``shapes`` (zeros, fp16: kept small)."""
    save_file({key: torch.zeros(shape, dtype=torch.float16) for key, shape in shapes.items()}, str(path))
    return path


SD15_HEADER = {
    "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
}


def test_single_file_loads_the_same_weights_and_outputs(tiny_checkpoint, tiny_pipe):
    from loratui.engine.families.models import load_components, resolve_model

    spec = resolve_model(str(tiny_checkpoint))
    assert spec.kind == "single_file" and spec.name == "tiny-sd15-pruned"
    comps = load_components(spec)
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(tiny_pipe, part).state_dict(), comps.modules[part].state_dict()
        assert set(got) == set(want), part
        assert all(torch.equal(got[k], want[k]) for k in want), part
        assert all(p.dtype == torch.float32 and not p.is_meta for p in comps.modules[part].parameters())

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 8, 8, generator=generator)
    ids = comps.tokenizers["text_encoder"](["a photo of zxq"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    # The weights are bit-identical (above); the loaded ones are views into the memory-mapped
    # file, aligned differently, so CPU kernels may round the last bit differently: fp32 tolerance.
    with torch.no_grad():
        text = comps.modules["text_encoder"](ids)[0]
        torch.testing.assert_close(text, tiny_pipe.text_encoder(ids)[0])
        timestep = torch.tensor([500])
        noise = comps.unet(latents, timestep, text).sample
        torch.testing.assert_close(noise, tiny_pipe.unet(latents, timestep, text).sample)
        image = torch.rand(1, 3, 64, 64, generator=generator)
        mean = comps.vae.encode(image).latent_dist.mean
        torch.testing.assert_close(mean, tiny_pipe.vae.encode(image).latent_dist.mean)
        torch.testing.assert_close(comps.vae.decode(mean).sample, tiny_pipe.vae.decode(mean).sample)
    assert noise.abs().mean() > 0.01  # a real output, not zeros from unloaded weights
    # the training scheduler keeps SD's betas
    assert comps.noise_scheduler.config.beta_schedule == "scaled_linear"
    assert comps.noise_scheduler.config.num_train_timesteps == 1000


def test_train_on_a_single_file_checkpoint_in_a_subprocess(tiny_checkpoint, small_dataset, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "loratui", "train", str(small_dataset), "--base-model", str(tiny_checkpoint),
         "--steps", "2", "--resolution", "64", "--output", str(tmp_path / "runs"), "--name", "cat"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lora = tmp_path / "runs" / "cat" / "cat.safetensors"
    assert lora.is_file()
    from safetensors import safe_open

    with safe_open(str(lora), framework="pt") as handle:
        assert any(key.startswith("lora_unet_") for key in handle.keys())
        assert handle.metadata()["ss_sd_model_name"] == "tiny-sd15-pruned"


def test_full_size_config_folder_assembles_offline():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from loratui.engine.families.shipped import SD15_FILES, sd15_config_dir

    folder = sd15_config_dir()
    assert all((folder / name).is_file() for name in SD15_FILES)
    assert sd15_config_dir() == folder  # the second call finds the cached folder
    with init_empty_weights():  # meta tensors: instant, no 3.4 GB allocated
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))
    # SD-1.5's published sizes: UNet 859.52M, VAE 83.65M, CLIP ViT-L/14 text 123.06M parameters
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863
    assert sum(p.numel() for p in text_encoder.parameters()) == 123_060_480
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_checkpoint_shapes_pick_the_config(tmp_path, tiny_checkpoint, tiny_model):
    from loratui.engine.families.shipped import config_dir_for_checkpoint, sd15_config_dir

    sd15 = write_header_only(tmp_path / "v1-5-pruned-emaonly.safetensors", SD15_HEADER)
    assert config_dir_for_checkpoint(sd15) == sd15_config_dir()
    assert config_dir_for_checkpoint(tiny_checkpoint) == tiny_model


@pytest.mark.parametrize(
    "shapes",
    [
        {  # SD-2 (cross-attention dim 1024, an OpenCLIP text encoder) with most of its weights missing
            "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024),
            "cond_stage_model.model.token_embedding.weight": (8, 1024),
        },
        {  # an SDXL-like file whose UNet is no SDXL (a refiner's 384 wide, 1280 cross-attention)
            "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (768, 1280),
            "conditioner.embedders.0.model.text_projection": (1280, 1280),
        },
    ],
    ids=["sd2", "sdxl-refiner"],
)
def test_broken_sd2_and_unknown_sdxl_single_files_are_refused_in_one_line(tmp_path, shapes):
    from loratui.engine.errors import ModelError
    from loratui.engine.families.models import load_components, resolve_model

    path = write_header_only(tmp_path / "other.safetensors", shapes)
    with pytest.raises(ModelError) as info:
        load_components(resolve_model(str(path)))
    line = str(info.value)
    assert "\n" not in line and str(path) in line
    assert ("not an SD-2.x checkpoint loratui can read" in line and "pass an SD-2.x .safetensors" in line) or \
        ("unknown UNet shape" in line and "SDXL" in line)


def test_other_files_fail_with_one_line_naming_them(tmp_path):
    from loratui.engine.errors import ModelError
    from loratui.engine.families.models import load_components, resolve_model

    inpaint = write_header_only(tmp_path / "inpaint.safetensors", {
        **SD15_HEADER, "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)
    })
    no_unet = write_header_only(tmp_path / "vae-only.safetensors", {"first_stage_model.decoder.conv_in.bias": (4,)})
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    for path, needle in ((inpaint, "inpainting"), (no_unet, "no Stable Diffusion UNet"), (broken, "not a valid safetensors")):
        with pytest.raises(ModelError, match=needle) as info:
            load_components(resolve_model(str(path)))
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_pickle_checkpoint_is_refused_without_allow_pickle(tmp_path, tiny_checkpoint):
    from loratui.engine.errors import ModelError
    from loratui.engine.families.models import resolve_model

    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not even opened")  # refused by its name: nothing is unpickled
    with pytest.raises(ModelError, match="pickle checkpoints can run code") as info:
        resolve_model(str(ckpt))
    assert "--allow-pickle" in str(info.value) and "\n" not in str(info.value)
    assert resolve_model(str(ckpt), allow_pickle=True).kind == "single_file"


def test_allowed_pickle_checkpoint_loads_like_the_safetensors_one(tmp_path, tiny_checkpoint, tiny_pipe):
    from safetensors.torch import load_file

    from loratui.engine.families.models import load_components, resolve_model

    ckpt = tmp_path / "tiny-sd15.ckpt"
    # LDM training checkpoints nest the weights under "state_dict", beside the step counter
    torch.save({"global_step": 10, "state_dict": load_file(str(tiny_checkpoint))}, ckpt)
    comps = load_components(resolve_model(str(ckpt), allow_pickle=True))
    want = tiny_pipe.unet.state_dict()
    assert all(torch.equal(comps.unet.state_dict()[k], want[k]) for k in want)


def test_full_size_sd2_configs_assemble_offline():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from loratui.engine.families.shipped import sd2_config_dir

    folder = sd2_config_dir()
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))
    # SD-2.1's published sizes: UNet 865.91M; OpenCLIP-H's text tower less its unused last layer 340.39M
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724
    assert sum(p.numel() for p in text_encoder.parameters()) == 340_387_840
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    assert tokenizer("a cat", padding="max_length", max_length=8).input_ids == [49406, 320, 2368, 49407, 0, 0, 0, 0]
