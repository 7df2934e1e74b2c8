"""loratui's training step against the model's own work, in one process (issue 16, item 2).

The limit a training step cannot beat is the model's own work: the UNet's forward and backward
on the batch plus the optimizer step. This benchmark times, interleaved in ONE process:

- ``loratui``: the real loop (``engine.train.loop.train``, i.e. ``TrainingRun``) with the preset's
  defaults a real run has (pet: rank 8, min-SNR 5, max grad norm 1, cosine schedule, cached
  latents, fused AdamW); only samples, validation and saves are off. A sink timestamps each
  ``StepLogged`` event: the time between two is everything one step costs, events and
  state.json included.
- ``model``: the same UNet (loaded from the same folder) with the same adapters
  (``lora.add_network`` on the family's targets, the run's network), the optimizer
  ``make_optimizer`` builds for the run, and nothing of loratui around it: a fixed random batch of
  the same shape (latents, noise, timesteps, text states), ``unet(...)``, MSE, ``backward()``,
  ``optimizer.step()``, ``zero_grad``.

Both use the same thread count (``--threads``; loratui through ``LORATUI_THREADS``). They
interleave step by step: the sink runs one step of the model's own work after each loratui
step's event (not counted in loratui's next step), so a change in the machine's load falls on
both sides of a pair alike. ``--repeats`` runs; the first ``--warmup`` steps of each are not
timed. The table gives medians over all timed steps, the median of the per-step ratios, and the
load average beside each figure (the 1-minute load counts every process on the machine, this
one included).

``--model sd15-full`` is a full-size SD-1.5 with random weights, built from loratui's shipped
configs (UNet, VAE, CLIP-L text encoder, the real CLIP tokenizer, scheduler) and saved once as a
diffusers folder under ``$LORATUI_CACHE_DIR/bench/`` (about 4.3 GB), which loratui then loads
offline as ``--base-model``.

    .venv/bin/python benchmarks/step_overhead_bench.py --model tiny --batch 4 --steps 30 --repeats 3
    .venv/bin/python benchmarks/step_overhead_bench.py --model sd15-full --batch 1 --steps 6 --warmup 2 --repeats 3
    .venv/bin/python benchmarks/step_overhead_bench.py --model tiny --profile loratui   # cProfile of the loop
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SD15_FULL_VERSION = 1  # bump when the folder's recipe changes


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def sd15_full_dir() -> Path:
    """A full-size SD-1.5 diffusers folder with random weights (seeded), built once and reused."""
    from loratui.engine.paths import cache_dir

    target = cache_dir() / "bench" / f"sd15-random-v{SD15_FULL_VERSION}"
    if (target / "model_index.json").is_file():
        return target
    import shutil

    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from loratui.engine.families.shipped import sd15_config_dir

    configs = sd15_config_dir()
    print(f"building a full-size SD-1.5 with random weights into {target} (once) …", flush=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs, subfolder="vae"))
        encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs, subfolder="text_encoder"))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=encoder, tokenizer=CLIPTokenizer.from_pretrained(configs, subfolder="tokenizer"),
        unet=unet, scheduler=DDPMScheduler.from_pretrained(configs, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    staging.rename(target)
    return target


def square_dataset(folder: Path, count: int = 16) -> Path:
    """``count`` square images with captions: every batch of the run is full and of one shape,
    the shape the model's own work is timed on (the demo set's mixed aspect ratios make buckets)."""
    import random

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for n in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (96, 96), colour).save(folder / f"img_{n:02d}.png")
        (folder / f"img_{n:02d}.txt").write_text(f"sks, a square of colour {colour}\n")
    return folder


def run_config(args, dataset: Path, out: Path, steps: int):
    """The run's config: the pet preset's defaults; samples, validation and saves off."""
    from loratui.engine.config import build_config

    return build_config(str(dataset), "pet", overrides=dict(
        base_model=args.base_model, resolution=args.resolution, steps=steps, batch_size=args.batch,
        save_every=0, sample_every=0, validation="off", output_dir=str(out)))


def loratui_steps(args, dataset: Path, out: Path, between=None, profile: bool = False) -> list[tuple[float, float]]:
    """One real run of ``warmup + steps`` steps; (wall, main-thread CPU) seconds of each timed
    step. ``between(n)``, when given, runs after step n's event and is not counted in the next."""
    from loratui.engine.events import StepLogged
    from loratui.engine.train.loop import train

    times: list[tuple[float, float]] = []
    last = [time.perf_counter(), time.thread_time()]

    def sink(event) -> None:
        if isinstance(event, StepLogged):
            times.append((time.perf_counter() - last[0], time.thread_time() - last[1]))
            if between is not None:
                between(len(times))
            last[:] = [time.perf_counter(), time.thread_time()]

    config = run_config(args, dataset, out, args.warmup + args.steps)
    if profile:
        return _profiled(lambda: train(config, out / "run", [sink]), times, args)
    train(config, out / "run", [sink])
    return times[args.warmup:]


