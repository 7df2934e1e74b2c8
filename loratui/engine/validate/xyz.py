"""The XYZ-plot check: every checkpoint of a LoRA across strengths, one seed per prompt.

``plan_sample`` works out what to render (cheaply: no torch, so a wrong path is one line at
once), ``render_plan`` renders it with diffusers' own LoRA loading, and ``compose_grid`` lays the
images out as AUTOMATIC1111's XYZ plot does: a row per checkpoint, a column per strength, with
labels in the margins. Strength 0 is the base model; it is rendered once per prompt, with no
adapter loaded at all, and shared by every row.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratui.engine.errors import ConfigError, ModelError, RunError

DEFAULT_STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
DEFAULT_SEED = 42
STEP_FILE = re.compile(r"^(?P<name>.+)-step(?P<step>\d{6,})\.safetensors$")
# A key with one of these in it is LoRA-shaped (kohya, diffusers/peft, LyCORIS spellings).
LORA_KEY_MARKS = ("lora_unet_", "lora_te", "lora_down", "lora_up", "lora.down", "lora.up", "lora_A", "lora_B")
MAX_LABEL_CHARS = 28

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Checkpoint:
    """One LoRA file, a row of the grid."""

    path: Path
    label: str  # "step 400", "final", or the file's stem for a bare LoRA
    key: str  # the label as it appears in file names: "step000400", "final", the stem


@dataclass
class SamplePlan:
    """Everything ``render_plan`` needs; built by ``plan_sample`` without loading a model."""

    base_model: str
    allow_pickle: bool
    width: int
    height: int
    steps: int
    seed: int
    prompts: list[str]
    strengths: list[float]
    checkpoints: list[Checkpoint]
    image_dir: Path
    grid_paths: list[Path]
    prediction_type: str = "auto"  # the run's, so its samples use the schedule it trained on
    zero_terminal_snr: bool | None = None

    def seed_for(self, prompt_index: int) -> int:
        """One seed per prompt: seed, seed+1, ... so every cell of a grid shares its noise."""
        return self.seed + prompt_index

    @property
    def total_renders(self) -> int:
        with_lora = sum(1 for s in self.strengths if s != 0)
        base = 1 if any(s == 0 for s in self.strengths) else 0
        return len(self.prompts) * (base + len(self.checkpoints) * with_lora)


@dataclass(frozen=True)
class Cell:
    """One rendered image and where it sits."""

    prompt_index: int
    prompt: str
    seed: int
    checkpoint: str  # the row label
    strength: float
    path: Path


@dataclass
class SampleResult:
    """What ``render_plan`` wrote: each distinct image once, one grid per prompt."""

    images: list[Path] = field(default_factory=list)
    grids: list[Path] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)


# --- planning ---------------------------------------------------------------------------


def parse_strengths(text: str | None) -> list[float]:
    """``"0,0.5,1"`` → [0.0, 0.5, 1.0] (order kept, repeats dropped); None → the defaults."""
    if text is None or not text.strip():
        return list(DEFAULT_STRENGTHS)
    out: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--strengths: {part!r} is not a number", "use e.g. --strengths 0,0.4,0.7,1") from None
        if not math.isfinite(value) or abs(value) > 4:
            raise ConfigError(f"--strengths: {part} is out of range", "LoRA strengths are between -4 and 4")
        value = value + 0.0  # -0.0 → 0.0: the base column
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError("--strengths: no strengths given", "use e.g. --strengths 0,0.4,0.7,1")
    return out


def strength_label(value: float) -> str:
    """0.6 → '0.6', 1.0 → '1' (the column label and the file-name part)."""
    return f"{value:g}"


def run_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """A run's LoRA files in training order: ``NAME-stepNNNNNN.safetensors``, then ``NAME.safetensors``."""
    steps: list[tuple[int, Checkpoint]] = []
    names: set[str] = set()
    for path in run_dir.glob("*.safetensors"):
        match = STEP_FILE.match(path.name)
        if match:
            step = int(match["step"])
            names.add(match["name"])
            steps.append((step, Checkpoint(path, f"step {step}", f"step{step:06d}")))
    steps.sort(key=lambda pair: pair[0])
    found = [c for _, c in steps]
    # The final file is NAME.safetensors; NAME is the folder's name unless the folder was renamed.
    for name in [run_dir.name, *sorted(names)]:
        final = run_dir / f"{name}.safetensors"
        if final.is_file():
            found.append(Checkpoint(final, "final", "final"))
            break
    return found


