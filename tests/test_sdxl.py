"""SDXL through the family seam, on tiny-sdxl (SDXL's real topology at tiny widths)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ldm_convert import unet_to_ldm
from tinyrun import stopped_then_resumed, tiny_config
from loratui.engine.events import StepLogged
from loratui.engine.train.loop import train

pytestmark = pytest.mark.slow  # SDXL-shaped runs with samples and a resume

ATTENTION = re.compile(r"\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$")
CLIP_ATTENTION = re.compile(r"\.self_attn\.(q_proj|k_proj|v_proj|out_proj)\.weight$")


@pytest.fixture(scope="module")
def tiny_sdxl() -> Path:
    from loratui.engine.families.tiny import tiny_model_dir

    return tiny_model_dir("tiny-sdxl")


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory, tiny_sdxl):
    """One tiny-sdxl run with both text encoders trained and a sample at the end."""
    from loratui.engine.data.demo import make_demo_dataset

    base = tmp_path_factory.mktemp("sdxl")
    dataset = make_demo_dataset(base / "photos", count=4)
    events: list = []
    # SDXL has no attention at the latent's full resolution, so attention LoRA learns this random
    # model slower than SD-1.5's: a higher lr, scale (alpha/rank 2) and more steps than test_train's
    cfg = tiny_config(dataset, base / "out", base_model="tiny-sdxl", steps=60, save_every=30, rank=4, alpha=8.0,
                      lr=1e-2, train_text_encoder=True, text_encoder_lr=1e-3, sample_every=60, sample_steps=2,
                      save_precision="fp32", min_snr_gamma=0)
    result = train(cfg, base / "out" / "xl", [events.append])
    return result, events, dataset


def _pipeline(folder: Path):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe) -> np.ndarray:
    return pipe("zxq, a red ball", num_inference_steps=3, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(7)).images[0]


def _modules(path: Path) -> set[str]:
    return {key.split(".")[0] for key in load_file(path)}


def test_run_finishes_with_sdxl_samples_and_files(sdxl_run):
    result, events, _ = sdxl_run
    assert result.status == "finished" and result.step == 60
    losses = [e.loss for e in events if isinstance(e, StepLogged)]
    assert all(np.isfinite(losses))
    assert (result.run_dir / "samples" / "step000060-0.png").is_file()
    assert (result.run_dir / "diffusers" / "pytorch_lora_weights.safetensors").is_file()


def test_kohya_keys_are_the_ones_kohya_names_for_the_trained_layers(sdxl_run, tiny_sdxl):
    """Derived here from the LDM state dict and the text encoders' own names, not the exporter."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    result, _, _ = sdxl_run
    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl, subfolder="unet")
    prefix = "model.diffusion_model."
    expected = {"lora_unet_" + key[len(prefix):-len(".weight")].replace(".", "_")
                for key in unet_to_ldm(unet) if ATTENTION.search(key)}
    for name, kohya, cls in (("text_encoder", "lora_te1", CLIPTextModel),
                             ("text_encoder_2", "lora_te2", CLIPTextModelWithProjection)):
        encoder = cls.from_pretrained(tiny_sdxl, subfolder=name)
        for key in encoder.state_dict():
            if CLIP_ATTENTION.search(key):
                module = key[:-len(".weight")]
                if not module.startswith("text_model."):  # transformers 5 drops the level; kohya keeps it
                    module = "text_model." + module
                expected.add(f"{kohya}_{module.replace('.', '_')}")
    got = _modules(result.lora_path)
    assert got == expected, (sorted(got - expected)[:5], sorted(expected - got)[:5])
    assert any(m.startswith("lora_unet_middle_block_1_transformer_blocks_0_attn2") for m in got)
    assert any(m.startswith("lora_unet_output_blocks_0_1_transformer_blocks_9_") for m in got)


