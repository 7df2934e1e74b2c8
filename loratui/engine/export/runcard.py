"""The run card: README.md in the run folder, saying what was trained and how to use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine import atomic


def write_run_card(run_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``run_dir/README.md`` from ``info`` (name, trigger, preset, config values, …)."""
    name = info["name"]
    trigger = info.get("trigger")
    status = info.get("status", "finished")
    lines = [
        f"# {name}",
        "",
        f"A LoRA trained with loratui ({status} at step {info.get('step')} of {info.get('total_steps')}).",
        "",
        "| | |",
        "|---|---|",
        f"| trigger word | `{trigger}` |" if trigger else "| trigger word | none: the LoRA acts on any prompt it is loaded with |",
        f"| preset | {info.get('preset')} |",
        f"| base model | {info.get('base_model')} |",
        f"| images | {info.get('images')} ({info.get('schedule', '')}) |",
        f"| rank / alpha | {info.get('rank')} / {info.get('alpha')} |",
        *_network_rows(info),
        f"| learning rate | {info.get('lr')} ({info.get('lr_scheduler')}) |",
        *_method_rows(info),
        f"| batch size | {info.get('batch_size')} at {info.get('resolution')} px |",
        f"| seed | {info.get('seed')} |",
        f"| final loss | {info['final_loss']:.4f} (smoothed over about the last 10 steps: the progress bar's "
        "\"avg loss\") |" if info.get("final_loss") is not None else "| final loss | n/a |",
        "",
        *_recommendation_lines(info),
        *_healed_lines(info),
        *_verify_lines(info),
        "## Files",
        "",
        f"- `{name}.safetensors`: the LoRA (kohya format) "
        + ("for the tiny model only." if is_tiny(info) else "for AUTOMATIC1111, ComfyUI, Forge, InvokeAI."),
        f"- `{name}-stepNNNNNN.safetensors`: the LoRA at each save, to compare over-training.",
        *_ema_file_lines(info, name),
        *_diffusers_file_lines(info),
        "- `checkpoints/`: what `loratui train --resume` needs. Delete it once you are happy.",
        "- `samples/`: images rendered during training (`stepNNNNNN-K.png`, one seed per prompt).",
        "- `validation.json`: the validation loss at each save.",
        "- `config.toml`: `loratui train --config config.toml` trains this run again.",
        "",
        "## Use it",
        "",
        *_use_lines(info, name, trigger),
    ]
    if is_tiny(info):  # the demo's LoRA: say what it is before anything else
        lines[4:4] = [f"> {TINY_NOTE}", ""]
    for note in info.get("notes", []):
        lines.insert(3, f"> {note}\n")
    path = run_dir / "README.md"
    atomic.write_text(path, "\n".join(lines))
    return path


TINY_NOTE = ("This LoRA is for loratui's tiny test model (random weights, layers a few channels wide), made "
             "to show the whole path in a minute on any CPU. It loads in no real Stable Diffusion model, and "
             "its samples are noise: that is expected. Train on a real model with `--base-model PATH` "
             "(README: Base models).")


def is_tiny(info: dict[str, Any]) -> bool:
    """True for a run of the tiny model (the card names it ``loratui-tiny-…``)."""
    return str(info.get("base_model", "")).startswith("loratui-tiny")


def _use_lines(info: dict[str, Any], name: str, trigger: str | None) -> list[str]:
    prompt_hint = f"{trigger}, " if trigger else ""
    if is_tiny(info):
        return [
            "Only loratui's tiny model loads it: `loratui sample "
            f"{info.get('run_dir', '.')} --prompt \"{prompt_hint}a photo\"` renders it at each strength. "
            "With a real base model the same run gives a LoRA for AUTOMATIC1111, ComfyUI and diffusers.",
            "",
        ]
    return [
        f"**AUTOMATIC1111 / Forge**: copy `{name}.safetensors` to `models/Lora/`, then prompt",
        f"`{prompt_hint}<lora:{name}:0.7>` (try strengths 0.6-1.0).",
        "",
        f"**ComfyUI**: copy it to `models/loras/` and add a *Load LoRA* node after the checkpoint loader",
        "(strength_model 0.7, strength_clip 0.7)"
        + (f"; put the trigger word `{trigger}` in the prompt." if trigger else "."),
        "",
        *_diffusers_use_lines(info, name, prompt_hint),
    ]


