"""Data-parallel training through accelerate: two CPU processes over gloo behave as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from loratui.engine.train.loop import train
from tinyrun import tiny_config

pytestmark = pytest.mark.slow  # two training processes over gloo


@pytest.mark.parametrize("base_model", ["tiny", "tiny-sdxl"])  # SDXL: its pooled text and size conditioning too
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, small_dataset, tiny_model, base_model):
    cfg = dict(steps=6, save_every=3, batch_size=4, sample_every=0, base_model=base_model)
    single = train(tiny_config(small_dataset, tmp_path / "one", **cfg), tmp_path / "one" / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "loratui", "train", str(small_dataset), "--base-model", base_model,
         "--resolution", "64", "--steps", "6", "--save-every", "3", "--batch-size", "4", "--lr", "1e-3",
         "--trigger", "zxq", "--preset", "pet", "--sample-every", "0", "--gpus", "2", "--json",
         "--output", str(tmp_path / "two"), "--name", "run"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "two" / "run"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5, 6]  # one writer: rank 0 only
    assert sum(1 for e in events if e["event"] == "run_finished") == 1
    ref = [json.loads(l) for l in (single.run_dir / "events.jsonl").read_text().splitlines()]
    ref_losses = [e["loss"] for e in ref if e["event"] == "step"]
    # the same samples, noise and timesteps split over two processes: the same loss curve
    assert torch.allclose(torch.tensor([e["loss"] for e in steps]), torch.tensor(ref_losses), rtol=1e-4, atol=1e-5)
    a, b = load_file(single.lora_path), load_file(run / "run.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3) for k in a)
    assert json.loads((run / "state.json").read_text())["status"] == "finished"
