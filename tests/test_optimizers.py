"""Each optimizer the field uses trains the tiny model, and a run stopped part way then resumed
ends bit for bit where the uninterrupted run does (their state is all in the checkpoint)."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tinyrun import stopped_then_resumed, tiny_config
from loratui.engine.train.loop import train

# AdamW: tests/test_train.py. save_every 2 with a stop at 3: the resumed run loads a checkpoint written at a stop, between
# the saves, and schedule-free's averaged weights are swapped in for each LoRA file on the way
OPTIMIZERS = ["prodigy", "adafactor", "lion", "schedulefree"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_each_optimizer_trains_stops_and_resumes_bit_identically(tmp_path, small_dataset, optimizer):
    cfg = tiny_config(small_dataset, tmp_path, steps=4, save_every=2, optimizer=optimizer, sample_every=0, batch_size=1,
                      validation="off", save_precision="fp32", train_text_encoder=True)
    whole = train(cfg, tmp_path / "whole")
    part, resumed = stopped_then_resumed(cfg, tmp_path / "part", at=3)
    assert part.status == "stopped" and part.step == 3 and resumed.step == 4
    a, b = load_file(whole.lora_path), load_file(resumed.lora_path)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"{optimizer}: resumed run differs from the uninterrupted one"
    start = load_file(tmp_path / "whole" / "whole-step000002.safetensors")
    assert any(not torch.equal(start[k], a[k]) for k in a if "lora_up" in k), f"{optimizer} did not train"
    # the LoRA file holds the weights to use: for schedule-free its average, not the trained point
    trained = load_file(tmp_path / "whole" / "checkpoints" / "step000002" / "adapters.safetensors")
    in_file = sum(v.double().abs().sum() for k, v in start.items() if "lora_up" in k)
    in_checkpoint = sum(v.double().abs().sum() for k, v in trained.items() if "lora_B" in k)
    assert (abs(in_file - in_checkpoint) > 1e-6 * in_file) == (optimizer == "schedulefree")
    with safe_open(str(whole.lora_path), "pt") as fh:
        meta = fh.metadata()
    assert meta["ss_optimizer"].split("(")[0].lower().replace("_", "").find(optimizer[:4]) >= 0 or \
        optimizer == "schedulefree" and "ScheduleFree" in meta["ss_optimizer"]


def test_kohya_optimizer_names_are_read():
    from loratui.engine.config import RunConfig

    for name, ours in [("AdamW8bit", "adamw8bit"), ("Prodigy", "prodigy"), ("AdaFactor", "adafactor"),
                       ("Lion8bit", "lion"), ("AdamWScheduleFree", "schedulefree")]:
        assert RunConfig(dataset="x", optimizer=name).optimizer == ours
