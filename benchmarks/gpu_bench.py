"""Training-step benchmark on a full-size SD-1.5 UNet with random weights: it/s, memory, FLOPs, MFU.

Nothing is downloaded: the UNet is built from loratui's shipped SD-1.5 config
(``loratui/configs/sd15/unet/config.json``) with random weights, LoRA is added the way a run adds
it (``lora.add_lora`` on SD-1.5's ``unet_targets``), and the loss is loratui's own
``step.sample_losses`` (DDPM noise, epsilon target, min-SNR weighting as in a default run). Text
encoder states are random ``[B, 77, 768]`` tensors and latents random ``[B, 4, R/8, R/8]``: the
real loop caches both, so neither the VAE nor the text encoder runs per step. Each step is what
``engine/train.py`` does per optimizer step: forward + backward under autocast (base weights in
the compute dtype, LoRA parameters in fp32), gradient clipping at 1.0, AdamW over the LoRA
parameters only (fused on CUDA), zero_grad, and one ``.item()`` of the loss.

FLOPs per step are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one forward +
backward on the meta device (no memory, no compute; the meta device also decomposes attention
into matmuls the counter sees, where the CPU's fused attention kernel is not counted). They are
model FLOPs: gradient checkpointing's recompute is not included, as MFU conventionally counts.

    .venv/bin/python benchmarks/gpu_bench.py --device cuda --batches 1,4,8
    .venv/bin/python benchmarks/gpu_bench.py --device cpu --tiny --batches 1,2 --steps 2 --warmup 1 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SD15_UNET_CONFIG = Path(__file__).resolve().parent.parent / "loratui" / "configs" / "sd15" / "unet" / "config.json"
SD15_SCHEDULER_CONFIG = SD15_UNET_CONFIG.parent.parent / "scheduler" / "scheduler_config.json"
TEXT_TOKENS = 77  # CLIP's context length: what the text encoder hands the UNet

# The best public SD-1.5 LoRA training speed we know of, for one line of comparison.
REFERENCE = {"it_per_s": 3.0, "batch": 1, "resolution": 512, "device": "RTX 3070 Ti"}


def unet_config(tiny: bool) -> dict[str, Any]:
    """The UNet config: SD-1.5's as loratui ships it, or the tiny embedded model's."""
    if tiny:
        from loratui.engine.families.tiny import UNET_CONFIG

        return dict(UNET_CONFIG)
    return json.loads(SD15_UNET_CONFIG.read_text())


def noise_scheduler() -> Any:
    """A DDPM scheduler with SD-1.5's betas (the same one a loratui run trains with)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(json.loads(SD15_SCHEDULER_CONFIG.read_text()))


def build_unet(config: dict[str, Any], device: Any, weight_dtype: Any, rank: int, alpha: float) -> Any:
    """A randomly initialised UNet on ``device`` with LoRA as a run has it: base frozen in
    ``weight_dtype``, adapters trainable in fp32. Built on the device itself, so a full-size one
    needs no seconds of CPU init (and none at all on ``meta``)."""
    import torch
    from diffusers import UNet2DConditionModel

    from loratui.engine.train import lora
    from loratui.engine.families import FAMILIES

    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config)
        lora.add_lora(unet, list(FAMILIES["sd15"].unet_targets), rank, alpha)
    if weight_dtype != torch.float32:  # built in fp32; a run casts the same way (no warning wanted)
        from diffusers.utils import logging as diffusers_logging

        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()
        try:
            unet.to(dtype=weight_dtype)
        finally:
            diffusers_logging.set_verbosity(level)
    for p in unet.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    unet.train()
    return unet