def training_method(config: Any, optimizer_name: str, lr_note: str, parent: dict | None) -> dict[str, Any]:
    """The run card's entries for the optimizer, the loss and the LoRA the run started from."""
    loss = {"l2": "squared error (L2)", "l1": "absolute error (L1)", "huber": "pseudo-Huber",
            "smooth_l1": "smooth L1"}[config.loss_type]
    if config.loss_type in ("huber", "smooth_l1"):
        loss += f", c {config.huber_c:g} ({config.huber_schedule} schedule)"
    extras = [f"min-SNR γ {config.min_snr_gamma:g}" if config.min_snr_gamma else "",
              "debiased estimation" if config.debiased_estimation else "",
              f"multi-resolution noise ({config.multires_noise_iterations} levels, discount "
              f"{config.multires_noise_discount:g})" if config.multires_noise_iterations else ""]
    return {
        "optimizer": optimizer_name.split("(")[0] + (f": {lr_note}" if lr_note else ""),
        "loss": "; ".join([loss, *filter(None, extras)]),
        "train_layers": {"attention": "attention", "attention-ff": "attention and feed-forward"}.get(
            config.train_layers, config.train_layers),
        "parent": parent,
        "ema": {"mode": config.ema, "decay": config.ema_decay} if config.ema != "off" else None,
    }


def _method_rows(info: dict[str, Any]) -> list[str]:
    rows = []
    if info.get("optimizer"):
        rows.append(f"| optimizer | {info['optimizer']} |")
    if info.get("loss"):
        rows.append(f"| loss | {info['loss']} |")
    if info.get("train_layers"):
        rows.append(f"| trained layers | {info['train_layers']} |")
    if info.get("regularisation"):
        rows.append(f"| regularisation | {info['regularisation']} |")
    if info.get("masked"):
        rows.append(f"| masked loss | {info['masked']} |")
    ema = info.get("ema")
    if ema:
        holds = "the LoRA files hold the average" if ema["mode"] == "final" else "the average is kept beside the LoRA"
        rows.append(f"| EMA of the weights | {ema['mode']}: {holds} (decay {ema['decay']:g}) |")
    parent = info.get("parent")
    if parent:
        rows.append(f"| continued from | `{parent['name']}` (sha256 `{parent['sha256'][:12]}…`) |")
    return rows


def _ema_file_lines(info: dict[str, Any], name: str) -> list[str]:
    """Which file holds the EMA of the weights and which the raw ones (``--ema keep|final``)."""
    ema = info.get("ema")
    if not ema:
        return []
    decay = f"decay {ema['decay']:g}"
    if ema["mode"] == "final":
        return [f"- `{name}.safetensors`, the step files and `diffusers/`: the EMA of the weights ({decay}); "
                f"`{name}-raw.safetensors`: the raw weights as trained (same format)."]
    return [f"- `{name}-ema.safetensors`: the EMA of the weights ({decay}), same format; `{name}.safetensors`: "
            "the raw weights as trained."]


