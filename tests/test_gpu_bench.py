"""benchmarks/gpu_bench.py: it runs end to end on the CPU, and its FLOP counts are right."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the GPU benchmark script run on the CPU

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_bench.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_prints_one_json_object_per_batch():
    # the same interpreter as the tests; LORATUI_CACHE_DIR comes from conftest through the env
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--batches", "1,2",
         "--steps", "2", "--warmup", "1", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["oom"] is False and r["model"] == "tiny"
        assert r["it_per_s"] > 0 and r["images_per_s"] > 0 and r["peak_mem_bytes"] > 0
        assert r["flops_per_step"] > r["flops_forward"] > 0
        assert r["mfu"] is None  # no peak for a CPU: printed as n/a
    ratio = rows[1]["flops_per_step"] / rows[0]["flops_per_step"]
    assert 1.9 < ratio < 2.1, ratio  # every op scales with the batch; nothing is shared across it
    assert 0 < rows[0]["estimated_mem_bytes"] < rows[1]["estimated_mem_bytes"]  # the memory model's


def test_sd15_flops_at_512px_are_in_the_known_range():
    bench = _load_bench()
    flops = bench.count_step_flops(bench.unet_config(tiny=False), batch=1, resolution=512)
    # SD-1.5's UNet forward on 64x64 latents, counted by hand: forward hooks on every conv and
    # linear layer (output size x fan-in) give 338.6 G multiply-accumulates, and attention's
    # score and value matmuls add ~63 G (2·N²·C per self-attention; the five at N=4096, C=320
    # dominate): ~402 GMAC = ~0.80 TFLOP. (The often quoted "~0.4 T" is that MAC count.) The
    # range allows -6%/+8% and fails if attention went uncounted (~0.68 TFLOP).
    assert 0.75e12 < flops["forward"] < 0.87e12, flops
    # Base frozen: the backward computes input gradients (about one forward again) and the small
    # LoRA weight gradients, so a step is just over twice the forward (full fine-tuning: ~3x).
    assert 2.0 < flops["step"] / flops["forward"] < 2.3, flops
