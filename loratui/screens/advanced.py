"""The preset step's Advanced section, as data: one line per RunConfig option (its name, label,
kind and a few words of help), grouped, and what each shows when left empty (the value the
plan will use). Adding an option to the wizard is one line in ``GROUPS``; a choice's values
come from RunConfig's own ``Literal`` type, and every value is checked by RunConfig."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

Kind = Literal["choice", "number", "path", "text", "bool"]
BOOL_WORDS = ("off", "on")
CONV_NETWORKS = ("locon", "loha", "lokr")


@dataclass(frozen=True)
class Option:
    """One Advanced field. ``when`` (given the run config) says if it applies; else it is hidden
    and left out of the config. It reads only options that have no ``when`` of their own."""

    name: str
    label: str
    kind: Kind
    help: str
    when: Callable[[Any], bool] | None = None


GROUPS: tuple[tuple[str, tuple[Option, ...]], ...] = (
    ("Schedule", (
        Option("steps", "steps", "number", "optimizer steps in all (empty: from the dataset and preset)"),
        Option("epochs", "epochs", "number", "passes over the dataset (steps win when both are set)"),
        Option("save_every", "save every", "number", "save the LoRA every N steps (0: only at the end)"),
        Option("sample_every", "sample every", "number", "sample images every N steps (0: off)"),
        Option("seed", "seed", "number", "the same seed gives the same run"),
        Option("output_dir", "output folder", "path", "where run folders go (ctrl+o picks one)"),
        Option("lr_scheduler", "lr schedule", "choice", "how the learning rate changes over the run"),
        Option("warmup_steps", "warmup steps", "number", "steps the learning rate ramps up over (empty: 5%)"),
        Option("grad_accum", "accumulation", "number", "gradient accumulation: steps of batches per update"),
        Option("sample_prompts", "sample prompts", "text", "prompts for the samples, separated by | (empty: the preset's)"),
        Option("sample_steps", "sample steps", "number", "denoising steps per sample image"),
        Option("validation", "validation", "choice", "auto: held-out images when there are enough"),
    )),
    ("Data", (
        Option("repeats", "repeats", "number", "how often each image is seen per epoch"),
        Option("batch_size", "batch size", "number", "images per step, or auto: the most that fit the GPU"),
        Option("resolution", "resolution", "number", "training size in pixels (a multiple of 8)"),
        Option("reg_folder", "class images", "path", "regularisation images, if the subject leaks (ctrl+o picks one)"),
        Option("class_prompt", "class prompt", "text", "their caption where they have none: a photo of a dog",
               lambda c: bool(c.reg_folder)),
        Option("prior_loss_weight", "class weight", "number", "the class images' weight in the loss",
               lambda c: bool(c.reg_folder)),
        Option("masked_loss", "masked loss", "bool", "learn only inside NAME.mask.png (auto: when masks exist)"),
        Option("shuffle_tags", "shuffle tags", "bool", "shuffle caption tags each step (the first ones stay)"),
        Option("keep_tokens", "keep tags", "number", "tags kept in place at the front", lambda c: c.shuffle_tags),
        Option("caption_dropout", "caption drop", "number", "how often a caption is left empty (0-1)"),
    )),
    ("Network", (
        Option("network", "network", "choice", "lora; locon adds the convolutions; loha, lokr, dora"),
        Option("rank", "rank", "number", "the LoRA's size (network dim): 4-32 is usual"),
        Option("alpha", "alpha", "number", "scales the LoRA: alpha/rank (empty: the preset's ratio)"),
        Option("conv_rank", "conv rank", "number", "the convolutions' rank", lambda c: c.network in CONV_NETWORKS),
        Option("conv_alpha", "conv alpha", "number", "the convolutions' alpha", lambda c: c.network in CONV_NETWORKS),
        Option("train_layers", "layers", "choice", "attention only, or attention and feed-forward"),
        Option("init_lora", "start from", "path", "a LoRA or a run folder to continue training (ctrl+o picks one)"),
    )),
    ("Optimizer", (
        Option("optimizer", "optimizer", "choice", "auto: 8-bit AdamW on a CUDA GPU, else AdamW"),
        Option("lr", "learning rate", "number", "the step size (Prodigy uses 1 and finds its own)"),
        Option("d_coef", "d_coef", "number", "scales Prodigy's own step size", lambda c: c.optimizer == "prodigy"),
        Option("unet_lr", "UNet lr", "number", "the UNet's learning rate (empty: the learning rate)"),
        Option("train_text_encoder", "text encoder", "bool", "train the text encoder(s) too"),
        Option("text_encoder_lr", "text enc. lr", "number", "the text encoders' learning rate",
               lambda c: c.train_text_encoder),
        Option("ema", "EMA", "choice", "an average of the weights: kept beside the LoRA, or made the LoRA"),
        Option("ema_decay", "EMA decay", "number", "how slowly the average follows", lambda c: c.ema != "off"),
        Option("mixed_precision", "precision", "choice", "auto: bf16 or fp16 on a GPU, fp32 on a CPU"),
        Option("gradient_checkpointing", "checkpointing", "bool", "less GPU memory for about 20% more time"),
    )),
    ("Loss", (
        Option("loss_type", "loss", "choice", "l2 (usual), l1, or pseudo-Huber: robust to outliers"),
        Option("huber_c", "huber c", "number", "the Huber threshold", lambda c: c.loss_type in ("huber", "smooth_l1")),
        Option("huber_schedule", "huber schedule", "choice", "how c follows the timestep",
               lambda c: c.loss_type in ("huber", "smooth_l1")),
        Option("debiased_estimation", "debiased", "bool", "weight each timestep's loss by 1/sqrt(SNR)"),
        Option("multires_noise_iterations", "multires noise", "number", "pyramid noise levels (0: off; 6-10)"),
        Option("multires_noise_discount", "multires disc.", "number", "each coarser level's weight",
               lambda c: c.multires_noise_iterations > 0),
        Option("noise_offset", "noise offset", "number", "helps very dark and bright images (0.05-0.1)"),
        Option("min_snr_gamma", "min-SNR γ", "number", "evens out the timesteps' weights (0: off)"),
        Option("prediction_type", "prediction", "choice", "auto: what the model says (epsilon or v)"),
    )),
    ("Notify", (
        Option("notify", "notify URL", "text", "ntfy://topic, discord://…, json://host… · ctrl+t: send a test"),
    )),
)
OPTIONS: dict[str, Option] = {option.name: option for _, group in GROUPS for option in group}
LIST_KEYS = frozenset({"sample_prompts"})  # a list in RunConfig: typed as its items joined by " | "


def as_text(name: str, value: Any) -> str:
    """A set value as its field shows it ("" for none)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " | ".join(map(str, value))
    return str(value)
