"""The measured memory model on full-size SD-1.5: what a run needs, and what auto picks per GPU size.

Runs on any machine (the UNet pass is measured on PyTorch's meta device, no GPU and no
download needed). Prints the activation figures per setting, the estimate of a whole run at
batch 1/4/8, how long a measurement takes (cold and cached), and what ``--batch-size auto``
and a set batch of 4 do on GPUs with 8/12/16/24/80 GiB free.

    LORATUI_CACHE_DIR=/tmp/ltcache-mem .venv/bin/python benchmarks/memory_bench.py [--resolution 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

GIB = 2**30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault("LORATUI_CACHE_DIR", tempfile.mkdtemp(prefix="ltcache-mem-"))

    from loratui.engine.planning import footprint
    from loratui.engine.config import build_config
    from loratui.engine.planning.memory_plan import plan_memory
    from loratui.engine.families.models import resolve_model

    spec = resolve_model("stable-diffusion-v1-5/stable-diffusion-v1-5")  # a hub id: the shipped configs
    dataset = Path(tempfile.mkdtemp())

    def config(**values):
        return build_config(str(dataset), "person", overrides=dict(
            resolution=args.resolution, rank=args.rank, **values))

    print(f"SD-1.5 UNet, {args.resolution} px, LoRA rank {args.rank}; activations measured on the meta device")
    print(f"{'precision':<10}{'checkpointing':<15}{'fixed':>9}{'per image':>11}{'measure s':>11}{'cached s':>10}")
    for precision in ("bf16", "fp32"):
        for checkpointing in (False, True):
            cfg = config(gradient_checkpointing=checkpointing)
            t0 = time.perf_counter()
            model = footprint.memory_model(cfg, spec, precision, "adamw")
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            footprint.memory_model(cfg, spec, precision, "adamw")
            warm = time.perf_counter() - t0
            print(f"{precision:<10}{'on' if checkpointing else 'off':<15}{model.unet.fixed / GIB:>7.2f} G"
                  f"{model.unet.per_image / GIB:>9.3f} G{cold:>11.2f}{warm:>10.2f}")

    print("\nwhole run, bf16, AdamW, samples on (VAE kept on the GPU):")
    model = footprint.memory_model(config(), spec, "bf16", "adamw")
    names = list(model.estimate(1).parts)
    print(f"{'batch':>5}{'total':>10}  " + "  ".join(f"{n:>16}" for n in names))
    for batch in (1, 4, 8):
        est = model.estimate(batch)
        print(f"{batch:>5}{est.total / GIB:>8.2f} G  " + "  ".join(f"{est.parts[n] / GIB:>14.2f} G" for n in names))

    print("\nwhat a run does on a GPU with this much free memory (bf16, AdamW):")
    print(f"{'free':>6}  {'--batch-size auto':<40}  {'--batch-size 8':<40}")
    for free_gib in (4, 6, 8, 12, 16, 24, 80):
        free = free_gib * GIB
        auto = plan_memory(config(batch_size="auto"), spec, free, "bf16", "adamw")
        eight = plan_memory(config(batch_size=8), spec, free, "bf16", "adamw")
        print(f"{free_gib:>4} G  {_say(auto):<40}  {_say(eight):<40}")


def _say(plan) -> str:
    ckpt = ", checkpointing" if plan.gradient_checkpointing else ""
    passes = f" in {plan.split} passes" if plan.split > 1 else ""
    return f"batch {plan.batch_size}{passes}{ckpt} ({plan.estimate / GIB:.1f} G)"


if __name__ == "__main__":
    main()
