"""How many fixed timesteps the validation loss needs: the noise of the estimate against its cost.

    LORATUI_CACHE_DIR=/tmp/ltcache OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validation_noise.py

Trains the demo (tiny model, demo dataset, 150 steps, a LoRA every 25), then measures each
checkpoint's validation loss with K fixed timesteps per image (K = 1, 2, 3, 6, 12) under
several noise seeds. The run compares checkpoints with one fixed noise, so what matters is the
noise of the *difference* between two checkpoints against the difference itself, and whether
the best checkpoint it picks is the one a much longer estimate picks (12 timesteps averaged
over every seed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()

    import torch

    from loratui.engine.config import build_config
    from loratui.engine.data.demo import DEMO_TRIGGER, make_demo_dataset
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.paths import cache_dir
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.train.conditioning import TextConditioner
    from loratui.engine.train.denoiser import Denoiser
    from loratui.engine.train.loop import train
    from loratui.engine.validate.sampling import components_pipeline
    from loratui.engine.validate.validation import fixed_timesteps, validation_set

    torch.set_num_threads(1)
    folder = make_demo_dataset(cache_dir() / "demo-dataset")
    with tempfile.TemporaryDirectory() as out:
        cfg = build_config(str(folder), "pet", overrides=dict(
            base_model="tiny", resolution=64, steps=args.steps, save_every=args.every, trigger=DEMO_TRIGGER,
            name="noise", output_dir=out, sample_every=0, keep_checkpoints=1000))
        run = train(cfg, Path(out) / "noise")
        loras = sorted(run.run_dir.glob("noise-step*.safetensors")) + [run.lora_path]
        comps = load_components(resolve_model("tiny"))
        cpu = torch.device("cpu")
        vset = validation_set(plan_run(cfg), cfg, comps.vae, cpu, {})
        pipe = components_pipeline(comps)
        for n, path in enumerate(loras):
            pipe.load_lora_weights(str(path), adapter_name=f"c{n}")
        condition = TextConditioner(comps.family, comps.text_encoders, comps.tokenizers, cpu)
        model = Denoiser(comps.family, pipe.unet, condition, comps.noise_scheduler)
        counts = (1, 2, 3, 6, 12)
        losses: dict[int, list[list[float]]] = {k: [] for k in counts}  # [checkpoint][seed]
        seconds: dict[int, list[float]] = {k: [] for k in counts}
        for n in range(len(loras)):
            pipe.set_adapters([f"c{n}"])
            for k in counts:
                row = []
                for seed in range(args.seeds):
                    vset.timesteps, vset.seed = fixed_timesteps(k), 1000 + seed
                    tic = time.perf_counter()
                    row.append(vset.loss(model, cpu, torch.float32))
                    seconds[k].append(time.perf_counter() - tic)
                losses[k].append(row)
        steps = [int(p.stem.split("step")[-1]) if "step" in p.stem else args.steps for p in loras]
        truth = [statistics.mean(r) for r in losses[12]]
        best = min(range(len(truth)), key=truth.__getitem__)
        print(f"{len(vset.latents)} validation images; checkpoints at steps {steps}")
        print("reference (12 timesteps, mean of all seeds): " + ", ".join(f"{t:.4f}" for t in truth))
        print("| timesteps | UNet rows | s per estimate (median) | sd across seeds | mean abs diff between "
              "consecutive checkpoints | sd of that diff across seeds | noise/signal | best = reference's |")
        print("|---|---|---|---|---|---|---|---|")
        for k in counts:
            per = losses[k]
            sd = statistics.mean(statistics.stdev(r) for r in per)
            diffs = [[b - a for a, b in zip(per[i], per[i + 1])] for i in range(len(per) - 1)]
            signal = statistics.mean(abs(statistics.mean(d)) for d in diffs)
            noise = statistics.mean(statistics.stdev(d) for d in diffs)
            agree = sum(min(range(len(per)), key=lambda c: per[c][s]) == best for s in range(args.seeds))
            print(f"| {k} | {k * len(vset.latents)} | {statistics.median(seconds[k]):.3f} | {sd:.4f} | {signal:.4f} | "
                  f"{noise:.4f} | {noise / signal:.2f} | {agree}/{args.seeds} |")


if __name__ == "__main__":
    main()