def read_lora_header(path: Path) -> dict[str, Any]:
    """The tensor names and metadata of a ``.safetensors`` LoRA, read from its JSON header only.

    Raises ModelError in one line when the file is not a safetensors file or holds no LoRA.
    """
    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"{path}: not a .safetensors file", "loratui sample reads kohya-format .safetensors LoRAs")
    try:
        with open(path, "rb") as fh:
            size = struct.unpack("<Q", fh.read(8))[0]
            if size <= 0 or size > 100_000_000:
                raise ValueError("bad header size")
            header = json.loads(fh.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a mapping")  # noqa: TRY004 -- caught just below
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (struct.error, ValueError, UnicodeDecodeError):
        raise ModelError(f"{path}: not a safetensors file (the header is unreadable)",
                         "pass a LoRA .safetensors file or a loratui run folder") from None
    keys = [k for k in header if k != "__metadata__"]
    if not any(mark in k for k in keys for mark in LORA_KEY_MARKS):
        raise ModelError(f"{path}: not a LoRA (no LoRA weights among its {len(keys)} tensors)",
                         "pass a LoRA file; a full checkpoint goes in --base-model")
    metadata = header.get("__metadata__") or {}
    return {"keys": keys, "metadata": metadata}


def plan_sample(
    target: Path,
    prompts: list[str] | None = None,
    strengths: list[float] | None = None,
    which: str = "all",
    base_model: str | None = None,
    seed: int | None = None,
    steps: int | None = None,
    out: Path | None = None,
    cwd: Path | None = None,
) -> SamplePlan:
    """What to render for ``target``: a loratui run folder, or a LoRA file.

    A run folder gives the base model, resolution, trigger, seed and prompts, and output goes
    to its ``samples/`` (a LoRA file inside a run folder is treated the same way). Any other
    LoRA file needs ``base_model`` and writes under ``CWD/loratui-samples/STEM/``. ``out``
    replaces the grid path (with ``-N`` added per prompt when there are several); an existing
    folder as ``out`` gets the grids inside it, named as in ``samples/`` (``grid-N.png``).
    """
    from loratui.engine.families import default_resolution
    from loratui.engine.validate.sampling import SAMPLE_STEPS

    target = Path(target).expanduser()
    if which not in ("all", "last"):
        raise ConfigError(f"--checkpoints: {which!r} is not allowed", "use all or last")
    if steps is not None and not 1 <= steps <= 1000:
        raise ConfigError(f"--steps: {steps} is out of range", "use 1 to 1000 inference steps")
    if not target.exists():
        raise RunError(f"{target}: no such run folder or LoRA file", "pass a loratui run folder or a .safetensors LoRA")

    if target.is_dir():
        run_dir: Path | None = target
        config = _run_config(target)
        checkpoints = run_checkpoints(target)
        if not checkpoints:
            raise RunError(f"{target}: no LoRA files in this run yet", "wait for the first save, or pass a .safetensors")
        if which == "last":
            checkpoints = checkpoints[-1:]
        for c in checkpoints:
            read_lora_header(c.path)
    else:
        read_lora_header(target)
        parent = target.resolve().parent
        run_dir = parent if (parent / "config.toml").is_file() else None
        config = _run_config(run_dir) if run_dir is not None else None
        checkpoints = [_file_checkpoint(target, run_dir)]

    if config is not None:
        model = base_model or config.base_model
        resolution, allow_pickle, default_seed = config.resolution, config.allow_pickle, config.seed
    elif base_model:
        model = base_model
        resolution = default_resolution(base_model)
        allow_pickle, default_seed = False, DEFAULT_SEED
    else:
        raise ConfigError(f"{target}: a LoRA file needs --base-model",
                          "e.g. --base-model stable-diffusion-v1-5/stable-diffusion-v1-5, or a .safetensors checkpoint")

    trigger = config.trigger if config is not None else None
    if prompts:
        chosen = [_with_trigger(p, trigger) for p in prompts]
    elif config is not None:
        chosen = _run_prompts(config)
    else:
        raise ConfigError(f"{target}: no prompt to render", 'pass --prompt "..." (repeat it for more prompts)')
    if any(not p.strip() for p in chosen):
        raise ConfigError("--prompt: a prompt is empty", 'pass some text, e.g. --prompt "a photo of a dog"')

    if run_dir is not None:
        sample_dir = run_dir / "samples"
    else:
        sample_dir = (cwd or Path.cwd()) / "loratui-samples" / _file_key(target.stem)
    return SamplePlan(
        base_model=model,
        allow_pickle=allow_pickle,
        width=resolution,
        height=resolution,
        steps=steps or SAMPLE_STEPS,
        seed=seed if seed is not None else default_seed,
        prompts=chosen,
        strengths=list(strengths) if strengths else list(DEFAULT_STRENGTHS),
        checkpoints=checkpoints,
        image_dir=(sample_dir / "xyz").resolve(),
        grid_paths=[g.resolve() for g in _grid_paths(sample_dir, out, len(chosen))],
        prediction_type=config.prediction_type if config is not None else "auto",
        zero_terminal_snr=config.zero_terminal_snr if config is not None else None,
    )


def _file_checkpoint(path: Path, run_dir: Path | None) -> Checkpoint:
    """The row for a single LoRA file: named as in its run when it comes from one."""
    if run_dir is not None:
        if path.stem == run_dir.name:
            return Checkpoint(path, "final", "final")
        match = STEP_FILE.match(path.name)
        if match:
            step = int(match["step"])
            return Checkpoint(path, f"step {step}", f"step{step:06d}")
    return Checkpoint(path, _short(path.stem), _file_key(path.stem))


def _grid_paths(sample_dir: Path, out: Path | None, count: int) -> list[Path]:
    if out is None:
        return [sample_dir / f"grid-{i}.png" for i in range(count)]
    out = Path(out).expanduser()
    if out.is_dir():  # `--out shots/` means "put it in there", as cp and mv read a folder
        return [out / f"grid-{i}.png" for i in range(count)]
    if out.suffix.lower() != ".png":
        out = out.with_name(out.name + ".png")
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(count)]


