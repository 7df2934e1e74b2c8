"""The loss options (issue 12, item 7) on fixed inputs: each changes the loss the way its
definition says, through the real training-loss path on the tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from loratui.engine.config import RunConfig, build_config
from loratui.engine.train.loss import debiased_weight, elementwise_loss, huber_threshold, pyramid_noise


@pytest.fixture(scope="module")
def denoiser():
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.train.conditioning import TextConditioner
    from loratui.engine.train.denoiser import Denoiser

    comps = load_components(resolve_model("tiny"))
    condition = TextConditioner(comps.family, comps.text_encoders, comps.tokenizers, torch.device("cpu"), False)
    return Denoiser(comps.family, comps.unet, condition, comps.noise_scheduler)


def _batch(denoiser):
    from loratui.engine.train.step import MicroBatch

    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((3, 4, 8, 8), generator=gen)
    noise = torch.randn((3, 4, 8, 8), generator=gen)
    return MicroBatch([0, 1, 2], latents, noise, torch.tensor([10, 500, 990]), ["a", "b", "c"])


def _losses(denoiser, **options):
    from loratui.engine.train.step import sample_losses

    config = RunConfig(dataset="x", min_snr_gamma=0, **options)
    with torch.no_grad():
        return sample_losses(denoiser, _batch(denoiser), [0, 1, 2], config, torch.device("cpu"), torch.float32)


def _residual(denoiser):
    batch = _batch(denoiser)
    with torch.no_grad():
        noisy = denoiser.noise_scheduler.add_noise(batch.latents, batch.noise, batch.timesteps)
        pred = denoiser.predict(noisy, batch.timesteps, denoiser.condition(batch.captions))
    return pred - denoiser.target(batch.latents, batch.noise, batch.timesteps)


def test_l1_and_huber_losses_follow_their_definitions(denoiser):
    d = _residual(denoiser)
    assert torch.allclose(_losses(denoiser), (d**2).mean(dim=[1, 2, 3]), atol=1e-6)
    assert torch.allclose(_losses(denoiser, loss_type="l1"), d.abs().mean(dim=[1, 2, 3]), atol=1e-6)
    c = 0.3
    huber = 2 * c * ((d**2 + c**2).sqrt() - c)
    assert torch.allclose(_losses(denoiser, loss_type="huber", huber_c=c, huber_schedule="constant"),
                          huber.mean(dim=[1, 2, 3]), atol=1e-6)
    assert torch.allclose(_losses(denoiser, loss_type="smooth_l1", huber_c=c, huber_schedule="constant"),
                          (huber / c).mean(dim=[1, 2, 3]), atol=1e-5)


def test_pseudo_huber_is_quadratic_for_small_errors_and_linear_for_large():
    c = torch.tensor([0.1])
    small, large = torch.tensor([[1e-3]]), torch.tensor([[100.0]])
    assert elementwise_loss(small, torch.zeros(1, 1), "huber", c).item() == pytest.approx(1e-6, rel=1e-2)
    assert elementwise_loss(large, torch.zeros(1, 1), "huber", c).item() == pytest.approx(2 * 0.1 * 100, rel=1e-2)


def test_huber_threshold_schedules_follow_the_timestep(denoiser):
    bars = denoiser.noise_scheduler.alphas_cumprod
    t = torch.tensor([0, 999])
    exp = huber_threshold("exponential", 0.1, t, bars, 1000)
    assert exp[0].item() == pytest.approx(1.0) and exp[1].item() == pytest.approx(0.1, rel=0.01)
    snr = huber_threshold("snr", 0.1, t, bars, 1000)
    assert snr[0].item() > 0.9 and snr[1].item() == pytest.approx(0.1, abs=0.01)  # L2-like at low noise
    assert torch.equal(huber_threshold("constant", 0.1, t, bars, 1000), torch.tensor([0.1, 0.1]))
    # and the loss path uses it: the snr schedule at t=990 is near c, at t=10 near 1
    assert not torch.allclose(_losses(denoiser, loss_type="huber", huber_schedule="snr"),
                              _losses(denoiser, loss_type="huber", huber_schedule="constant"))


def test_debiased_estimation_weights_each_sample_by_one_over_root_snr(denoiser):
    from diffusers.training_utils import compute_snr

    snr = compute_snr(denoiser.noise_scheduler, torch.tensor([10, 500, 990]))
    plain, debiased = _losses(denoiser), _losses(denoiser, debiased_estimation=True)
    assert torch.allclose(debiased, plain / snr.clamp(max=1000).sqrt(), rtol=1e-5)
    assert debiased_weight(torch.tensor([4.0, 1e6]), False).tolist() == [0.5, pytest.approx(1 / math.sqrt(1000))]


def test_multires_noise_adds_coarse_structure_and_keeps_other_draws():
    gen = torch.Generator().manual_seed(1)
    white = torch.randn((2, 4, 32, 32), generator=torch.Generator().manual_seed(2))
    pyramid = pyramid_noise(white, 6, 0.8, gen)
    assert torch.allclose(pyramid.flatten(1).std(dim=1), torch.ones(2), atol=1e-5)
    blocks = lambda x: torch.nn.functional.avg_pool2d(x, 8).var().item()  # noqa: E731
    assert blocks(pyramid) > 3 * blocks(white)  # low frequencies carry far more energy
    again = pyramid_noise(white, 6, 0.8, torch.Generator().manual_seed(1))
    assert torch.equal(pyramid, again)


def test_multires_noise_in_a_micro_batch_changes_only_the_noise(small_dataset, tmp_path):
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.train.step import draw_micro
    from tinyrun import tiny_config

    def draw(**options):
        cfg = tiny_config(small_dataset, tmp_path, **options)
        plan = plan_run(cfg)
        return draw_micro(plan, cfg, 3, lambda idx, gen: torch.randn((len(idx), 4, 8, 8), generator=gen), 1.0, 1000)

    plain, multires = draw(), draw(multires_noise_iterations=6, multires_noise_discount=0.3)
    assert torch.equal(plain.latents, multires.latents) and torch.equal(plain.timesteps, multires.timesteps)
    assert not torch.allclose(plain.noise, multires.noise)


def test_loss_options_and_optimizer_are_read_from_lora_scripts_yaml_and_toml(tmp_path):
    from loratui.engine.config import load_config_file

    yaml = tmp_path / "train.yaml"
    yaml.write_text("train_data_dir: ./photos\noptimizer_type: Prodigy\nloss_type: huber\nhuber_c: 0.2\n"
                    "huber_schedule: exponential\ndebiased_estimation_loss: true\nmultires_noise_iterations: 6\n"
                    "multires_noise_discount: 0.4\nunet_lr: 0.0002\ntext_encoder_lr: 0.00005\n"
                    "network_weights: parent.safetensors\n")
    cfg = build_config(None, file_values=load_config_file(yaml))
    assert (cfg.optimizer, cfg.loss_type, cfg.huber_c, cfg.huber_schedule) == ("prodigy", "huber", 0.2, "exponential")
    assert cfg.debiased_estimation and (cfg.multires_noise_iterations, cfg.multires_noise_discount) == (6, 0.4)
    assert (cfg.unet_lr, cfg.text_encoder_lr, cfg.init_lora) == (2e-4, 5e-5, "parent.safetensors")
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "photos"\noptimizer = "lion"\nloss_type = "l1"\ntrain_layers = "attention-ff"\n')
    cfg = build_config(None, file_values=load_config_file(toml))
    assert (cfg.optimizer, cfg.loss_type, cfg.train_layers) == ("lion", "l1", "attention-ff")


def test_per_component_learning_rates():
    from loratui.engine.train.optimizer import learning_rates

    assert learning_rates(RunConfig(dataset="x", lr=1e-4)) == (1e-4, 5e-5)
    assert learning_rates(RunConfig(dataset="x", lr=1e-4, unet_lr=3e-4, text_encoder_lr=2e-5)) == (3e-4, 2e-5)
    assert learning_rates(RunConfig(dataset="x", optimizer="prodigy")) == (1.0, 1.0)


def test_train_layers_name_target_lists_per_family():
    from loratui.engine.families import FAMILIES

    for family in FAMILIES.values():
        attention, text = family.lora_targets("attention")
        assert attention == list(family.unet_targets) and text == list(family.text_targets)
        unet_ff, text_ff = family.lora_targets("attention-ff")
        assert set(unet_ff) - set(attention) == {"ff.net.0.proj", "ff.net.2"}
        assert set(text_ff) - set(text) == {"fc1", "fc2"}


@pytest.mark.parametrize("flag", [["--optimizer", "lion"], ["--loss-type", "l1"], ["--init-lora", "x.safetensors"],
                                  ["--train-layers", "attention-ff"], ["--debiased-estimation"]])
def test_training_method_flags_cannot_change_on_resume(tmp_path, flag):
    from typer.testing import CliRunner

    from loratui.cli import app

    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), *flag])
    assert result.exit_code == 1
    assert f"{flag[0]} cannot change on --resume" in result.output


def test_training_method_flags_reach_the_run(tmp_path, small_dataset):
    """The flags as typed become the run's config.toml and its LoRA's metadata (a one-step tiny run)."""
    import tomllib

    from safetensors import safe_open
    from typer.testing import CliRunner

    from loratui.cli import app

    args = ["train", str(small_dataset), "--base-model", "tiny", "--resolution", "64", "--batch-size", "1",
            "--steps", "1", "--save-every", "0", "--sample-every", "0", "--output", str(tmp_path), "--name", "r",
            "--json", "--optimizer", "prodigy", "--d-coef", "2", "--unet-lr", "3e-4", "--text-encoder-lr", "1e-5",
            "--loss-type", "huber", "--huber-c", "0.2", "--huber-schedule", "constant", "--debiased-estimation",
            "--multires-noise-iterations", "6", "--multires-noise-discount", "0.4", "--train-layers", "attention-ff"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = tomllib.loads((tmp_path / "r" / "config.toml").read_text())
    assert (cfg["optimizer"], cfg["d_coef"], cfg["unet_lr"], cfg["text_encoder_lr"]) == ("prodigy", 2, 3e-4, 1e-5)
    assert (cfg["loss_type"], cfg["huber_c"], cfg["huber_schedule"]) == ("huber", 0.2, "constant")
    assert cfg["debiased_estimation"] and (cfg["multires_noise_iterations"], cfg["multires_noise_discount"]) == (6, 0.4)
    assert cfg["train_layers"] == "attention-ff"
    with safe_open(str(tmp_path / "r" / "r.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert (meta["ss_loss_type"], meta["ss_huber_c"], meta["ss_huber_schedule"]) == ("huber", "0.2", "constant")
    assert "d_coef=2.0" in meta["ss_optimizer"] and meta["ss_multires_noise_discount"] == "0.4"
    # Prodigy trains at lr 1, whatever --unet-lr says, and the derivation the user sees says why
    assert meta["ss_learning_rate"] == "1.0" and meta["ss_unet_lr"] == "1.0"
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["event"] == "run_started")
    assert "lr 1 for every component, not 0.0003 (Prodigy estimates its own step size" in started["schedule"]
    assert "| optimizer | prodigyopt.Prodigy: optimizer prodigy: lr 1" in (tmp_path / "r" / "README.md").read_text()


def test_attention_ff_puts_adapters_on_the_feed_forward_layers(tmp_path, small_dataset):
    from loratui.engine.events import EventBus
    from loratui.engine.train.loop import TrainingRun, _NoState
    from loratui.engine.train.stop import StopSignal
    from tinyrun import tiny_config

    cfg = tiny_config(small_dataset, tmp_path, steps=1, train_layers="attention-ff", train_text_encoder=True,
                      sample_every=0, validation="off")
    run = TrainingRun(cfg, tmp_path / "ff", EventBus(), _NoState(), StopSignal(), resume=False)
    run.setup()
    names = [n for m in run.trained.values() for n, p in m.named_parameters() if p.requires_grad]
    assert any(".ff.net.0.proj.lora_A" in n for n in names) and any(".ff.net.2.lora_B" in n for n in names)
    assert any(".mlp.fc1.lora_A" in n for n in names)