def test_alpha_and_metadata_say_sdxl(sdxl_run):
    result, _, _ = sdxl_run
    tensors = load_file(result.lora_path)
    alphas = {k: v for k, v in tensors.items() if k.endswith(".alpha")}
    assert alphas and all(float(v) == 8.0 for v in alphas.values())
    assert all(tensors[k.replace(".alpha", ".lora_down.weight")].shape[0] == 4 for k in alphas)
    with safe_open(str(result.lora_path), "pt") as fh:
        meta = fh.metadata()
    assert meta["ss_base_model_version"].startswith("loratui_tiny_sdxl_")  # tiny-sdxl: never a real SDXL's
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "8.0"
    assert meta["ss_v2"] == "False"
    assert meta["modelspec.architecture"] == "loratui-tiny-stable-diffusion-xl-v1-base/lora"
    assert (meta["modelspec.prediction_type"], meta["modelspec.resolution"]) == ("epsilon", "64x64")
    assert "zxq" in json.loads(meta["ss_tag_frequency"])["photos"]


def _lora_layers(model, adapter: str) -> int:
    return sum(1 for m in model.modules() if hasattr(m, "lora_A") and adapter in m.lora_A)


@pytest.mark.parametrize("which", ["kohya", "diffusers"])
def test_files_load_in_the_sdxl_pipeline_whole_and_strength_zero_is_the_base(sdxl_run, tiny_sdxl, which):
    result, _, _ = sdxl_run
    path = result.lora_path if which == "kohya" else result.run_dir / "diffusers" / "pytorch_lora_weights.safetensors"
    modules = _modules(result.lora_path)
    pipe = _pipeline(tiny_sdxl)
    base = _image(pipe)
    pipe.load_lora_weights(str(path), adapter_name="x")
    # every module of the file became a LoRA layer of the pipeline: no key was left unused
    assert _lora_layers(pipe.unet, "x") == sum(m.startswith("lora_unet_") for m in modules)
    assert _lora_layers(pipe.text_encoder, "x") == sum(m.startswith("lora_te1_") for m in modules)
    assert _lora_layers(pipe.text_encoder_2, "x") == sum(m.startswith("lora_te2_") for m in modules)
    assert np.abs(_image(pipe) - base).max() > 1e-4  # the LoRA changes the image
    pipe.set_adapters(["x"], adapter_weights=[0.0])
    assert np.array_equal(_image(pipe), base)  # weight 0 is exactly the base model