def _run_config(run_dir: Path):
    from loratui.engine.config import load_run_config

    if not (run_dir / "config.toml").is_file():
        raise RunError(f"{run_dir}: not a loratui run folder (no config.toml)", "pass the run folder `train` printed, or a .safetensors LoRA")
    return load_run_config(run_dir)


def _run_prompts(config: Any) -> list[str]:
    """The run's sample prompts, else its preset's around the trigger word."""
    from loratui.engine.planning.presets import PRESETS
    from loratui.engine.validate.sampling import default_prompts

    if config.sample_prompts:
        return [_with_trigger(p, config.trigger) for p in config.sample_prompts]
    return default_prompts(PRESETS[config.preset].sample_prompts, config.trigger, "")


def _with_trigger(prompt: str, trigger: str | None) -> str:
    # replace, not format: a prompt may hold other braces, e.g. A1111 syntax.
    return prompt.replace("{trigger}", trigger) if trigger else prompt


def _short(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 3] + "..."


def _file_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "lora"


# --- rendering --------------------------------------------------------------------------


def render_plan(plan: SamplePlan, on_progress: ProgressFn | None = None) -> SampleResult:
    """Render every cell of ``plan``, save each image as it is made, then one grid per prompt."""
    from loratui.engine.families.models import load_components, resolve_model
    from loratui.engine.validate.sampling import components_pipeline, render, save_png

    report = on_progress or (lambda done, total, what: None)
    total = plan.total_renders
    report(0, total, "loading base model")
    from loratui.engine.train.noise import training_schedule

    comps = load_components(resolve_model(plan.base_model, plan.allow_pickle))
    comps.noise_scheduler, _ = training_schedule(comps.noise_scheduler, comps.spec, plan.prediction_type,
                                                 plan.zero_terminal_snr)
    pipe = components_pipeline(comps)
    _to_device(pipe)

    n_prompts = len(plan.prompts)
    all_rows = range(len(plan.checkpoints))
    images: list[list[list[Any]]] = [[[None] * len(plan.strengths) for _ in all_rows] for _ in range(n_prompts)]
    result = SampleResult()
    done = 0

    def keep(p: int, rows: Iterable[int], strength: float, image: Any, path: Path, what: str) -> None:
        nonlocal done
        save_png(image, path)  # each image as soon as it exists: an interrupted run keeps them
        result.images.append(path)
        col = plan.strengths.index(strength)
        for row in rows:
            images[p][row][col] = image
            result.cells.append(Cell(p, plan.prompts[p], plan.seed_for(p), plan.checkpoints[row].label, strength, path))
        done += 1
        report(done, total, f"{what} @ {strength_label(strength)}")

    size = {"width": plan.width, "height": plan.height, "steps": plan.steps}
    if 0.0 in plan.strengths:  # the base model, before any adapter touches the pipeline
        for p, prompt in enumerate(plan.prompts):
            image = render(pipe, prompt, plan.seed_for(p), **size)
            keep(p, all_rows, 0.0, image, plan.image_dir / f"p{p}-base.png", "base model")

    with_lora = [s for s in plan.strengths if s != 0.0]
    for row, checkpoint in enumerate(plan.checkpoints if with_lora else []):
        adapter = f"loratui_xyz_{row}"
        _load_lora(pipe, checkpoint.path, adapter, plan.base_model)
        try:
            for s in with_lora:
                pipe.set_adapters([adapter], adapter_weights=[s])
                for p, prompt in enumerate(plan.prompts):
                    image = render(pipe, prompt, plan.seed_for(p), **size)
                    name = f"p{p}-{checkpoint.key}-s{strength_label(s)}.png"
                    keep(p, [row], s, image, plan.image_dir / name, checkpoint.label)
        finally:
            pipe.delete_adapters(adapter)

    for p in range(n_prompts):
        grid = compose_grid(
            images[p],
            [c.label for c in plan.checkpoints],
            [strength_label(s) for s in plan.strengths],
            title=f"{plan.prompts[p]}  (seed {plan.seed_for(p)})",
        )
        result.grids.append(save_png(grid, plan.grid_paths[p]))
    return result


