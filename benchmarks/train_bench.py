"""Training-step benchmark on a tiny model, CPU: loratui's loop against a bare diffusers+peft loop.

Both loops do the same work per step (batch of B images at R px, LoRA rank 8 on the UNet
attention projections, AdamW, min-SNR off, fp32). The bare loop is the shape of diffusers'
example for the family: train_text_to_image_lora.py (SD-1.5), or train_text_to_image_lora_sdxl.py
(``--family sdxl``: both text encoders, penultimate hidden states concatenated, the second
one's pooled output and the size/crop time ids as added conditioning) — VAE-encode the batch
and run the text encoder(s) every step. loratui caches the latents once (and a frozen text
encoder's output per caption). Prints the median seconds per step, peak RSS and the ratio.

    .venv/bin/python benchmarks/train_bench.py [--family sd15|sdxl] [--steps 60] [--batch 4] [--resolution 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = [0.0]  # when the child started, so "first step" counts imports and loading alike


def loratui_loop(args, dataset: Path, out: Path) -> dict:
    from loratui.engine.config import build_config
    from loratui.engine.events import StepLogged
    from loratui.engine.train.loop import train

    times: list[float] = []
    first: list[float] = []
    t0 = time.perf_counter()
    last = [t0]

    def sink(event):
        now = time.perf_counter()
        if isinstance(event, StepLogged):
            if not first:
                first.append(now - t0)
            times.append(now - last[0])
        last[0] = now

    cfg = build_config(str(dataset), "pet", overrides=dict(
        base_model="tiny-sdxl" if args.family == "sdxl" else "tiny", resolution=args.resolution, steps=args.steps,
        save_every=0, batch_size=args.batch, rank=8, alpha=8.0, lr=2e-4, min_snr_gamma=0, buckets=False,
        sample_every=0, validation="off", output_dir=str(out)))
    train(cfg, out / "run", [sink])
    return {"steps": times[5:], "first_step_s": first[0], "t0": t0 - T_PROCESS[0]}


def _lora_unet(root: Path):
    """The example's trainable part: the UNet with LoRA on attention, AdamW over it, and the
    frozen VAE and noise schedule."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
    sched = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    for m in (unet, vae):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    return unet, vae, sched, params, torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-2)


def _timed_steps(args, t0: float, loss_of, params, opt) -> dict:
    """``args.steps`` optimizer steps of ``loss_of(gen)`` (the data loading and forward pass of
    one step), each timed; the first 5 are warm-up and left out."""
    import torch

    gen = torch.Generator().manual_seed(0)
    times, first = [], None
    for _ in range(args.steps):
        tic = time.perf_counter()
        loss_of(gen).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        if first is None:
            first = now - t0
        times.append(now - tic)
    return {"steps": times[5:], "first_step_s": first, "t0": t0 - T_PROCESS[0]}


def _data(args, dataset: Path):
    paths = sorted(dataset.glob("*.png"))
    return paths, [p.with_suffix(".txt").read_text().strip() for p in paths], (args.resolution, args.resolution)


