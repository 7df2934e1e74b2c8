"""The training loop on the tiny model: it learns, it exports loadable files, it stops and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tinyrun import tiny_config
from loratui.engine.events import StepLogged
from loratui.engine.train.stop import StopSignal
from loratui.engine.train.loop import train


def _pipeline(tiny_model):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(pipe, **kwargs) -> np.ndarray:
    out = pipe(
        "zxq, a red ball", num_inference_steps=3, height=64, width=64, output_type="np",
        generator=torch.Generator().manual_seed(7), **kwargs,
    )
    return out.images[0]


def _probe(pipe, dataset: Path) -> float:
    from loratui.engine.data.images import fit_to_bucket, open_rgb, to_tensor
    from loratui.engine.validate.probe import probe_loss

    paths = sorted(dataset.glob("*.png"))
    pixels = torch.stack([to_tensor(fit_to_bucket(open_rgb(p), (64, 64))) for p in paths])
    captions = [p.with_suffix(".txt").read_text().strip() for p in paths]
    from loratui.engine.families import FAMILIES

    modules = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder}
    return probe_loss(FAMILIES["sd15"], modules, {"text_encoder": pipe.tokenizer}, pipe.scheduler, pixels, captions)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model):
    """One 40-step run on four images, shared by the tests that only read its outputs."""
    from loratui.engine.data.demo import make_demo_dataset

    base = tmp_path_factory.mktemp("run")
    dataset = make_demo_dataset(base / "photos", count=4)
    events = []
    cfg = tiny_config(dataset, base / "out", steps=40, save_every=20, alpha=4.0, rank=8)
    result = train(cfg, base / "out" / "photos", [events.append])
    return result, events, dataset


def test_run_directory_matches_the_design(finished_run):
    result, events, _ = finished_run
    run = result.run_dir
    assert result.status == "finished" and result.step == 40
    for name in ("config.toml", "state.json", "events.jsonl", "photos.safetensors", "README.md",
                 "photos-step000020.safetensors", "diffusers/pytorch_lora_weights.safetensors"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "latest.json").is_file()
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "finished" and state["step"] == state["total_steps"] == 40
    lines = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in lines]
    assert kinds.count("step") == 40 and kinds[-1] == "run_finished"
    assert {"run_started", "checkpoint_saved"} <= set(kinds)
    step = next(e for e in lines if e["event"] == "step")
    for key in ("step", "total_steps", "epoch", "loss", "lr", "it_per_s", "eta_s",
                "mem_used", "mem_peak", "mem_total", "mem_kind", "t"):
        assert key in step
    assert step["mem_kind"] == "ram" and 0 < step["mem_used"] <= step["mem_total"]
    assert all(np.isfinite(e.loss) for e in events if isinstance(e, StepLogged))
    card = (run / "README.md").read_text()
    # the tiny model's LoRA says what it is for, and how to try it (not A1111, which cannot load it)
    assert "zxq" in card and "tiny test model" in card and "loratui sample" in card
    assert "<lora:photos:" not in card


def test_kohya_file_has_real_alpha_and_kohya_metadata(finished_run):
    result, _, _ = finished_run
    with safe_open(result.lora_path, "pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
        alphas = {k: f.get_tensor(k).item() for k in keys if k.endswith(".alpha")}
        down = f.get_tensor(next(k for k in keys if k.endswith("lora_down.weight")))
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight" in keys
    assert alphas and set(alphas.values()) == {4.0}  # the real alpha, not diffusers' rank
    assert down.shape[0] == 8 and down.dtype == torch.float16
    assert meta["ss_network_module"] == "networks.lora"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("8", "4.0")
    # the tiny model's LoRA names SD-1.5 as its family but never claims to be for a real SD-1.5 model
    assert meta["ss_base_model_version"] == "loratui_tiny_sd_v1" and meta["ss_sd_model_name"] == "loratui-tiny-sd15"
    assert meta["modelspec.architecture"] == "loratui-tiny-stable-diffusion-v1/lora"
    assert "tiny test model" in meta["modelspec.description"]
    assert meta["ss_steps"] == "40" and meta["ss_max_train_steps"] == "40"
    assert meta["ss_num_train_images"] == "4" and meta["ss_output_name"] == "photos"
    assert meta["ss_resolution"] == "(64, 64)" and meta["ss_seed"] == "42"
    freq = json.loads(meta["ss_tag_frequency"])
    assert freq["photos"]["zxq"] == 4 and freq["photos"]["a red ball"] == 4
    assert float(meta["ss_training_finished_at"]) >= float(meta["ss_training_started_at"])
    assert len(meta["sshs_model_hash"]) == 64
    assert meta["ss_optimizer"] == "torch.optim.AdamW"


def test_metadata_names_the_optimizer_that_ran_after_a_fallback(tmp_path, small_dataset):
    warnings = []
    result = train(tiny_config(small_dataset, tmp_path, steps=1, save_every=0, sample_every=0, optimizer="adamw8bit"),
                   tmp_path / "r", [lambda e: warnings.append(e.message) if e.event == "warning" else None])
    assert any("8-bit AdamW needs a CUDA GPU" in w for w in warnings)
    with safe_open(result.lora_path, "pt") as f:
        assert f.metadata()["ss_optimizer"] == "torch.optim.AdamW"  # not the 8-bit one that was asked for


def test_exported_files_load_in_diffusers_and_strength_zero_is_the_base(finished_run, tiny_model):
    result, _, _ = finished_run
    pipe = _pipeline(tiny_model)
    base = _image(pipe)
    pipe.load_lora_weights(str(result.lora_path), adapter_name="kohya")
    with_lora = _image(pipe)
    assert np.abs(with_lora - base).max() > 1e-3  # the LoRA changes the image
    pipe.set_adapters(["kohya"], adapter_weights=[0.0])
    assert np.array_equal(_image(pipe), base)  # weight 0 is exactly the base model
    pipe.delete_adapters("kohya")
    pipe.load_lora_weights(str(result.run_dir / "diffusers"), adapter_name="diffusers")
    # same weights (fp16 in both files) and the same alpha: the same picture
    np.testing.assert_allclose(_image(pipe), with_lora, atol=1e-5)


def test_training_lowers_the_fixed_probe_loss(tmp_path, tiny_model, small_dataset):
    cfg = tiny_config(small_dataset, tmp_path / "out", steps=60, save_every=0, lr=2e-3, rank=8,
                      min_snr_gamma=0, save_precision="fp32")
    result = train(cfg, tmp_path / "out" / "r")
    pipe = _pipeline(tiny_model)
    before = _probe(pipe, small_dataset)
    pipe.load_lora_weights(str(result.lora_path))
    after = _probe(pipe, small_dataset)
    assert after < before * 0.95, (before, after)


def test_same_seed_gives_identical_weights(tmp_path, small_dataset):
    a = train(tiny_config(small_dataset, tmp_path, steps=6, save_every=0), tmp_path / "a")
    b = train(tiny_config(small_dataset, tmp_path, steps=6, save_every=0), tmp_path / "b")
    c = train(tiny_config(small_dataset, tmp_path, steps=6, save_every=0, seed=7), tmp_path / "c")
    wa, wb, wc = (load_file(r.lora_path) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_stop_half_way_then_resume_finishes_identically(tmp_path, small_dataset):
    cfg = tiny_config(small_dataset, tmp_path, steps=12, save_every=0, shuffle_tags=True, caption_dropout=0.2,
                      noise_offset=0.05)
    whole = train(cfg, tmp_path / "whole")

    stop = StopSignal()

    def stop_at_5(event):
        if isinstance(event, StepLogged) and event.step == 5:
            stop.request("test")

    part = train(cfg, tmp_path / "part", [stop_at_5], stop=stop)
    assert part.status == "stopped" and part.step == 5
    assert json.loads((tmp_path / "part" / "state.json").read_text())["status"] == "stopped"
    assert (tmp_path / "part" / "part-step000005.safetensors").is_file()
    resumed = train(cfg, tmp_path / "part", resume=True)
    assert resumed.status == "finished" and resumed.step == 12
    steps = [json.loads(line) for line in (tmp_path / "part" / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in steps if e["event"] == "step"] == list(range(1, 13))
    wa, wb = load_file(whole.lora_path), load_file(resumed.lora_path)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "resumed run differs from the uninterrupted one"


def test_text_encoder_lora_exports_lora_te_keys(tmp_path, small_dataset, tiny_model):
    cfg = tiny_config(small_dataset, tmp_path, steps=4, save_every=0, train_text_encoder=True,
                      save_precision="fp32")
    result = train(cfg, tmp_path / "te")
    keys = load_file(result.lora_path).keys()
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in keys)
    for source in (result.lora_path, result.run_dir / "diffusers"):
        pipe = _pipeline(tiny_model)
        base = pipe.text_encoder(torch.tensor([[1, 2, 3]]))[0]
        pipe.load_lora_weights(str(source))  # diffusers reads the text-encoder half too
        changed = pipe.text_encoder(torch.tensor([[1, 2, 3]]))[0]
        assert not torch.allclose(base, changed), source


def test_missing_model_fails_before_any_run_output(tmp_path, small_dataset):
    from loratui.engine.errors import ModelError

    cfg = tiny_config(small_dataset, tmp_path, base_model=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ModelError, match="no such model"):
        train(cfg, tmp_path / "r")
    assert json.loads((tmp_path / "r" / "state.json").read_text())["status"] == "failed"
    assert not list((tmp_path / "r").glob("*.safetensors"))


def test_sample_and_validation_passes_show_progress_and_count_in_the_eta(tmp_path, small_dataset):
    """The live view must not freeze during these passes (they can be half of a short run), and
    the ETA must include the ones still to come."""
    events: list = []
    cfg = tiny_config(small_dataset, tmp_path, steps=6, save_every=2, sample_every=3, sample_steps=2)
    train(cfg, tmp_path / "run", [events.append])
    phases = [(e.phase, e.done, e.total) for e in events if e.event == "phase" and e.phase != "loading model"]
    n = len(cfg.sample_prompts or []) or max(t for p, _, t in phases if p == "sampling")
    sampling = [(d, t) for p, d, t in phases if p == "sampling"]
    assert sampling == [(d, n) for d in range(n + 1)] * 2  # at steps 3 and 6, one event per image
    assert [(d, t) for p, d, t in phases if p == "validating"] == [(0, 1), (1, 1)] * 3  # steps 2, 4, 6
    steps = {e.step: e for e in events if isinstance(e, StepLogged)}
    at4 = steps[4]  # a sample pass and a validation pass are still to come
    assert at4.eta_s > (6 - 4) / at4.it_per_s
    assert steps[6].eta_s == 0