def micro_batch(batch: int, resolution: int, in_channels: int) -> Any:
    """A drawn micro-batch with random latents, as the loop hands ``sample_losses`` (on the CPU)."""
    import torch

    from loratui.engine.train.step import MicroBatch

    gen = torch.Generator().manual_seed(batch)
    shape = (batch, in_channels, resolution // 8, resolution // 8)
    return MicroBatch(
        indices=list(range(batch)),
        latents=torch.randn(shape, generator=gen),
        noise=torch.randn(shape, generator=gen),
        timesteps=torch.randint(0, 1000, (batch,), generator=gen),
        captions=[f"caption {i}" for i in range(batch)],
    )


def run_config() -> Any:
    """A default run's config: what ``sample_losses`` reads from it (min-SNR gamma 5)."""
    from loratui.engine.config import RunConfig

    return RunConfig(dataset="gpu_bench")


def count_step_flops(config: dict[str, Any], batch: int, resolution: int, rank: int = 16) -> dict[str, int]:
    """FLOPs of one training forward + backward, counted on the meta device (free and fast).

    Returns ``{"forward": …, "step": …}``; the step is forward plus backward. With the base
    frozen the backward computes input gradients only (and the small LoRA weight gradients),
    so a step is about twice the forward, not the three times of full fine-tuning.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from loratui.engine.train.step import sample_losses

    meta = torch.device("meta")
    unet = build_unet(config, meta, torch.float32, rank, float(rank))
    states = torch.empty(batch, TEXT_TOKENS, config["cross_attention_dim"], device=meta)
    mb = micro_batch(batch, resolution, config["in_channels"])
    with FlopCounterMode(display=False) as counter:
        losses = sample_losses(denoiser(unet, states, noise_scheduler()), mb,
                               list(range(batch)), run_config(), meta, torch.float32)
        forward = counter.get_total_flops()
        (losses.sum() / batch).backward()
    return {"forward": int(forward), "step": int(counter.get_total_flops())}


def denoiser(unet: Any, states: Any, scheduler: Any) -> Any:
    """The UNet as the loss sees it, with fixed random text states (the text encoder is frozen
    and cached in a run, so it costs a step nothing)."""
    from loratui.engine.train.denoiser import Denoiser
    from loratui.engine.families import FAMILIES

    return Denoiser(FAMILIES["sd15"], unet, lambda captions: {"states": states[: len(captions)]}, scheduler)


def memory_model(config: dict[str, Any], args: argparse.Namespace) -> Any:
    """loratui's measured memory model for this benchmark's step: the UNet alone on the GPU."""
    from loratui.engine.planning.footprint import DTYPE_BYTES, OPTIMIZER_STATE_BYTES, MemoryModel, measure_unet

    unet = measure_unet(config, args.resolution, args.rank, args.dtype, args.gradient_checkpointing)
    return MemoryModel(unet, (unet.params - unet.lora_params) * DTYPE_BYTES[args.dtype], 0, 0,
                       unet.lora_params, OPTIMIZER_STATE_BYTES["adamw"])


def _reset_peak_rss() -> None:
    try:  # Linux: "5" resets the process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as fh:
            return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak of the whole process


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def time_steps(unet: Any, model_config: dict[str, Any], args: argparse.Namespace, batch: int,
               device: Any, weight_dtype: Any) -> dict[str, Any]:
    """Warm up, then time ``args.steps`` training steps at ``batch``; step seconds, peak memory, loss."""
    import torch

    from loratui.engine.train import lora
    from loratui.engine.train.step import sample_losses

    cuda = device.type == "cuda"
    params = lora.lora_parameters(unet)
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2, **({"fused": True} if cuda else {}))
    scaler = torch.amp.GradScaler("cuda") if cuda and weight_dtype == torch.float16 else None
    autocast = torch.autocast(device.type, dtype=weight_dtype, enabled=weight_dtype != torch.float32)
    states = torch.randn(batch, TEXT_TOKENS, model_config["cross_attention_dim"], device=device, dtype=weight_dtype)
    mb = micro_batch(batch, args.resolution, model_config["in_channels"])
    scheduler, config, rows = noise_scheduler(), run_config(), list(range(batch))
    model = denoiser(unet, states, scheduler)

    def one_step() -> float:
        with autocast:
            losses = sample_losses(model, mb, rows, config, device, weight_dtype)
        loss = losses.sum() / batch
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # the loop reads the loss every step: a sync point it pays too

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    try:
        for _ in range(args.warmup):
            one_step()
        times, loss = [], float("nan")
        for _ in range(args.steps):
            tic = time.perf_counter()
            loss = one_step()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - tic)
        peak = torch.cuda.max_memory_allocated(device) if cuda else _peak_rss()
    finally:
        optimizer.zero_grad(set_to_none=True)
        del optimizer, states, mb
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return {"times": times, "peak_mem_bytes": peak, "loss": loss}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--batches", default="1,4,8", help="comma-separated batch sizes")
    parser.add_argument("--resolution", type=int, help="pixels (default 512; 64 with --tiny)")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"],
                        help="compute dtype (default bf16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = rank, as a default run)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile happens here)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (one graph per batch size)")
    parser.add_argument("--tiny", action="store_true", help="the tiny embedded model's UNet instead of SD-1.5")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak, for a GPU not in the table")
    parser.add_argument("--json", action="store_true", help="one JSON object per batch size on stdout, nothing else")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        args.batch_sizes = []
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batches wants positive integers, e.g. 1,4,8")
    if args.resolution is None:
        args.resolution = 64 if args.tiny else 512
    if args.resolution % 8:
        parser.error("--resolution must be a multiple of 8 (the VAE's factor)")
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "fp32"
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: --device cuda but torch sees no CUDA GPU (use --device cpu)", file=sys.stderr)
        return 2
    from loratui.engine.planning.speed import peak_tflops

    device = torch.device(args.device)
    weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    # the table holds bf16/fp16 tensor-core peaks: no MFU for fp32 or the CPU unless told the peak
    peak = args.peak_tflops or (peak_tflops(device_name) if device.type == "cuda" and args.dtype != "fp32" else None)
    model = "tiny" if args.tiny else "sd15"
    config = unet_config(args.tiny)

    unet = build_unet(config, device, weight_dtype, args.rank, float(args.rank))
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if args.compile:
        unet = torch.compile(unet, dynamic=False)
    say = (lambda *a, **k: None) if args.json else print
    say(f"{model} UNet, {args.resolution} px, {args.dtype}, LoRA rank {args.rank}, on {device_name}"
        f"{', gradient checkpointing' if args.gradient_checkpointing else ''}{', compiled' if args.compile else ''}; "
        f"median of {args.steps} steps after {args.warmup} warm-up")
    say(f"{'batch':>5} {'it/s':>8} {'img/s':>8} {'peak mem':>10} {'TFLOP/step':>11} {'TFLOP/s':>9} {'MFU':>6} "
        f"{'estimated':>12}")

    memory = memory_model(config, args)
    results: dict[int, dict[str, Any]] = {}
    for batch in args.batch_sizes:
        flops = count_step_flops(config, batch, args.resolution, args.rank)
        row: dict[str, Any] = {
            "model": model, "device": args.device, "device_name": device_name, "dtype": args.dtype,
            "resolution": args.resolution, "batch": batch, "rank": args.rank, "steps": args.steps,
            "warmup": args.warmup, "gradient_checkpointing": args.gradient_checkpointing,
            "compile": args.compile, "flops_forward": flops["forward"], "flops_per_step": flops["step"],
            "peak_tflops": peak, "mem_kind": "cuda" if device.type == "cuda" else "rss",
            # what loratui's measured memory model predicts for this step (UNet, LoRA, AdamW):
            # compare with peak_mem_bytes on CUDA to calibrate it
            "estimated_mem_bytes": memory.estimate(batch).total,
        }
        timed = None
        try:
            timed = time_steps(unet, config, args, batch, device, weight_dtype)
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not _is_oom(exc):
                raise
        if timed is None:  # out of memory: free what the failed step held (outside the except) and go on
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row["oom"] = True
            results[batch] = row
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                say(f"{batch:>5} {'OOM':>8}", flush=True)
            continue
        step_s = statistics.median(timed["times"])
        it_per_s = 1.0 / step_s
        achieved = flops["step"] * it_per_s / 1e12
        row.update(oom=False, step_s=step_s, it_per_s=it_per_s, images_per_s=batch * it_per_s,
                   peak_mem_bytes=timed["peak_mem_bytes"], tflops_per_s=achieved,
                   mfu=achieved / peak if peak else None, loss=timed["loss"])
        results[batch] = row
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "n/a"
            say(f"{batch:>5} {it_per_s:>8.3f} {batch * it_per_s:>8.2f} {timed['peak_mem_bytes'] / 2**30:>7.2f} GiB "
                f"{flops['step'] / 1e12:>11.4g} {achieved:>9.4g} {mfu:>6} "
                f"{row['estimated_mem_bytes'] / 2**30:>8.2f} GiB", flush=True)

    ref = REFERENCE
    ours = results.get(ref["batch"])
    comparable = (model == "sd15" and device.type == "cuda" and args.resolution == ref["resolution"]
                  and not args.gradient_checkpointing)
    line = (f"public reference: ~{ref['it_per_s']:g} it/s at batch {ref['batch']}, {ref['resolution']} px, "
            f"SD-1.5 LoRA on an {ref['device']} (the best public figure we know); ")
    if ours and not ours["oom"] and comparable:
        line += f"here {ours['it_per_s']:.2f} it/s at batch {ref['batch']} ({ours['it_per_s'] / ref['it_per_s']:.2f}x)"
    else:
        line += "not comparable with this run (needs --device cuda, SD-1.5, 512 px, batch 1, no checkpointing)"
    say(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