NETWORK_LABELS = {"lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "dora": "DoRA"}
NO_DIFFUSERS = ("loha", "lokr")  # network types diffusers' LoRA loader cannot read


def _network(info: dict[str, Any]) -> dict[str, Any]:
    """The run's network type and conv rank/alpha: from ``info``, else the run's config.toml."""
    if info.get("network"):
        return info
    try:
        import tomllib

        return tomllib.loads((Path(info["run_dir"]) / "config.toml").read_text(encoding="utf-8"))
    except (KeyError, OSError, ValueError):
        return {}


def _network_rows(info: dict[str, Any]) -> list[str]:
    config = _network(info)
    kind = config.get("network", "lora")
    if kind == "lora":
        return []
    row = f"| network | {NETWORK_LABELS.get(kind, kind)}"
    if kind in ("locon", "loha", "lokr"):
        rank = config.get("conv_rank", info.get("rank"))
        row += f" (convolutions too, at rank {rank})"
    if kind == "dora":
        row += " (a trained magnitude per output row)"
    return [row + " |"]


def _diffusers_file_lines(info: dict[str, Any]) -> list[str]:
    kind = _network(info).get("network", "lora")
    if kind in NO_DIFFUSERS:
        return [f"- no `diffusers/` folder: diffusers cannot load {NETWORK_LABELS[kind]}; use the kohya file "
                "in ComfyUI or AUTOMATIC1111."]
    lines = ["- `diffusers/pytorch_lora_weights.safetensors`: the same LoRA in diffusers format."]
    if kind == "dora":
        lines.append("- DoRA: ComfyUI and LyCORIS read its magnitude per output row; AUTOMATIC1111's built-in "
                     "LoRA support takes DoRA per input column and misapplies it.")
    return lines


def _diffusers_use_lines(info: dict[str, Any], name: str, prompt_hint: str) -> list[str]:
    if _network(info).get("network", "lora") in NO_DIFFUSERS:
        return []
    pipeline = info.get("pipeline_class", "StableDiffusionPipeline")
    # what the user passed as --base-model (config.toml): a path or hub id diffusers can load
    base = str(_network(info).get("base_model") or info.get("base_model"))
    single = base.lower().endswith((".safetensors", ".ckpt"))
    load = f'{pipeline}.from_single_file("{base}")' if single else f'{pipeline}.from_pretrained("{base}")'
    return [
        "**diffusers**:",
        "",
        "```python",
        f"from diffusers import {pipeline}",
        f"pipe = {load}",
        f'pipe.load_lora_weights("{name}.safetensors")',
        f'image = pipe("{prompt_hint}a photo", cross_attention_kwargs={{"scale": 0.7}}).images[0]',
        "```",
        "",
    ]


def _recommendation_lines(info: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    rec = info.get("recommendation")
    if rec:
        file = Path(rec["path"]).name
        lines += [
            "## Which file to use",
            "",
            f"**Recommended: `{file}` at strength {rec['strength']}.** {rec['reason'][0].upper()}{rec['reason'][1:]}.",
            "",
        ]
        if rec.get("overtrained"):
            lines += ["> Over-training warning: the later checkpoints fit the training photos too closely.", ""]
    history = info.get("validation") or []
    if history:
        held = info.get("held_out") or []
        source = f"held-out images ({', '.join(held)})" if held else "the training images at fixed noise"
        lines += [f"Validation loss on {source}:", "", "| step | loss |", "|---|---|"]
        lines += [f"| {step} | {loss:.4f} |" for step, loss in history]
        lines.append("")
    strip = info.get("progress")
    if strip:
        lines += ["The first sample prompt at each save, left to right:", "", f"![samples over training]({strip})", ""]
    lines += [
        "Compare checkpoints and strengths side by side with `loratui sample "
        f"{info.get('run_dir', '.')} --prompt \"...\"` (an XYZ grid).",
        "",
    ]
    return lines


def _verify_lines(info: dict[str, Any]) -> list[str]:
    """Whether the finished LoRA passed `loratui verify` (every key maps onto the base model as
    AUTOMATIC1111 and ComfyUI map it; finite tensors; metadata consistent). Well under a second:
    the base model is built from its configs on the meta device."""
    if info.get("status", "finished") != "finished" or not info.get("run_dir"):
        return []
    run_dir = Path(info["run_dir"])
    lora = run_dir / f"{info['name']}.safetensors"
    if not lora.is_file():
        return []
    try:
        import tomllib

        from loratui.engine.export.verify import verify_lora

        config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
        report = verify_lora(lora, str(config["base_model"]), bool(config.get("allow_pickle", False)))
    except Exception as exc:  # the card must be written whatever verify meets
        return [f"`loratui verify` could not check `{lora.name}`: {type(exc).__name__}: {exc}", ""]
    mapped = sum(1 for m in report.modules if m.target)
    if report.ok:
        warnings = [f.code for f in report.findings]
        note = f" (warnings: {', '.join(warnings)})" if warnings else ""
        return [f"`{lora.name}` passed `loratui verify`: all {mapped} modules load in AUTOMATIC1111 and "
                f"ComfyUI{note}.", ""]
    codes = ", ".join(sorted({f.code for f in report.findings if f.severity == "error"}))
    return [f"**`{lora.name}` failed `loratui verify` ({codes})**: run `loratui verify {lora}` for the keys.", ""]


def _healed_lines(info: dict[str, Any]) -> list[str]:
    healed = info.get("healed") or []
    if not healed:
        return []
    lines = ["## Faults healed during the run", ""]
    lines += [f"- {message}" for message in healed]
    return [*lines, ""]


GRID_HEADING = "## Checkpoints × strengths"


def add_grid(run_dir: Path, grid: Path, prompt: str) -> None:
    """Put (or replace) the XYZ grid section in the run card, once `loratui sample` made one."""
    card = run_dir / "README.md"
    if not card.is_file():
        return
    try:
        rel = grid.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        rel = str(grid)
    text = card.read_text(encoding="utf-8")
    if GRID_HEADING in text:
        head, _, rest = text.partition(GRID_HEADING)
        nxt = rest.find("\n## ")
        text = head.rstrip() + "\n\n" + (rest[nxt + 1 :] if nxt >= 0 else "")
    section = (
        f"{GRID_HEADING}\n\nRows are checkpoints, columns strengths (0 is the base model), "
        f"one seed; prompt: `{prompt}`.\n\n![checkpoints × strengths]({rel})\n\n"
    )
    marker = "## Files"
    text = text.replace(marker, section + marker, 1) if marker in text else text + "\n" + section
    atomic.write_text(card, text)


def progress_strip(run_dir: Path) -> Path | None:
    """samples/progress-K.png: prompt K's samples in step order, side by side (None if none)."""
    from PIL import Image

    samples = sorted((run_dir / "samples").glob("step*-0.png"))
    if len(samples) < 2:
        return None
    images = [Image.open(p).convert("RGB") for p in samples[-8:]]
    width, height = images[0].size
    strip = Image.new("RGB", (width * len(images), height), "white")
    for n, im in enumerate(images):
        strip.paste(im.resize((width, height)), (n * width, 0))
    path = run_dir / "samples" / "progress-0.png"
    with atomic.atomic_path(path) as tmp:
        strip.save(tmp, format="PNG")
    return path