def test_training_lowers_the_probe_loss(sdxl_run, tiny_sdxl):
    from loratui.engine.data.batches import TrainItem
    from loratui.engine.families import FAMILIES
    from loratui.engine.data.images import fit_to_bucket, image_size, open_rgb, to_tensor
    from loratui.engine.validate.probe import probe_loss

    result, _, dataset = sdxl_run
    paths = sorted(dataset.glob("*.png"))
    pixels = torch.stack([to_tensor(fit_to_bucket(open_rgb(p), (64, 64))) for p in paths])
    captions = [p.with_suffix(".txt").read_text().strip() for p in paths]
    # each photo's own size and centre crop, as training conditioned on them
    sizes = torch.tensor([TrainItem(0, None, (64, 64), 1, image_size(p)).size_conditioning() for p in paths])

    def probe(pipe) -> float:
        modules = {n: getattr(pipe, n) for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
        tokenizers = {"text_encoder": pipe.tokenizer, "text_encoder_2": pipe.tokenizer_2}
        return probe_loss(FAMILIES["sdxl"], modules, tokenizers, pipe.scheduler, pixels, captions, sizes=sizes)

    pipe = _pipeline(tiny_sdxl)
    before = probe(pipe)
    pipe.load_lora_weights(str(result.lora_path))
    after = probe(pipe)
    # fixed noise and timesteps: deterministic; 60 steps at scale 2 take about 5% off
    assert after < before * 0.97, (before, after)


def test_stop_half_way_then_resume_is_bit_identical(tmp_path, small_dataset, tiny_sdxl):
    cfg = tiny_config(small_dataset, tmp_path, base_model="tiny-sdxl", steps=8, save_every=0, rank=4,
                      train_text_encoder=True, sample_every=0)
    whole = train(cfg, tmp_path / "whole")
    part, resumed = stopped_then_resumed(cfg, tmp_path / "part", at=3)
    assert part.status == "stopped" and part.step == 3 and resumed.step == 8
    wa, wb = load_file(whole.lora_path), load_file(resumed.lora_path)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_size_conditioning_follows_the_bucket_fit():
    from loratui.engine.data.batches import TrainItem
    from loratui.engine.data.dataset import ImageRecord

    record = ImageRecord.__new__(ImageRecord)
    # a 1600x1200 photo into a 1152x896 bucket: resized to 1195x896 to cover it, cropped 21 px each side
    item = TrainItem(0, record, (1152, 896), 1, (1600, 1200))
    assert item.size_conditioning() == (1200, 1600, 0, 21, 896, 1152)
    assert TrainItem(0, record, (64, 64), 1, (64, 64)).size_conditioning() == (64, 64, 0, 0, 64, 64)


def test_loratui_sample_makes_an_sdxl_grid(sdxl_run):
    from PIL import Image

    from loratui.engine.validate.xyz import plan_sample, render_plan

    result, _, _ = sdxl_run
    plan = plan_sample(result.run_dir, prompts=["zxq, a red ball"], strengths=[0.0, 1.0], which="last", steps=2)
    out = render_plan(plan)
    assert out.grids and out.grids[0].is_file()
    cells = {c.strength: np.asarray(Image.open(c.path)) for c in out.cells}
    assert cells[0.0].shape == (64, 64, 3)  # rendered at the run's resolution, by the SDXL pipeline
    assert not np.array_equal(cells[0.0], cells[1.0])  # the LoRA shows at strength 1


def test_an_sdxl_single_file_loads_offline_with_the_same_weights(tmp_path, tiny_sdxl):
    """tiny-sdxl written in the SGM layout Civitai's Pony/Illustrious/NoobAI files use."""
    from safetensors.torch import save_file

    from ldm_convert import sdxl_pipeline_to_sgm
    from loratui.engine.families.models import load_components, resolve_model

    pipe = _pipeline(tiny_sdxl)
    path = tmp_path / "tinyXL-pony.safetensors"
    save_file(sdxl_pipeline_to_sgm(pipe), str(path))
    spec = resolve_model(str(path))
    assert (spec.kind, spec.family) == ("single_file", "sdxl")
    comps = load_components(spec)
    assert comps.family.name == "sdxl"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(pipe, part).state_dict(), comps.modules[part].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), part


def test_a_single_file_sdxl_trains_and_exports_sdxl_keys(tmp_path, small_dataset, tiny_sdxl):
    from safetensors.torch import save_file

    from ldm_convert import sdxl_pipeline_to_sgm

    path = tmp_path / "tinyXL.safetensors"
    save_file(sdxl_pipeline_to_sgm(_pipeline(tiny_sdxl)), str(path))
    result = train(tiny_config(small_dataset, tmp_path, base_model=str(path), steps=2, save_every=0,
                               sample_every=0, validation="off"), tmp_path / "file")
    modules = _modules(result.lora_path)
    assert any(m.startswith("lora_unet_input_blocks_4_1_") for m in modules)
    with safe_open(str(result.lora_path), "pt") as fh:
        assert fh.metadata()["ss_sd_model_name"] == "tinyXL"


def test_full_size_sdxl_configs_assemble_offline():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from loratui.engine.families.shipped import SDXL_FILES, sdxl_config_dir

    folder = sdxl_config_dir()
    assert all((folder / name).is_file() for name in SDXL_FILES)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae"))
        clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))
        big_g = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2"))
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, clip_l, big_g)]
    # SDXL base 1.0's published sizes: UNet 2.567B, VAE 83.65M, CLIP-L 123.06M, bigG with projection 694.66M
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]
    first = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    second = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer_2")
    ids = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert first("a photo of a cat").input_ids == ids == second("a photo of a cat").input_ids
    padded = second("a cat", padding="max_length", max_length=77).input_ids
    assert padded[-1] == second.convert_tokens_to_ids("!") == 0  # bigG pads with "!", CLIP-L with <|endoftext|>
    assert first("a cat", padding="max_length", max_length=77).input_ids[-1] == 49407


