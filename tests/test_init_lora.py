"""--init-lora: a run starts at exactly the weights of the LoRA it is given (kohya or diffusers
format, a file or a run folder), says what differs, and records its parent."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tinyrun import tiny_config
from loratui.engine.errors import ConfigError
from loratui.engine.events import EventBus, WarningRaised
from loratui.engine.train.loop import TrainingRun, _NoState, train
from loratui.engine.train.stop import StopSignal


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A finished tiny run (rank 4, alpha 2, UNet and text encoder) to continue from."""
    from loratui.engine.data.demo import make_demo_dataset

    tmp = tmp_path_factory.mktemp("parent")
    dataset = make_demo_dataset(tmp / "photos", count=4)
    cfg = tiny_config(dataset, tmp, steps=2, save_every=0, rank=4, alpha=2, train_text_encoder=True,
                      sample_every=0, validation="off", batch_size=1)
    return dataset, train(cfg, tmp / "cat")


def _step0_export(dataset, tmp_path, source, **overrides):
    """A run set up from ``source``, and its LoRA file exported before any step."""
    values = dict(steps=2, save_every=0, rank=4, alpha=2, train_text_encoder=True, sample_every=0,
                  validation="off", batch_size=1, init_lora=str(source), loss_type="huber", debiased_estimation=True,
                  multires_noise_iterations=6)
    values.update(overrides)
    cfg = tiny_config(dataset, tmp_path, **values)
    warnings: list[str] = []
    bus = EventBus([lambda e: warnings.append(e.message) if isinstance(e, WarningRaised) else None])
    run = TrainingRun(cfg, tmp_path / "child", bus, _NoState(), StopSignal(), resume=False)
    run.setup()
    path, _ = run.writer.lora_file("child", 0)
    run.writer.card(0, None, "stopped")
    return path, warnings


@pytest.mark.parametrize("form", ["kohya file", "run folder", "diffusers file"])
def test_a_run_starts_at_exactly_the_given_lora(parent, tmp_path, form):
    dataset, result = parent
    source = {"kohya file": result.lora_path, "run folder": result.run_dir,
              "diffusers file": result.run_dir / "diffusers" / "pytorch_lora_weights.safetensors"}[form]
    exported, warnings = _step0_export(dataset, tmp_path, source)
    given, got = load_file(result.lora_path), load_file(exported)
    assert given.keys() == got.keys()
    assert all(torch.equal(given[k], got[k]) for k in given), f"step 0 differs from the {form}"
    assert not warnings
    with safe_open(str(exported), "pt") as fh:
        meta = fh.metadata()
    import hashlib

    assert meta["ss_network_weights"] == source.name if form != "run folder" else result.lora_path.name
    assert meta["ss_loratui_network_weights_sha256"] == hashlib.sha256(
        (result.lora_path if form == "run folder" else source).read_bytes()).hexdigest()
    # the loss options of this run are in the metadata under kohya's names
    assert (meta["ss_loss_type"], meta["ss_huber_c"], meta["ss_huber_schedule"]) == ("huber", "0.1", "snr")
    assert meta["ss_debiased_estimation"] == "True" and meta["ss_multires_noise_iterations"] == "6"
    card = (tmp_path / "child" / "README.md").read_text()
    assert f"| continued from | `{meta['ss_network_weights']}` (sha256 `{meta['ss_loratui_network_weights_sha256'][:12]}" in card
    assert "| loss | pseudo-Huber, c 0.1 (snr schedule); min-SNR γ 5; debiased estimation; multi-resolution noise" in card


def test_other_alpha_is_rescaled_and_missing_text_encoder_is_said(parent, tmp_path):
    dataset, result = parent
    exported, warnings = _step0_export(dataset, tmp_path, result.lora_path, alpha=4, train_text_encoder=False)
    given, got = load_file(result.lora_path), load_file(exported)
    assert not any(k.startswith("lora_te") for k in got)
    for key in (k for k in got if k.endswith("lora_up.weight")):
        # the same LoRA: up × alpha/rank is what the file does
        assert torch.allclose(got[key].float() * 4 / 4, given[key].float() * 2 / 4, atol=1e-3)
    assert len(warnings) == 1 and "text-encoder modules" in warnings[0] and "alpha 2" in warnings[0]


def test_a_different_rank_is_one_clear_error(parent, tmp_path):
    dataset, result = parent
    with pytest.raises(ConfigError) as err:
        _step0_export(dataset, tmp_path, result.lora_path, rank=8)
    assert "rank 4, this run's rank is 8" in err.value.message and "--rank 4 --alpha 2" in err.value.hint


def test_the_parent_is_kept_across_a_resume(parent, tmp_path):
    from tinyrun import stopped_then_resumed

    dataset, result = parent
    cfg = tiny_config(dataset, tmp_path, steps=2, save_every=0, rank=4, alpha=2, sample_every=0,
                      validation="off", batch_size=1, init_lora=str(result.run_dir))
    part, resumed = stopped_then_resumed(cfg, tmp_path / "child", at=1)
    assert part.status == "stopped" and resumed.status == "finished"
    with safe_open(str(resumed.lora_path), "pt") as fh:
        meta = fh.metadata()
    assert meta["ss_network_weights"] == result.lora_path.name
    assert "| continued from | `cat.safetensors`" in (tmp_path / "child" / "README.md").read_text()
