"""Speed options measured on loratui's own training loop, tiny model, CPU: `--compile` and channels-last.

Variants, each run in its own process (alternated over `--repeats`), on `engine.train.train`
with the tiny model, buckets off (one latent shape), validation, samples and saves off:

- `eager`: a default run;
- `compile`: `compile=True` (the engine's `torch.compile(unet)`); the first step includes compiling;
- `channels_last`: the UNet's weights in `torch.channels_last` and its input latents likewise
  (a forward pre-hook converts the noisy latents; done here only, the engine is unchanged);
- `compile_channels_last`: both (with `--all`).

Per run: seconds from `run_started` to the first step (compile time, for `compile`), the first
step's seconds, the median step time of the steps after `--warmup` steps (at least 40 timed),
dynamo's counters (graphs compiled, graph breaks, recompiles) and any inductor error line.
Compiled variants get a fresh inductor cache folder per shape: their first run compiles cold,
later runs find inductor's on-disk cache (as a second `loratui train --compile` would).
`--buckets` runs the `compile` variant once with aspect buckets on (several latent shapes) to
count the recompiles they cause.

    .venv/bin/python benchmarks/compile_bench.py [--resolutions 64,128] [--batch 4] [--steps 40]
        [--warmup 8] [--repeats 2] [--all] [--buckets]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

VARIANTS = ("eager", "compile", "channels_last")


def child(args) -> dict:
    """One run of one variant in this process; returns its figures."""
    import torch

    torch.set_num_threads(args.threads)
    from loratui.engine.train import loop as train_mod
    from loratui.engine.config import build_config
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.engine.events import RunStarted, StepLogged

    channels_last = "channels_last" in args.variant
    compiled = args.variant.startswith("compile")
    seen_formats: list[bool] = []

    if channels_last:
        original = train_mod.load_components

        def load_channels_last(spec):
            comps = original(spec)
            comps.unet.to(memory_format=torch.channels_last)

            def to_channels_last(module, positional, keywords):
                sample = positional[0].contiguous(memory_format=torch.channels_last)
                if not seen_formats:  # check once that the weights stayed channels-last through the engine's .to()
                    conv = module.conv_in.weight
                    seen_formats.append(conv.is_contiguous(memory_format=torch.channels_last))
                return (sample, *positional[1:]), keywords

            comps.unet.register_forward_pre_hook(to_channels_last, with_kwargs=True)
            return comps

        train_mod.load_components = load_channels_last

    stamps: list[float] = []
    started: list[float] = []

    def sink(event):
        if isinstance(event, StepLogged):
            stamps.append(time.perf_counter())
        elif isinstance(event, RunStarted):
            started.append(time.perf_counter())

    root = Path(args.tmp)
    dataset = make_demo_dataset(root / "data", count=16)
    out = root / f"runs-{args.variant}-{os.getpid()}"
    total = args.warmup + args.steps + 1
    cfg = build_config(str(dataset), "pet", overrides={
        "base_model": "tiny", "resolution": args.resolution, "steps": total, "save_every": 0, "sample_every": 0,
        "validation": "off", "batch_size": args.batch, "buckets": args.with_buckets, "output_dir": str(out),
        "compile": compiled})
    error = None
    try:
        train_mod.train(cfg, out / "run", [sink])
    except Exception as exc:  # noqa: BLE001 - an inductor failure is a result here: record its exact line
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        traceback.print_exc(file=sys.stderr)
    row: dict = {"variant": args.variant, "resolution": args.resolution, "batch": args.batch,
                 "buckets": args.with_buckets, "error": error}
    if started and stamps:
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        timed = gaps[args.warmup:]
        row.update(
            to_first_step_s=stamps[0] - started[0],
            first_gaps_s=[round(g, 4) for g in gaps[:6]],
            timed_steps=len(timed),
            median_s=statistics.median(timed) if timed else None,
            max_timed_s=max(timed) if timed else None,
        )
    if channels_last:
        row["weights_channels_last"] = bool(seen_formats and seen_formats[0])
    if compiled:
        from torch._dynamo.utils import counters

        row["dynamo"] = {
            "unique_graphs": counters["stats"].get("unique_graphs", 0),
            "calls_captured": counters["stats"].get("calls_captured", 0),
            "graph_breaks": dict(counters["graph_break"]),
            "recompiles": dict(counters["recompiles"]) if "recompiles" in counters else {},
            "frames_ok": counters["frames"].get("ok", 0),
            "frames_total": counters["frames"].get("total", 0),
        }
    return row


def run_child(args, variant: str, resolution: int, buckets: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--resolution-one", str(resolution),
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--tmp", args.tmp]
    if buckets:
        cmd.append("--with-buckets")
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    if variant.startswith("compile"):
        # inductor's on-disk cache, one per variant and shape: the first run compiles cold, later ones warm
        env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(args.tmp) / f"inductor-{variant}-{resolution}-{buckets}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if not rows:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"variant": variant, "resolution": resolution, "error": f"child exited {proc.returncode}: {tail}"}
    return rows[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolutions", default="64,128")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40, help="timed steps after the warm-up")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps after the first (compile) step")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant and resolution, alternated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true", help="also compile + channels-last")
    parser.add_argument("--buckets", action="store_true", help="also one compiled run with aspect buckets on")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--resolution-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--with-buckets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        args.variant, args.resolution = args.child, args.resolution_one
        print(json.dumps(child(args)), flush=True)
        return

    variants = VARIANTS + (("compile_channels_last",) if args.all else ())
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for res in [int(r) for r in args.resolutions.split(",")]:
            runs: dict[str, list[dict]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v in variants:
                    row = run_child(args, v, res)
                    runs[v].append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"{res} px, batch {args.batch}, {args.threads} thread(s): median s/step over "
                  f"{args.steps} steps after {args.warmup} warm-up, per run; time from run_started to step 1")
            base = statistics.median([r["median_s"] for r in runs["eager"] if r.get("median_s")] or [float("nan")])
            for v in variants:
                ok = [r for r in runs[v] if r.get("median_s")]
                errors = {r["error"] for r in runs[v] if r.get("error")}
                if not ok:
                    print(f"  {v:<22} failed: {'; '.join(errors)}")
                    continue
                med = statistics.median(r["median_s"] for r in ok)
                firsts = ", ".join(f"{r['to_first_step_s']:.2f}" for r in ok)
                each = ", ".join(f"{r['median_s']:.4f}" for r in ok)
                print(f"  {v:<22} {med:.4f} s/step ({each})  {base / med:.2f}× eager's speed  "
                      f"to step 1: {firsts} s" + (f"  errors: {errors}" if errors else ""))
                dyn = ok[-1].get("dynamo")
                if dyn:
                    print(f"  {'':<22} dynamo: {dyn['unique_graphs']} graph(s), graph breaks {dyn['graph_breaks'] or 0}, "
                          f"recompiles {dyn['recompiles'] or 0}")
        if args.buckets:
            res = int(args.resolutions.split(",")[0])
            row = run_child(args, "compile", res, buckets=True)
            print(json.dumps(row), file=sys.stderr, flush=True)
            print(f"compile with aspect buckets on ({res} px): {row.get('dynamo')}, first gaps {row.get('first_gaps_s')}, "
                  f"median {row.get('median_s')}, error {row.get('error')}")


if __name__ == "__main__":
    main()