SCHEDULE_KEYS = frozenset({"steps", "epochs", "repeats", "batch_size", "resolution"})  # change the plan


def choices(name: str) -> list[str]:
    """The values a choice option takes: its RunConfig ``Literal``, or off/on for a bool."""
    from loratui.engine.config import RunConfig

    if OPTIONS[name].kind == "bool":
        return list(BOOL_WORDS)
    annotation = RunConfig.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        return [str(value) for value in get_args(annotation)]
    raise TypeError(f"{name}: a choice option needs a Literal type in RunConfig")


def parse(name: str, text: str) -> Any:
    """A field's text as the value to hand RunConfig (which says what is wrong with it)."""
    kind = OPTIONS[name].kind
    if name in LIST_KEYS:
        return [part.strip() for part in text.split("|") if part.strip()]
    if kind == "bool":
        return text == "on"
    if kind == "number":
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
    return text


def shown(name: str, config: Any, plan: Any = None) -> str:
    """The value the run will use for ``name`` when the field is left empty."""
    from loratui.engine.train.optimizer import learning_rates

    derived: dict[str, Callable[[], Any]] = {
        "alpha": lambda: config.lora_alpha, "conv_rank": lambda: config.conv_lora_rank,
        "conv_alpha": lambda: config.conv_lora_alpha, "sample_every": lambda: config.sample_interval,
        "unet_lr": lambda: learning_rates(config)[0], "text_encoder_lr": lambda: learning_rates(config)[1],
    }
    if plan is not None and not plan.error:  # what the schedule works out for this dataset
        derived.update(steps=lambda: plan.total_steps, epochs=lambda: plan.epochs, repeats=lambda: plan.repeats,
                       batch_size=lambda: plan.batch_size)
    value = derived[name]() if name in derived else getattr(config, name, None)
    if name == "notify" and not value:
        return default_notify()
    if name == "warmup_steps" and value is None:
        return "5% of the run"
    if isinstance(value, bool):
        return BOOL_WORDS[value]
    if isinstance(value, list):
        return " | ".join(value) if value else "the preset's"
    if value is None:
        return "auto" if OPTIONS[name].kind == "bool" else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def path_problem(config: Any) -> tuple[str, str] | None:
    """(option, one line) when a path option names nothing usable (RunConfig takes any text;
    the run would fail only once started); None when all is well."""
    from loratui.engine.errors import LoratuiError
    from loratui.engine.train.init_lora import resolve_init_lora

    if config.init_lora:
        try:
            path = resolve_init_lora(config.init_lora)
        except LoratuiError as exc:
            return "init_lora", exc.message
        if not path.is_file():
            return "init_lora", f"{path}: no such LoRA file or run folder (ctrl+o picks one)"
    if config.reg_folder and not Path(config.reg_folder).expanduser().is_dir():
        return "reg_folder", f"{config.reg_folder}: no such folder of class images"
    return None