def bare_loop(args, dataset: Path) -> dict:
    """diffusers' SD-1.5 LoRA example's step, bare: per step the data loader's decode and crop,
    the VAE and the text encoder, then the UNet with LoRA."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPTextModel, CLIPTokenizer

    from loratui.engine.data.images import fit_to_bucket, open_rgb, to_tensor
    from loratui.engine.families.tiny import tiny_model_dir

    t0 = time.perf_counter()
    root = tiny_model_dir()
    unet, vae, sched, params, opt = _lora_unet(root)
    te = CLIPTextModel.from_pretrained(root, subfolder="text_encoder").requires_grad_(False)
    tok = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    paths, captions, size = _data(args, dataset)

    def loss_of(gen):
        idx = torch.randint(0, len(paths), (args.batch,), generator=gen).tolist()
        # the data loader's work, as in diffusers' example: decode, resize, crop every step
        pixels = torch.stack([to_tensor(fit_to_bucket(open_rgb(paths[i]), size)) for i in idx])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator=gen) * vae.config.scaling_factor
            ids = tok([captions[i] for i in idx], padding="max_length", max_length=77,
                      truncation=True, return_tensors="pt").input_ids
            states = te(ids, return_dict=False)[0]
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        pred = unet(sched.add_noise(latents, noise, t), t, states, return_dict=False)[0]
        return F.mse_loss(pred, noise)

    return _timed_steps(args, t0, loss_of, params, opt)


def bare_sdxl_loop(args, dataset: Path) -> dict:
    """diffusers' SDXL LoRA example's step, bare: per step the data loader's decode and crop,
    the VAE, both text encoders and the added conditioning, then the UNet with LoRA."""
    import torch
    import torch.nn.functional as F
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from loratui.engine.data.images import fit_to_bucket, open_rgb, to_tensor
    from loratui.engine.families.tiny import tiny_model_dir

    t0 = time.perf_counter()
    root = tiny_model_dir("tiny-sdxl")
    unet, vae, sched, params, opt = _lora_unet(root)
    te1 = CLIPTextModel.from_pretrained(root, subfolder="text_encoder").requires_grad_(False)
    te2 = CLIPTextModelWithProjection.from_pretrained(root, subfolder="text_encoder_2").requires_grad_(False)
    tok1 = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer_2")
    paths, captions, size = _data(args, dataset)

    def loss_of(gen):
        idx = torch.randint(0, len(paths), (args.batch,), generator=gen).tolist()
        images = [open_rgb(paths[i]) for i in idx]
        pixels = torch.stack([to_tensor(fit_to_bucket(im, size)) for im in images])
        prompts = [captions[i] for i in idx]
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample(generator=gen) * vae.config.scaling_factor
            states, pooled = [], None
            for tok, te in ((tok1, te1), (tok2, te2)):
                ids = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
                out = te(ids, output_hidden_states=True)
                pooled = out[0]  # the projected pooled output; the second encoder's is kept
                states.append(out.hidden_states[-2])
            states = torch.cat(states, dim=-1)
        # original size, crop top-left, target size per image (what the example's loader records)
        time_ids = torch.tensor([[im.height, im.width, 0, 0, *size] for im in images], dtype=states.dtype)
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        pred = unet(sched.add_noise(latents, noise, t), t, states,
                    added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}, return_dict=False)[0]
        return F.mse_loss(pred, noise)

    return _timed_steps(args, t0, loss_of, params, opt)


def child(kind: str, args) -> None:
    import json

    T_PROCESS[0] = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    dataset = Path(args.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "loratui":
            result = loratui_loop(args, dataset, Path(tmp))
        else:
            result = (bare_sdxl_loop if args.family == "sdxl" else bare_loop)(args, dataset)
    result["first_step_s"] += result.pop("t0", 0.0)
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternated")
    parser.add_argument("--child", choices=["loratui", "bare"])
    parser.add_argument("--dataset")
    args = parser.parse_args()
    if args.child:
        child(args.child, args)
        return

    from loratui.engine.data.demo import make_demo_dataset

    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_demo_dataset(Path(tmp) / "data", count=12)
        results: dict[str, list[dict]] = {"loratui": [], "bare": []}
        for _ in range(args.repeats):
            for kind in ("loratui", "bare"):  # alternate so machine noise hits both alike
                cmd = [sys.executable, __file__, "--child", kind, "--dataset", str(dataset),
                       "--steps", str(args.steps), "--batch", str(args.batch),
                       "--resolution", str(args.resolution), "--threads", str(args.threads),
                       "--family", args.family]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
                line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))
                results[kind].append(json.loads(line[7:]))

    def summary(kind: str) -> tuple[float, float, float]:
        steps = [s for r in results[kind] for s in r["steps"]]
        return (statistics.median(steps), max(r["peak_rss"] for r in results[kind]),
                statistics.median(r["first_step_s"] for r in results[kind]))

    ours, bare = summary("loratui"), summary("bare")
    print(f"tiny {'SDXL' if args.family == 'sdxl' else 'SD-1.5'} model, CPU, {args.threads} thread(s), batch {args.batch}, {args.resolution} px, "
          f"{args.steps} steps × {args.repeats} runs each (first 5 steps of a run not timed)")
    print(f"{'loop':<10}{'median s/step':>15}{'peak RSS':>12}{'first step s':>14}  (from process start)")
    for name, (med, rss, first) in (("loratui", ours), ("bare", bare)):
        print(f"{name:<10}{med:>15.4f}{rss / 2**20:>9.0f} MiB{first:>14.2f}")
    print(f"ratio loratui / bare (step time): {ours[0] / bare[0]:.2f}")


if __name__ == "__main__":
    main()