def test_the_memory_model_measures_sdxl_with_both_text_encoders(tiny_sdxl):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from loratui.engine.config import build_config
    from loratui.engine.planning.footprint import memory_model
    from loratui.engine.families.models import resolve_model

    config = build_config("photos", "pet", overrides=dict(base_model="tiny-sdxl", resolution=64, sample_every=0))
    model = memory_model(config, resolve_model("tiny-sdxl"), "fp32")
    encoders = (CLIPTextModel.from_pretrained(tiny_sdxl, subfolder="text_encoder"),
                CLIPTextModelWithProjection.from_pretrained(tiny_sdxl, subfolder="text_encoder_2"))
    assert model.text_encoder_bytes == 4 * sum(p.numel() for e in encoders for p in e.parameters())
    # the pass ran with SDXL's pooled text and size conditioning, and counted its work
    assert model.unet.per_image > 0 and model.unet.flops_per_image > 0
    assert model.estimate(2).total > model.estimate(1).total


def test_presets_give_sdxl_the_fields_values_and_keep_the_users(small_dataset):
    """SDXL at 1024 px trains at a higher rank with alpha at half of it, batch 2; a rank the user
    sets keeps the family's alpha:rank ratio, and values the user sets are kept."""
    from loratui.engine.config import build_config
    from loratui.engine.families import FAMILIES

    sdxl = FAMILIES["sdxl"]
    for preset in ("person", "style", "pet"):
        cfg = build_config(str(small_dataset), preset, overrides={"base_model": "tiny-sdxl"})
        want = sdxl.preset_values[preset]
        assert (cfg.rank, cfg.alpha, cfg.lr, cfg.batch_size) == (want["rank"], want["alpha"], want["lr"], 2)
        sd15 = build_config(str(small_dataset), preset, overrides={"base_model": "tiny"})
        assert sd15.alpha is None and sd15.rank < cfg.rank  # SD-1.5 keeps the presets' own values
    cfg = build_config(str(small_dataset), "person", overrides={"base_model": "tiny-sdxl", "rank": 8, "lr": 1e-3})
    assert (cfg.rank, cfg.alpha, cfg.lr) == (8, 4.0, 1e-3)
    cfg = build_config(str(small_dataset), "person", overrides={"base_model": "tiny-sdxl", "alpha": 1, "batch_size": 3})
    assert (cfg.rank, cfg.alpha, cfg.batch_size) == (32, 1.0, 3)


def test_a_captions_conditioning_does_not_depend_on_what_was_encoded_before(tiny_sdxl):
    """tiny-sdxl's encoders round a row differently inside a batch (4.8e-7 here), so a cache
    filled from batches made a resumed run (empty cache) condition differently: resume was not
    bit-identical at default settings (issue 14, part 4)."""
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.train.conditioning import TextConditioner

    comps = load_components(resolve_model("tiny-sdxl"))
    captions = ["zxq, a red ball on grass", "zxq, a blue cube", "zxq, on a beach at sunset, wide shot"]

    def fresh(cache: bool = True) -> TextConditioner:
        return TextConditioner(comps.family, comps.text_encoders, comps.tokenizers, "cpu", cache=cache)

    warm = fresh()
    warm(captions)  # as a run's first steps (or its validation) would
    for caption in captions:
        got, want = warm([caption]), fresh()([caption])
        assert all(torch.equal(got[k], want[k]) for k in want), caption
    # without the cache (shuffled tags) a call encodes exactly its own batch, whatever came before
    uncached = fresh(cache=False)
    uncached(captions[:1])
    got, want = uncached(captions), fresh(cache=False)(captions)
    assert all(torch.equal(got[k], want[k]) for k in want)