def default_notify() -> str:
    """Where a run notifies when the field is empty: $LORATUI_NOTIFY or the user default (its
    services named, not the URL: it may hold a token)."""
    from loratui.engine.runs.notify import notify_urls

    urls = notify_urls(None)
    if not urls:
        return "none"
    return ", ".join(url.partition("://")[0] + "://…" for url in urls) + " (your default)"


NETWORK_WORDS = {"lora": "LoRA", "locon": "LoCon (LoRA + convolutions)", "loha": "LoHa", "lokr": "LoKr",
                 "dora": "DoRA"}
OPTIMIZER_WORDS = {"adamw": "AdamW", "adamw8bit": "8-bit AdamW", "prodigy": "Prodigy", "adafactor": "Adafactor",
                   "lion": "Lion", "schedulefree": "schedule-free AdamW"}


def method_line(config: Any, gpu: str) -> str:
    """The network and optimizer the run trains with, and why where it is not plain: shown
    under the schedule's derivation."""
    from loratui.engine.train.optimizer import lr_note

    network = f"{NETWORK_WORDS[config.network]} rank {config.rank}, alpha {config.lora_alpha:g}"
    if config.network in CONV_NETWORKS:
        network += f" (convolutions {config.conv_lora_rank}, {config.conv_lora_alpha:g})"
    layers = "attention" if config.train_layers == "attention" else "attention + feed-forward"
    if config.optimizer == "auto":
        optimizer = "8-bit AdamW (auto)" if gpu else "AdamW (auto)"
    else:
        optimizer = OPTIMIZER_WORDS[config.optimizer]
        if config.optimizer == "adamw8bit" and not gpu:
            optimizer += " (AdamW without a CUDA GPU)"
    note = lr_note(config)
    text = f"{network} · {layers} layers · optimizer {optimizer}"
    if config.ema != "off":
        text += f" · EMA {config.ema_decay:g} ({'the LoRA' if config.ema == 'final' else 'kept beside it'})"
    if config.reg_folder:
        text += f" · class images weighted {config.prior_loss_weight:g}"
    if config.init_lora:
        text += f" · starts from {config.init_lora}"
    return f"{text}; {note.removeprefix(f'optimizer {config.optimizer}: ')}" if note else text
