"""How loratui's cost grows, and how fast it starts: tiny model, CPU.

- step time against batch size and resolution (median of the timed steps),
- time from `loratui train` to its first step, cold (no latent cache) and warm,
- `loratui --help` (median of 7),
- `--compile` against eager, when asked (`--compile`: it takes minutes to compile on a CPU).

    .venv/bin/python benchmarks/scaling_bench.py [--steps 30] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def step_times(dataset: Path, out: Path, batch: int, resolution: int, steps: int, **extra) -> list[float]:
    from loratui.engine.config import build_config
    from loratui.engine.train.loop import train

    stamps: list[float] = []
    cfg = build_config(str(dataset), "pet", overrides=dict(
        base_model="tiny", resolution=resolution, steps=steps, save_every=0, sample_every=0, validation="off",
        batch_size=batch, buckets=False, output_dir=str(out), **extra))
    train(cfg, out / f"b{batch}-r{resolution}-{len(list(out.iterdir()))}",
          [lambda e: stamps.append(time.perf_counter()) if e.event == "step" else None])
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return gaps[3:]  # the first steps warm caches and allocators


def first_step(dataset: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "LORATUI_CACHE_DIR": str(cache), "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loratui", "train", str(dataset), "--base-model", "tiny", "--resolution", "64",
         "--steps", "3", "--save-every", "0", "--sample-every", "0", "--json", "--output", str(out)],
        stdout=subprocess.PIPE, text=True, env=env)
    took = float("nan")
    for line in proc.stdout:  # type: ignore[union-attr]
        if json.loads(line)["event"] == "step":
            took = time.perf_counter() - t0
            break
    proc.wait()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()

    import torch

    from loratui.engine.data.demo import make_demo_dataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = make_demo_dataset(root / "data", count=16)
        out = root / "runs"
        out.mkdir()
        print("step time against batch size (64 px), median s/step, and per image:")
        base = None
        for batch in (1, 2, 4, 8):
            med = statistics.median(step_times(dataset, out, batch, 64, args.steps))
            base = base or med
            print(f"  batch {batch:>2}: {med:.4f} s/step  {med / batch:.4f} s/image  ({med / base:.2f}× batch 1)")
        print("step time against resolution (batch 2), median s/step:")
        base = None
        for res in (64, 128, 256):
            med = statistics.median(step_times(dataset, out, 2, res, max(8, args.steps // 2)))
            base = base or med
            print(f"  {res:>4} px: {med:.4f} s/step  ({med / base:.2f}× 64 px; pixels ×{(res / 64) ** 2:.0f})")

        cold = [first_step(dataset, root / f"fs{i}", root / f"cache-cold{i}") for i in range(2)]
        warm_cache = root / "cache-warm"
        first_step(dataset, root / "fsw", warm_cache)
        warm = [first_step(dataset, root / f"fsw{i}", warm_cache) for i in range(3)]
        print(f"`loratui train` to its first step: cold cache (builds the tiny model, encodes latents) "
              f"{statistics.median(cold):.2f} s; warm cache {statistics.median(warm):.2f} s")

        helps = []
        for _ in range(7):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "loratui", "--help"], capture_output=True, check=True)
            helps.append(time.perf_counter() - t0)
        print(f"`python -m loratui --help`: median {statistics.median(helps):.3f} s (of 7)")

        if args.compile:
            eager = statistics.median(step_times(dataset, out, 4, 64, args.steps))
            compiled = statistics.median(step_times(dataset, out, 4, 64, args.steps + 10, compile=True))
            print(f"--compile (batch 4, 64 px): eager {eager:.4f} s/step, compiled {compiled:.4f} s/step "
                  f"({eager / compiled:.2f}× faster after compiling)")
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
