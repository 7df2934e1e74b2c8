"""Samples during training, the validation loss per checkpoint, and the recommendation."""

from __future__ import annotations

import json

import torch
from PIL import Image
from safetensors.torch import load_file

from loratui.engine.events import WarningRaised
from loratui.engine.planning.run_plan import plan_run
from loratui.engine.train.loop import train
from loratui.engine.validate.validation import holdout_count, overtraining_step, pick_holdout, recommend
from tinyrun import tiny_config


def test_sampling_does_not_change_training(tmp_path, small_dataset):
    on = train(tiny_config(small_dataset, tmp_path, steps=6, save_every=3, sample_every=2, sample_steps=3,
                           shuffle_tags=True), tmp_path / "on")
    off = train(tiny_config(small_dataset, tmp_path, steps=6, save_every=3, sample_every=0,
                            shuffle_tags=True), tmp_path / "off")
    samples = sorted(p.name for p in (tmp_path / "on" / "samples").glob("step*.png"))
    assert samples == ["step000002-0.png", "step000004-0.png", "step000006-0.png"]
    assert Image.open(tmp_path / "on" / "samples" / samples[0]).size == (64, 64)
    assert not (tmp_path / "off" / "samples").exists()
    events = [json.loads(l) for l in (tmp_path / "on" / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "sample_saved"] == [2, 4, 6]
    a, b = load_file(on.lora_path), load_file(off.lora_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_validation_loss_is_recorded_per_checkpoint_and_recommended(tmp_path, small_dataset):
    result = train(tiny_config(small_dataset, tmp_path, steps=9, save_every=3, sample_every=0), tmp_path / "r")
    data = json.loads((tmp_path / "r" / "validation.json").read_text())
    steps = [s for s, _ in data["history"]]
    assert steps == [3, 6, 9] and data["held_out"] is False  # 4 images: too few to hold any back
    events = [json.loads(l) for l in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "validation"] == [3, 6, 9]
    rec = next(e for e in events if e["event"] == "recommendation")
    best_step = min(data["history"], key=lambda h: h[1])[0]
    assert rec["step"] == best_step
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["recommendation"]["step"] == best_step
    card = (tmp_path / "r" / "README.md").read_text()
    assert "Recommended:" in card and "| 3 |" in card
    assert result.status == "finished"


def test_recommendation_picks_the_minimum_and_warns_on_a_rise():
    falling = [(100, 0.30), (200, 0.25), (300, 0.22)]
    rec = recommend(falling, held_out=True)
    assert rec.step == 300 and not rec.overtrained and "still falling" in rec.reason
    rising = [(100, 0.30), (200, 0.20), (300, 0.23), (400, 0.27)]
    assert overtraining_step(rising) == 200
    rec = recommend(rising, held_out=True)
    assert rec.step == 200 and rec.overtrained and "rose after it" in rec.reason
    noisy = [(100, 0.30), (200, 0.20), (300, 0.201), (400, 0.2005)]
    assert overtraining_step(noisy) is None and recommend(noisy, True).step == 200
    assert recommend([], True) is None


def test_a_rising_validation_loss_warns_during_the_run(tmp_path, small_dataset, monkeypatch):
    # Drive the real loop with a validation loss that falls then rises, as over-training does.
    from loratui.engine.validate import validation

    losses = iter([0.5, 0.3, 0.4, 0.6, 0.7])
    monkeypatch.setattr(validation.ValidationSet, "loss", lambda self, *a, **k: next(losses))
    warnings = []
    train(tiny_config(small_dataset, tmp_path, steps=10, save_every=2, sample_every=0),
          tmp_path / "r", [lambda e: warnings.append(e.message) if isinstance(e, WarningRaised) else None])
    assert any("rose after step 4" in w and "r-step000004.safetensors" in w for w in warnings)
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    assert state["recommendation"]["step"] == 4 and state["recommendation"]["overtrained"]


def test_holdout_only_when_the_dataset_can_spare_it(tmp_path):
    assert holdout_count(12, "auto") == 0 and holdout_count(20, "auto") == 1 and holdout_count(200, "auto") == 4
    assert holdout_count(12, "holdout") == 1 and holdout_count(50, "off") == 0
    assert pick_holdout(30, 2, 42) == pick_holdout(30, 2, 42) and len(set(pick_holdout(30, 2, 42))) == 2
    from loratui.engine.data.demo import make_demo_dataset

    folder = make_demo_dataset(tmp_path / "d", count=20)
    plan = plan_run(tiny_config(folder, tmp_path, steps=5))
    assert len(plan.items) == 19 and len(plan.validation_items) == 1
    held = plan.validation_items[0].record.rel
    assert held not in {i.record.rel for i in plan.items}
    assert any("held back 1 image" in w for w in plan.warnings)


def test_tensorboard_logs_loss_validation_and_samples(tmp_path, small_dataset):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(small_dataset, tmp_path, steps=4, save_every=2, sample_every=2, sample_steps=2,
                      tensorboard=True), tmp_path / "r")
    logs = list((tmp_path / "r" / "tensorboard").rglob("events.out.tfevents.*"))
    assert logs
    acc = EventAccumulator(str(logs[0].parent))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "validation/loss"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert any(t.startswith("samples/") for t in tags["images"])


def test_run_card_shows_the_samples_over_training(tmp_path, small_dataset):
    train(tiny_config(small_dataset, tmp_path, steps=4, save_every=2, sample_every=2, sample_steps=2),
          tmp_path / "r")
    strip = Image.open(tmp_path / "r" / "samples" / "progress-0.png")
    assert strip.size == (64 * 2, 64)
    assert "(samples/progress-0.png)" in (tmp_path / "r" / "README.md").read_text()