class ModelWork:
    """The UNet with the run's adapters and optimizer, and one batch: the model's own work."""

    def __init__(self, args, dataset: Path, out: Path) -> None:
        import torch

        from loratui.engine.events import EventBus
        from loratui.engine.families.models import load_components, resolve_model
        from loratui.engine.train import lora
        from loratui.engine.train.optimizer import learning_rates, make_optimizer

        config = run_config(args, dataset, out, args.warmup + args.steps)
        comps = load_components(resolve_model(config.base_model))
        unet = comps.unet
        targets, _ = comps.family.lora_targets(config.train_layers)
        torch.manual_seed(config.seed)
        lora.add_network(unet, targets, lora.Network.of(config), unet=True)
        for p in lora.lora_parameters(unet):  # adapters in fp32, as a run has them
            p.data = p.data.float()
        unet.train()
        self.unet = unet
        self.params = lora.lora_parameters(unet)
        self.optimizer, _ = make_optimizer(config, [{"params": self.params, "lr": learning_rates(config)[0]}],
                                           torch.device("cpu"), EventBus(), args.steps)
        gen = torch.Generator().manual_seed(0)
        side = args.resolution // 8
        self.latents = torch.randn((args.batch, unet.config.in_channels, side, side), generator=gen)
        self.noise = torch.randn(self.latents.shape, generator=gen)
        self.timesteps = torch.randint(0, 1000, (args.batch,), generator=gen)
        self.states = torch.randn((args.batch, 77, unet.config.cross_attention_dim), generator=gen)
        del comps

    def step(self) -> None:
        import torch.nn.functional as F

        pred = self.unet(self.latents, self.timesteps, self.states, return_dict=False)[0]
        F.mse_loss(pred.float(), self.noise).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self) -> tuple[float, float]:
        """(wall, CPU) seconds of one step."""
        tic, cpu = time.perf_counter(), time.thread_time()
        self.step()
        return time.perf_counter() - tic, time.thread_time() - cpu

    def steps(self, args) -> list[tuple[float, float]]:
        return [self.timed_step() for _ in range(args.warmup + args.steps)][args.warmup:]


def _profiled(fn, times: list[float], args) -> list[float]:
    """``fn()`` under cProfile; prints the top functions by cumulative and own time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    if args.callers:
        stats.print_callers(args.callers)
    if args.callees:
        stats.print_callees(args.callees)
    return times[args.warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tiny", "sd15-full"], default="tiny")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 (tiny), 1 (sd15-full)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run; default 30 (tiny), 6 (sd15-full)")
    parser.add_argument("--warmup", type=int, default=2, help="steps of each run not timed")
    parser.add_argument("--repeats", type=int, default=3, help="loratui runs, each interleaved with the model's steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=["loratui", "model"], help="one cProfile'd run of that side, no table")
    parser.add_argument("--top", type=int, default=30, help="functions the profile prints")
    parser.add_argument("--callers", help="with --profile: also who calls the functions matching this")
    parser.add_argument("--callees", help="with --profile: also what the functions matching this call")
    args = parser.parse_args()
    full = args.model == "sd15-full"
    args.batch = args.batch or (1 if full else 4)
    args.steps = args.steps or (6 if full else 30)

    scratch = Path(tempfile.mkdtemp(prefix="loratui-stepbench-"))
    os.environ.setdefault("LORATUI_STATE_DIR", str(scratch / "state"))  # runs stay out of the user's registry
    os.environ["LORATUI_THREADS"] = str(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(args.threads)
    args.base_model = str(sd15_full_dir()) if full else "tiny"
    dataset = square_dataset(scratch / "data")
    print(f"model {args.model}, CPU, {args.threads} thread(s), batch {args.batch}, {args.resolution} px, "
          f"{args.warmup} warm-up + {args.steps} timed steps per run, {args.repeats} pairs; torch {torch.__version__}")
    work = ModelWork(args, dataset, scratch / "model")
    if args.profile:
        if args.profile == "loratui":
            loratui_steps(args, dataset, scratch / "prof", profile=True)
        else:
            _profiled(lambda: work.steps(args), [], args)
        return

    # step by step: after each loratui step (its event), one step of the model's own work, so a
    # change in the machine's load falls on both sides of a pair alike
    runs: dict[str, list[tuple[float, float]]] = {"loratui": [], "model": []}
    for r in range(args.repeats):
        model_times: list[tuple[float, float]] = []

        def model_step(n: int) -> None:
            timed = work.timed_step()
            if n > args.warmup:
                model_times.append(timed)

        gc.collect()
        before = load()
        ours = loratui_steps(args, dataset, scratch / f"run{r}", between=model_step)
        shutil.rmtree(scratch / f"run{r}", ignore_errors=True)
        runs["loratui"] += ours
        runs["model"] += model_times
        print(f"  run {r + 1}: loratui {median(ours, 0):.4f} s/step, model {median(model_times, 0):.4f} s/step, "
              f"ratio {pair_ratio(ours, model_times, 0):.3f} (CPU time {pair_ratio(ours, model_times, 1):.3f})"
              f"  load {before}→{load()}", flush=True)
    ours, model = runs["loratui"], runs["model"]
    ratio, cpu_ratio = pair_ratio(ours, model, 0), pair_ratio(ours, model, 1)
    print(f"{'':<10}{'median s/step':>15}{'min s/step':>12}{'CPU s/step':>12}")
    for name, kind in (("model", model), ("loratui", ours)):
        print(f"{name:<10}{median(kind, 0):>15.4f}{min(t for t, _ in kind):>12.4f}{median(kind, 1):>12.4f}")
    print(f"ratio loratui / model's own work: {ratio:.3f} wall, {cpu_ratio:.3f} main-thread CPU time (medians of "
          f"{len(ours)} step pairs; ratio of wall medians {median(ours, 0) / median(model, 0):.3f})  load {load()}")
    print("RESULT " + json.dumps({"model": args.model, "batch": args.batch, "resolution": args.resolution,
                                  "loratui_s": median(ours, 0), "model_s": median(model, 0), "ratio": ratio,
                                  "cpu_ratio": cpu_ratio, "load": load()}))


def median(times: list[tuple[float, float]], which: int) -> float:
    return statistics.median(t[which] for t in times)


def pair_ratio(ours: list[tuple[float, float]], model: list[tuple[float, float]], which: int) -> float:
    """The median of loratui's step over the model step run right after it (wall or CPU time)."""
    return statistics.median(a[which] / b[which] for a, b in zip(ours, model))


if __name__ == "__main__":
    main()
