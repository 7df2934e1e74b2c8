"""--ema: an exponential moving average of the LoRA weights, kept beside the LoRA (keep) or made
the LoRA itself (final). The update follows the warm-up rule by hand; the EMA is what is
exported when asked, differs from the raw weights, passes verify, rolls back with the weights
after non-finite steps, and a stopped and resumed run ends with the same EMA as one that ran through.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tinyrun import stopped_then_resumed, tiny_config
from loratui.engine.config import build_config
from loratui.engine import faults
from loratui.engine.errors import ConfigError
from loratui.engine.events import EventBus
from loratui.engine.export import lora_files
from loratui.engine.export.verify import verify_lora
from loratui.engine.train.denoiser import Denoiser
from loratui.engine.train.ema import WeightAverage, decay_at
from loratui.engine.train.loop import TrainingRun, _NoState, train
from loratui.engine.train.stop import StopSignal

# 4 steps with a save at 2: the step-2 file and checkpoint carry the EMA; the text encoder too, so
# the EMA spans two models. One image: the validation passes are most of a tiny run's time
RUN = dict(steps=4, save_every=2, sample_every=0, batch_size=1, save_precision="fp32", train_text_encoder=True,
           validation="off", lr=1e-2)
LEAN = dict(RUN, train_text_encoder=False)


def test_the_update_follows_the_warm_up_rule_by_hand():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 4.0]))
    ema = WeightAverage({"w": weight}, decay=0.25)
    expected = weight.detach().clone()
    for n, value in enumerate([[3.0, 0.0, 1.0], [5.0, 1.0, -1.0], [0.0, 2.0, 8.0]], start=1):
        with torch.no_grad():
            weight.copy_(torch.tensor(value))
        ema.update()
        d = min(0.25, (1 + n) / (10 + n))  # 2/11, 3/12, then 4/13 is capped at 0.25
        expected = d * expected + (1 - d) * torch.tensor(value)
        assert torch.allclose(ema.shadow["w"], expected, atol=1e-6), n
    assert decay_at(1, 0.999) == pytest.approx(2 / 11) and decay_at(10_000, 0.999) == 0.999
    # the average goes into the model for a block, and the trained weights come back bit for bit
    trained = weight.detach().clone()
    with ema.applied():
        assert torch.equal(weight.detach(), ema.shadow["w"])
    assert torch.equal(weight.detach(), trained)
    with pytest.raises(RuntimeError), ema.applied():  # a sample that fails mid-way: still put back
        with torch.no_grad():
            weight.mul_(3.0)
        raise RuntimeError("sampling failed")
    assert torch.equal(weight.detach(), trained)
    copy = WeightAverage({"w": torch.nn.Parameter(torch.zeros(3))}, decay=0.25)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 3 and torch.equal(copy.shadow["w"], ema.shadow["w"])


def test_schedule_free_with_ema_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        build_config(str(tmp_path), "pet", overrides={"optimizer": "schedulefree", "ema": "final"})
    message = str(info.value)
    assert "\n" not in message and "--ema" in message and "use --ema off" in message


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny --ema final run with validation (in process, to read its EMA), and one without
    validation run through, and stopped at step 3 (between saves) and resumed."""
    from loratui.engine.data.demo import make_demo_dataset

    tmp = tmp_path_factory.mktemp("ema")
    dataset = make_demo_dataset(tmp / "photos", count=1)
    cfg = tiny_config(dataset, tmp, ema="final", ema_decay=0.9, **RUN)
    final = TrainingRun(cfg.model_copy(update={"validation": "train"}), tmp / "final", EventBus(), _NoState(),
                        StopSignal(), resume=False)
    final.run()
    whole = train(cfg, tmp / "whole")
    part, resumed = stopped_then_resumed(cfg, tmp / "resumed", at=3)
    return {"final": final, "whole": whole, "part": part, "resumed": resumed, "tmp": tmp, "dataset": dataset}


def _ema_as_kohya(run: TrainingRun) -> dict[str, torch.Tensor]:
    """The run's EMA under the kohya names its LoRA files use."""
    adapters: dict[str, dict] = {}
    for name, value in run.ema.shadow.items():
        component, _, key = name.partition(".")
        adapters.setdefault(component, {})[key.replace(".default", "")] = value.cpu()
    names = lora_files.kohya_names(run.family, adapters)
    return {names[f"{c}.{k}"]: v for c, state in adapters.items() for k, v in state.items()}


