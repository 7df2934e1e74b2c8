"""The run config: one validated model, read from TOML (or lora-scripts YAML), written as TOML.

Layering, lowest first: the preset, then the config file, then every CLI flag. A value that
is not allowed is one line naming the key, where it came from, and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from loratui.engine.errors import ConfigError
from loratui.engine.planning.presets import get_preset

DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class RunConfig(BaseModel):
    """Everything a run needs; written to ``RUN_DIR/config.toml`` so the run can be reproduced."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = Field(description="the folder of images")
    preset: Literal["person", "style", "pet"] = "person"
    base_model: str = Field(DEFAULT_BASE_MODEL, min_length=1)
    allow_pickle: bool = False
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    output_dir: str = "loratui-runs"
    trigger: str | None = None
    metadata_path: str | None = None

    resolution: int = Field(512, ge=64, le=2048, multiple_of=8)
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 4  # auto: fit the GPU (memory_plan)
    grad_accum: int = Field(1, ge=1, le=1024)
    steps: int | None = Field(None, ge=1, le=1_000_000)
    epochs: int | None = Field(None, ge=1, le=10_000)
    repeats: int | None = Field(None, ge=1, le=1000)
    buckets: bool = True

    rank: int = Field(16, ge=1, le=1024)
    alpha: float | None = Field(None, gt=0, le=4096)
    # the adapter (train/lora.py): LoRA, LoCon (+ the ResNet convolutions), LoHa, LoKr, DoRA; the
    # convolutions' own rank and alpha for locon/loha/lokr (None: rank, and alpha at its ratio)
    network: Literal["lora", "locon", "loha", "lokr", "dora"] = "lora"
    conv_rank: int | None = Field(None, ge=1, le=1024)
    conv_alpha: float | None = Field(None, gt=0, le=4096)
    lr: float = Field(1e-4, gt=0, lt=1)
    text_encoder_lr: float | None = Field(None, gt=0, lt=1)
    train_text_encoder: bool = False
    lr_scheduler: Literal[
        "constant", "constant_with_warmup", "cosine", "cosine_with_restarts", "linear", "polynomial"
    ] = "cosine"
    warmup_steps: int | None = Field(None, ge=0)
    # auto: 8-bit AdamW on CUDA with bitsandbytes, else AdamW (train/optimizer.py says each one's settings)
    optimizer: Literal["auto", "adamw", "adamw8bit", "prodigy", "adafactor", "lion", "schedulefree"] = "auto"
    d_coef: float = Field(1.0, gt=0, le=100)  # Prodigy's step-size multiplier (its lr is 1)
    unet_lr: float | None = Field(None, gt=0, lt=1)  # None: lr
    # an EMA of the adapter weights (train/ema.py): keep it as NAME-ema.safetensors, or make it
    # the LoRA (files, samples, validation; the raw weights as NAME-raw.safetensors)
    ema: Literal["off", "keep", "final"] = "off"
    ema_decay: float = Field(0.999, gt=0, lt=1)
    # the loss: squared error (l2), absolute (l1), or kohya's pseudo-Huber (huber, smooth_l1) whose
    # threshold huber_c follows huber_schedule over the timesteps
    loss_type: Literal["l2", "l1", "huber", "smooth_l1"] = "l2"
    huber_c: float = Field(0.1, gt=0, le=10)
    huber_schedule: Literal["snr", "exponential", "constant"] = "snr"
    debiased_estimation: bool = False  # weight each timestep's loss by 1/sqrt(SNR)
    multires_noise_iterations: int = Field(0, ge=0, le=16)  # pyramid noise levels (0: off; 6-10 usual)
    multires_noise_discount: float = Field(0.3, ge=0, le=1)
    # which UNet/text-encoder layers get adapters (Family.layer_targets): attention, or + feed-forward
    train_layers: Literal["attention", "attention-ff"] = "attention"
    init_lora: str | None = None  # a LoRA file or run folder to start from (train/init_lora.py)
    # regularisation (class) images, kohya's prior preservation: each epoch draws as many of them
    # as it has training views, into the same batches; their captions are their own, their kohya
    # folder's class name or class_prompt (never the trigger), their loss weighs prior_loss_weight
    reg_folder: str | None = None
    class_prompt: str | None = Field(None, min_length=1, max_length=1000)
    prior_loss_weight: float = Field(1.0, ge=0, le=10)
    # the loss only where the subject is: NAME.mask.png beside an image, or (when on) its alpha
    # channel; None: on when the dataset holds a .mask.png file (data/masks.py)
    masked_loss: bool | None = None
    max_grad_norm: float = Field(1.0, ge=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    save_precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    min_snr_gamma: float = Field(5.0, ge=0, le=100)
    # what the UNet predicts, and zero terminal SNR (NoobAI v-pred, SD-2 768-v): "auto" and None
    # take what the model says (its scheduler config, or a single file's v_pred/ztsnr keys)
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = "auto"
    zero_terminal_snr: bool | None = None
    noise_offset: float = Field(0.0, ge=0, le=1)
    gradient_checkpointing: bool = False
    cache_latents: bool = True
    cache_latents_to_disk: bool = True
    compile: bool = False

    shuffle_tags: bool = False
    keep_tokens: int = Field(1, ge=0, le=75)
    caption_dropout: float = Field(0.0, ge=0, le=1)

    save_every: int = Field(100, ge=0)
    keep_checkpoints: int = Field(3, ge=1, le=1000)
    seed: int = Field(42, ge=0, le=2**32 - 1)
    sample_every: int | None = Field(None, ge=0)  # None: at every save; 0: never
    sample_prompts: list[str] = Field(default_factory=list)
    sample_steps: int = Field(20, ge=1, le=150)
    validation: Literal["auto", "holdout", "train", "off"] = "auto"
    tensorboard: bool = False
    # where to say that the run ended (apprise URLs: ntfy://, discord://, mailto://, json://…);
    # it may hold a token: config.toml keeps it (owner-only) so --detach and --resume still
    # notify, but it stays out of the events, state.json, the run card and the LoRA's metadata
    notify: str | None = Field(None, max_length=4096)
    gpus: int = Field(1, ge=1, le=64)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_false_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads True as 1, and YAML 1.1 reads yes/no/on/off as true/false, so
        # `lora_rank: yes` trained at rank 1 without a word
        if isinstance(value, bool) and info.field_name in NUMBER_KEYS:
            raise ValueError("must be a number, not true/false (YAML reads yes, no, on and off as true/false)")
        return value

    @field_validator("optimizer", mode="before")
    @classmethod
    def _kohya_optimizer_names(cls, value: Any) -> Any:
        # kohya and lora-scripts write optimizer_type as a class name: AdamW8bit, Prodigy, AdaFactor…
        if isinstance(value, str):
            key = value.strip().lower().replace("_", "").replace("-", "")
            return KOHYA_OPTIMIZERS.get(key, value)
        return value

    @field_validator("ema")
    @classmethod
    def _no_ema_with_schedule_free(cls, value: str, info: ValidationInfo) -> str:
        if value != "off" and info.data.get("optimizer") == "schedulefree":
            raise ValueError("schedule-free AdamW already averages its weights: use --ema off "
                             "(or another --optimizer)")
        return value

    @field_validator("trigger")
    @classmethod
    def _trigger_is_one_token(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value or "," in value:
            raise ValueError("must be a non-empty word or phrase without commas")
        return value

    @property
    def sample_interval(self) -> int:
        """Steps between samples (0: none); by default the save interval."""
        return self.save_every if self.sample_every is None else self.sample_every

    @property
    def lora_alpha(self) -> float:
        """The alpha actually used: the set one, or the rank (scale 1)."""
        return float(self.alpha) if self.alpha is not None else float(self.rank)

    @property
    def conv_lora_rank(self) -> int:
        """The 3x3 convolutions' rank (locon, loha, lokr): the set one, or the rank."""
        return self.conv_rank if self.conv_rank is not None else self.rank

    @property
    def conv_lora_alpha(self) -> float:
        """The convolutions' alpha: the set one, or the network's alpha:rank ratio at the conv rank."""
        if self.conv_alpha is not None:
            return float(self.conv_alpha)
        return self.lora_alpha * self.conv_lora_rank / self.rank


KOHYA_OPTIMIZERS = {"adamw": "adamw", "adamw8bit": "adamw8bit", "prodigy": "prodigy", "adafactor": "adafactor",
                    "lion": "lion", "lion8bit": "lion", "adamwschedulefree": "schedulefree",
                    "schedulefree": "schedulefree", "auto": "auto"}


def _takes_numbers(annotation: Any) -> bool:
    """True when a field's type admits int or float (and not bool)."""
    found = set(_leaf_types(annotation))
    return bool(found & {int, float}) and bool not in found


def _leaf_types(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    if not args:
        return [annotation]
    return [leaf for arg in args for leaf in _leaf_types(arg)]


NUMBER_KEYS = frozenset(name for name, f in RunConfig.model_fields.items() if _takes_numbers(f.annotation))


def preset_values(preset: str) -> dict[str, Any]:
    """The config values a preset sets."""
    p = get_preset(preset)
    return {
        "preset": p.name,
        "rank": p.rank,
        "lr": p.lr,
        "batch_size": p.batch_size,
        "resolution": p.resolution,
        "save_every": p.save_every,
        "noise_offset": p.noise_offset,
        "shuffle_tags": p.shuffle_tags,
        "keep_tokens": p.keep_tokens,
    }


def build_config(
    dataset: str | None,
    preset: str | None = None,
    file_values: dict[str, Any] | None = None,
    file_label: str = "config",
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Layer preset < file < flags and validate; flags with value None are not set."""
    file_values = dict(file_values or {})
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    chosen = overrides.get("preset") or preset or file_values.get("preset") or "person"
    try:
        values = preset_values(chosen)
    except (ValueError, TypeError):
        raise ConfigError(f"preset = {quote(chosen)}: unknown preset", "choose one of person, style, pet") from None
    sources = {k: f"preset {chosen}" for k in values}
    for key, value in file_values.items():
        values[key] = value
        sources[key] = file_label
    for key, value in overrides.items():
        values[key] = value
        sources[key] = "--" + key.replace("_", "-")
    if dataset is not None:
        values["dataset"] = str(dataset)
        sources["dataset"] = "FOLDER"
    if "dataset" not in values:
        raise ConfigError("no dataset folder given", "pass FOLDER or set train_data_dir in --config")
    if isinstance(values.get("base_model"), str):
        from loratui.engine.families import family_preset_values

        prediction = values.get("prediction_type", "auto")
        own = family_preset_values(values["base_model"], chosen, prediction if isinstance(prediction, str) else "auto")
        for key, value in own.items():  # only what the preset set: a file or flag value stays
            if key not in sources or sources[key].startswith("preset "):
                values[key] = value
                sources[key] = f"preset {chosen} for this model"
        if "alpha" in own and not sources["rank"].startswith("preset ") and sources["alpha"].startswith("preset "):
            values["alpha"] = values["rank"] * own["alpha"] / own["rank"]  # the family's alpha:rank ratio
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        raise _one_line(exc, sources, values) from None


def _one_line(exc: ValidationError, sources: dict[str, str], values: dict[str, Any]) -> ConfigError:
    error = _first_error(exc, sources, values)
    # keys and values come from user files: never let them break the one line
    return ConfigError(" ".join(error.message.split()), " ".join(error.hint.split()))


# keys with two kinds of value, whose pydantic message would name only the first kind
UNION_MESSAGES = {"batch_size": "must be a whole number from 1 to 256, or auto"}


def _first_error(exc: ValidationError, sources: dict[str, str], values: dict[str, Any]) -> ConfigError:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else "config"
    source = sources.get(key, "config")
    if err["type"] == "extra_forbidden":
        import difflib

        close = difflib.get_close_matches(key, list(RunConfig.model_fields), n=1)
        hint = (f"did you mean {close[0]}? " if close else "") + \
            "the keys are train's flag names with _ for -: see loratui train --help"
        return ConfigError(f"{source}: unknown key {quote(key)}", hint)
    shown = values.get(key)
    msg = UNION_MESSAGES.get(key) or err["msg"].replace("Input should be", "must be")
    if err["type"] == "value_error":  # our own validators: pydantic prefixes "Value error, "
        msg = msg.removeprefix("Value error, ")
    return ConfigError(f"{source}: {key} = {quote(shown)}: {msg}")


QUOTE_LIMIT = 60  # characters of a user's value an error line shows


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error line: one line, at most ``limit`` characters (an ellipsis
    marks a cut). Built with reprlib, which stops at a few items and levels, so a huge or
    deeply shared value (a YAML alias bomb, a 10**6-element list) is never turned into text whole."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 6, 6, 4, 6
    short.maxstring = short.maxlong = short.maxother = limit
    text = " ".join(short.repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# lora-scripts YAML keys (DESIGN.md) and a few common kohya names, mapped to ours.
LORA_SCRIPTS_KEYS = {
    "train_data_dir": "dataset",
    "metadata_path": "metadata_path",
    "base_model": "base_model",
    "pretrained_model_name_or_path": "base_model",
    "lora_rank": "rank",
    "network_dim": "rank",
    "network_alpha": "alpha",
    "lora_alpha": "alpha",
    "conv_dim": "conv_rank",
    "conv_alpha": "conv_alpha",
    "network_module": "network",  # with lycoris_algo/algo and dora_wd: see NETWORK_MODULES
    "lycoris_algo": "network",
    "algo": "network",
    "dora_wd": "network",
    "batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "epochs": "epochs",
    "max_train_epochs": "epochs",
    "max_train_steps": "steps",
    "learning_rate": "lr",
    "unet_lr": "unet_lr",
    "optimizer_type": "optimizer",
    "loss_type": "loss_type",
    "huber_c": "huber_c",
    "huber_schedule": "huber_schedule",
    "debiased_estimation_loss": "debiased_estimation",
    "multires_noise_iterations": "multires_noise_iterations",
    "multires_noise_discount": "multires_noise_discount",
    "network_weights": "init_lora",
    "reg_data_dir": "reg_folder",
    "class_data_dir": "reg_folder",
    "class_prompt": "class_prompt",
    "prior_loss_weight": "prior_loss_weight",
    "masked_loss": "masked_loss",
    "text_encoder_lr": "text_encoder_lr",
    "output_dir": "output_dir",
    "output_name": "name",
    "save_steps": "save_every",
    "save_every_n_steps": "save_every",
    "resolution": "resolution",
    "seed": "seed",
    "trigger_word": "trigger",
    "preset": "preset",
}


# kohya's and LyCORIS's ways of naming a network type (network_module, algo, dora_wd) → ours
NETWORK_MODULES = {"networks.lora": "lora", "lycoris.kohya": "lora", "lora": "lora", "locon": "locon",
                   "loha": "loha", "lokr": "lokr", "dora": "dora"}


def _network_from_yaml(path: Path, values: dict[str, Any]) -> str | None:
    """Our ``network`` from a lora-scripts/kohya YAML's network_module, lycoris_algo/algo and
    dora_wd (LyCORIS's DoRA switch); None when it names none."""
    module, algo = values.get("network_module"), values.get("lycoris_algo", values.get("algo"))
    found = None
    for key, value in (("network_module", module), ("algo", algo)):
        if value is None:
            continue
        found = NETWORK_MODULES.get(str(value).strip().lower())
        if found is None:
            raise ConfigError(f"{path}: {key} = {quote(value)}: not a network type loratui trains",
                              "use networks.lora or lycoris.kohya with algo locon, loha or lokr (or dora_wd: true)")
    if found == "lora" and values.get("conv_dim"):
        found = "locon"  # kohya's LoRA and LyCORIS's "lora" train the convolutions once conv_dim is set
    if values.get("dora_wd") is True:
        if found not in (None, "lora", "locon"):
            raise ConfigError(f"{path}: dora_wd = true with algo {algo}: DoRA is trained as a LoRA",
                              "drop dora_wd, or set algo: lora")
        found = "dora"
    return found


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config (our keys) or a lora-scripts style YAML (mapped to our keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file", "check the --config path")
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as fh:  # a bounded read: a config is a few hundred bytes
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})", "check the --config path") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: over {MAX_CONFIG_BYTES // 1024} KB, far larger than any run config",
                          "pass the run's config file: a few lines of TOML or YAML")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", "save the config as UTF-8") from None
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
        data.pop("resolved", None)  # written by loratui for the reader; derived again on load
        return data
    if suffix in (".yaml", ".yml"):
        return _from_lora_scripts_yaml(path, text)
    raise ConfigError(f"{path}: unknown config format {suffix!r}", "use a .toml or .yaml file")


# A run config is a few hundred bytes; these bounds leave room for hundreds of sample prompts
# and refuse the files that would take minutes and gigabytes (a "billion laughs" YAML whose
# aliases expand 9**9-fold fits in 400 bytes).
MAX_CONFIG_BYTES = 256 * 1024
MAX_YAML_NODES = 100_000


def expanded_size(node: Any, limit: int = 10**9) -> int:
    """How many nodes the YAML node graph ``node`` holds once every alias is expanded (capped
    at ``limit``). Each shared node is counted once and its total reused, so this is linear in
    the graph, however far the aliases would expand."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:  # iterative: a deep document must not be a RecursionError here
        current, children_done = stack.pop()
        key = id(current)
        if key in sizes and not children_done:
            continue
        value = current.value
        children = ([n for pair in value for n in pair] if isinstance(value, list) and value
                     and isinstance(value[0], tuple) else value if isinstance(value, list) else [])
        if children_done:
            sizes[key] = min(limit, 1 + sum(sizes.get(id(c), 0) for c in children))
            continue
        sizes[key] = 0  # in progress: a cycle (an alias to its own parent) counts nothing more
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(node)]


def _from_lora_scripts_yaml(path: Path, text: str) -> dict[str, Any]:
    import yaml

    # libyaml's parser where PyYAML was built with it: 20x faster on a large file
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()  # the node graph: an alias is one shared node here
        if node is not None and (nodes := expanded_size(node)) > MAX_YAML_NODES:
            raise ConfigError(
                f"{path}: the YAML holds {'over ' if nodes >= 10**9 else ''}{nodes:,} values (an alias *name "
                f"counts each time it is used), far more than a run config holds (limit {MAX_YAML_NODES:,})",
                "pass the run's config file; write values out instead of repeating aliases",
            )
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise ConfigError(f"{path}: not valid YAML: {quote(first, 120)[1:-1]}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the YAML must be a mapping of keys to values")
    out: dict[str, Any] = {}
    network = _network_from_yaml(path, {str(k): v for k, v in data.items()})
    if network is not None:
        out["network"] = network
    for key, value in data.items():
        mapped = LORA_SCRIPTS_KEYS.get(str(key))
        if mapped is None:
            raise ConfigError(
                f"{path}: unknown key {quote(key)}", f"known keys: {', '.join(sorted(LORA_SCRIPTS_KEYS))}"
            )
        if mapped == "resolution" and isinstance(value, str):
            # kohya writes "512,512": we train square-area buckets of the first number
            try:
                value = int(value.split(",")[0].strip())
            except ValueError:
                raise ConfigError(f"{path}: resolution = {quote(value)}: must be a number like 512") from None
        if isinstance(value, bool) and mapped in NUMBER_KEYS:  # name the key the user wrote
            raise ConfigError(
                f"{path}: {key} = {str(value).lower()}: must be a number "
                "(YAML reads yes, no, on and off as true/false)"
            )
        if mapped != "network":  # decided above from all its keys together
            out[mapped] = value
    return out


def load_run_config(run_dir: Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The config a run folder was started with (``config.toml``), with optional ``overrides``."""
    from loratui.engine.runs.registry import CONFIG

    path = run_dir / CONFIG
    return build_config(None, file_values=load_config_file(path), file_label=str(path), overrides=overrides)


def dump_toml(config: RunConfig, resolved: dict[str, Any] | None = None) -> str:
    """The config as TOML (None values left out), with an optional ``[resolved]`` table."""
    import tomli_w

    data = {k: v for k, v in config.model_dump().items() if v is not None}
    if resolved:
        data["resolved"] = {k: v for k, v in resolved.items() if v is not None}
    header = "# loratui run config: `loratui train --config config.toml` reproduces this run.\n"
    return header + tomli_w.dumps(data)