def _to_device(pipe: Any) -> None:
    """CUDA in bf16 where it can (fp32's range: SD-1.5's VAE can overflow in fp16), else CPU fp32."""
    import torch

    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        pipe.to("cuda", dtype)


def _load_lora(pipe: Any, path: Path, adapter: str, base_model: str) -> None:
    """diffusers' own LoRA loading (kohya keys included); one line when it does not fit the model."""
    try:
        pipe.load_lora_weights(str(path), adapter_name=adapter)
    except Exception as exc:  # noqa: BLE001 -- diffusers/peft raise many kinds; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load this LoRA into {base_model}: {first[:300]}",
                         "is it a LoRA for this base model's family (SD-1.5, SD-2, SDXL)?") from None
    loaded = pipe.get_list_adapters()
    if not any(adapter in names for names in loaded.values()):
        raise ModelError(f"{path}: none of its weights fit {base_model}",
                         "is it a LoRA for this base model's family (SD-1.5, SD-2, SDXL)?")


# --- the grid ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GridLayout:
    """Where things go in a grid: label margins left and top, then the cells edge to edge."""

    left: int
    top: int
    cell_width: int
    cell_height: int
    rows: int
    cols: int
    font_size: int

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.cols * self.cell_width, self.top + self.rows * self.cell_height

    def cell_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a cell, for pasting or cropping."""
        x = self.left + col * self.cell_width
        y = self.top + row * self.cell_height
        return x, y, x + self.cell_width, y + self.cell_height


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


def grid_layout(row_labels: list[str], col_labels: list[str], cell_width: int, cell_height: int,
                title: str | None = None) -> GridLayout:
    """The layout ``compose_grid`` uses: margins sized to the labels, text scaled with the cells."""
    font_size = max(10, min(cell_width, cell_height) // 12)
    font = _font(font_size)
    pad = max(4, font_size // 2)
    line = _text_size(font, "Ag0.9")[1] + pad
    left = max(_text_size(font, label)[0] for label in row_labels) + 2 * pad
    top = line + pad + (line if title else 0)
    return GridLayout(left, top, cell_width, cell_height, len(row_labels), len(col_labels), font_size)


def compose_grid(images: list[list[Any]], row_labels: list[str], col_labels: list[str],
                 title: str | None = None) -> Any:
    """The XYZ plot: ``images[row][col]`` edge to edge, row labels left, column labels on top."""
    from PIL import Image, ImageDraw

    first = next(im for row in images for im in row if im is not None)
    layout = grid_layout(row_labels, col_labels, first.width, first.height, title)
    font = _font(layout.font_size)
    pad = max(4, layout.font_size // 2)
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((pad, pad), _fit(font, title, layout.size[0] - 2 * pad), fill="black", font=font)
    label_y = layout.top - pad - _text_size(font, "Ag0.9")[1]
    for col, label in enumerate(col_labels):
        x0, _, x1, _ = layout.cell_box(0, col)
        width = _text_size(font, label)[0]
        draw.text((x0 + (x1 - x0 - width) // 2, label_y), label, fill="black", font=font)
    for row, label in enumerate(row_labels):
        _, y0, _, y1 = layout.cell_box(row, 0)
        height = _text_size(font, label)[1]
        draw.text((pad, y0 + (y1 - y0 - height) // 2), label, fill="black", font=font)
        for col, image in enumerate(images[row]):
            if image is not None:
                grid.paste(image.convert("RGB"), layout.cell_box(row, col)[:2])
    return grid


def _fit(font: Any, text: str, width: int) -> str:
    """``text`` cut with '...' to fit ``width`` pixels."""
    if _text_size(font, text)[0] <= width:
        return text
    while text and _text_size(font, text + "...")[0] > width:
        text = text[:-1]
    return text + "..."