def test_final_exports_the_ema_and_keeps_the_raw_weights_apart(runs):
    run = runs["final"]
    run_dir = run.run_dir
    name = run_dir.name
    exported, raw = load_file(run_dir / f"{name}.safetensors"), load_file(run_dir / f"{name}-raw.safetensors")
    ema = _ema_as_kohya(run)
    assert ema and all(torch.equal(exported[k], v) for k, v in ema.items()), "the final LoRA is not the EMA"
    ups = [k for k in exported if "lora_up" in k]
    assert any(not torch.equal(exported[k], raw[k]) for k in ups), "the EMA equals the raw weights"
    # the last validation measured the EMA (the weights are the raw ones again after the run)
    history = json.loads((run_dir / "validation.json").read_text())["history"]
    assert [s for s, _ in history] == [2, 4]
    model = run.accelerator.unwrap_model(run.unet).eval()
    denoiser = Denoiser(run.family, model, run.condition, run.noise_scheduler)
    with run.accelerator.autocast(), run.ema.applied():
        of_ema = run.validation.loss(denoiser, run.device, run.weight_dtype)
    assert history[-1][1] == pytest.approx(of_ema, rel=1e-7)  # the raw weights (they differ) give another
    # the diffusers export holds the EMA too
    diffusers = load_file(run_dir / "diffusers" / "pytorch_lora_weights.safetensors")
    assert sorted(v.double().abs().sum().item() for v in diffusers.values()) == pytest.approx(
        sorted(v.double().abs().sum().item() for k, v in ema.items()), rel=1e-6)
    with safe_open(str(run_dir / f"{name}.safetensors"), "pt") as fh:
        meta = fh.metadata()
    with safe_open(str(run_dir / f"{name}-raw.safetensors"), "pt") as fh:
        raw_meta = fh.metadata()
    assert (meta["ss_loratui_ema"], meta["ss_loratui_ema_decay"], meta["ss_loratui_weights"]) == ("final", "0.9", "ema")
    assert raw_meta["ss_loratui_weights"] == "raw"
    card = (run_dir / "README.md").read_text(encoding="utf-8")
    assert f"`{name}.safetensors`, the step files and `diffusers/`: the EMA of the weights (decay 0.9)" in card
    assert f"`{name}-raw.safetensors`: the raw weights" in card


def test_a_stopped_and_resumed_run_ends_with_the_same_ema(runs):
    assert runs["part"].status == "stopped" and runs["part"].step == 3 and runs["resumed"].step == 4
    whole_dir, resumed_dir = runs["whole"].run_dir, runs["resumed"].run_dir
    for suffix in ("", "-raw", "-step000002"):
        a = load_file(whole_dir / f"{whole_dir.name}{suffix}.safetensors")
        b = load_file(resumed_dir / f"{resumed_dir.name}{suffix}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), suffix or "final"
    assert (resumed_dir / "checkpoints" / "step000003" / "ema.safetensors").is_file()


@pytest.fixture(scope="module")
def kept(runs):
    """A tiny --ema keep run whose steps 4 and 5 are non-finite (skipped) and 6 too, which rolls
    back to the step-2 save; then steps 3-6 train again. (The run, its warnings.)"""
    tmp = runs["tmp"]
    cfg = tiny_config(runs["dataset"], tmp, ema="keep", **{**LEAN, "steps": 6})
    warnings: list[str] = []
    bus = EventBus([lambda e: warnings.append(getattr(e, "message", ""))])
    run = TrainingRun(cfg, tmp / "keep", bus, _NoState(), StopSignal(), resume=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(faults.ENV, "nan@4,nan@5,nan@6")
        faults.load()  # train() does this; the run is made here to read its EMA
        assert run.run().step == 6
    return run, warnings


def test_keep_writes_the_ema_beside_the_raw_lora_and_it_passes_verify(kept):
    run_dir = kept[0].run_dir
    name = run_dir.name
    ema_file = run_dir / f"{name}-ema.safetensors"
    raw, ema = load_file(run_dir / f"{name}.safetensors"), load_file(ema_file)
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if "lora_up" in k)
    assert not (run_dir / f"{name}-raw.safetensors").exists()
    report = verify_lora(ema_file, "tiny")
    assert report.ok, [f.code for f in report.findings]
    with safe_open(str(ema_file), "pt") as fh:
        assert (fh.metadata()["ss_loratui_ema"], fh.metadata()["ss_loratui_weights"]) == ("keep", "ema")
    with safe_open(str(run_dir / f"{name}.safetensors"), "pt") as fh:
        assert fh.metadata()["ss_loratui_weights"] == "raw"
    card = (run_dir / "README.md").read_text(encoding="utf-8")
    assert f"`{name}-ema.safetensors`: the EMA of the weights (decay 0.999)" in card


def test_the_ema_rolls_back_with_the_weights(kept):
    run, warnings = kept
    assert any("rolled back to step 2" in w for w in warnings)
    assert run.ema.updates == 6  # steps 1-2, then 3-6 again; 3 + 4 had the EMA not gone back with the weights
