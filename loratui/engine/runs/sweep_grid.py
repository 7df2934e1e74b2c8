"""A sweep's samples in one picture: a row per run, a column per sample prompt.

Each cell is the run's last sample of that prompt (``RUN_DIR/samples/stepNNNNNN-K.png``, the
highest step), pasted unchanged when the runs share a resolution; rows are labelled with the
swept values that vary (and which run is best), columns with the prompts. Pillow only, laid out
as the XYZ plot of ``loratui sample`` is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loratui.engine import atomic
from loratui.engine.errors import RunError
from loratui.engine.runs.queue import Entry

SAMPLE_FILE = re.compile(r"^step(?P<step>\d{6,})-(?P<prompt>\d+)\.png$")


def last_samples(run_dir: Path) -> dict[int, Path]:
    """Each prompt's newest sample in ``run_dir/samples``, by prompt number (empty: none)."""
    newest: dict[int, tuple[int, Path]] = {}
    folder = run_dir / "samples"
    if not folder.is_dir():
        return {}
    for path in folder.iterdir():
        match = SAMPLE_FILE.match(path.name)
        if match:
            step, prompt = int(match["step"]), int(match["prompt"])
            if prompt not in newest or step > newest[prompt][0]:
                newest[prompt] = (step, path)
    return {prompt: path for prompt, (_, path) in sorted(newest.items())}


def default_grid_path(folder: Path, sweep: int) -> Path:
    """Where ``queue compare`` writes sweep ``sweep``'s grid: beside the queue file."""
    return folder / f"sweep-{sweep}.png"


def write_sweep_grid(comparison: dict[str, Any], entries: list[Entry], out: Path) -> Path:
    """The grid of a finished sweep (``comparison`` from ``sweep.compare``) written to ``out``
    as a PNG (atomically); a RunError when the sweep has not ended or made no samples."""
    from PIL import Image

    from loratui.engine.validate.xyz import compose_grid, grid_layout

    sweep, rows = comparison["sweep"], comparison["runs"]
    if not comparison["ended"]:
        waiting = sum(1 for r in rows if r["status"] not in ("done", "failed", "stopped"))
        raise RunError(f"sweep {sweep} has not ended: {waiting} of its runs are queued or training",
                       "the grid is made once every run has ended: `loratui queue run`, then compare again")
    samples = [last_samples(Path(r["run_dir"])) if r["run_dir"] else {} for r in rows]
    count = max((max(s) + 1 for s in samples if s), default=0)
    if not count:
        raise RunError(f"sweep {sweep}: its runs made no samples (sampling was off)",
                       "queue the sweep again without --sample-every 0 to compare samples")
    images = [[_open(s.get(k)) for k in range(count)] for s in samples]
    first = next(im for row in images for im in row if im is not None)
    images = [[im if im is None or im.size == first.size else im.resize(first.size, Image.LANCZOS) for im in row]
              for row in images]
    row_labels = [_row_label(r, comparison["varying"]) for r in rows]
    prompts = _prompts(entries, count)
    font_size = grid_layout(row_labels, prompts, first.width, first.height).font_size
    most = max(6, int(first.width / (0.6 * font_size)))  # about the characters a cell's width holds
    col_labels = [p if len(p) <= most else p[: most - 3] + "..." for p in prompts]
    grid = compose_grid(images, row_labels, col_labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out) as tmp:
        grid.save(tmp, format="PNG")
    return out


def _open(path: Path | None) -> Any:
    from PIL import Image

    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError:  # a sample cut short (a full disk): its cell stays empty
        return None


def _row_label(row: dict[str, Any], varying: list[str]) -> str:
    label = " ".join(f"{key}={row['values'].get(key, '?')}" for key in varying) or row["name"]
    if row["best"]:
        return f"{label} (best)"
    return label if row["status"] == "done" else f"{label} ({row['status']})"


def _prompts(entries: list[Entry], count: int) -> list[str]:
    """The column labels: the runs' sample prompts when they share them, else "prompt K"."""
    from loratui.engine.planning.presets import PRESETS
    from loratui.engine.validate.sampling import default_prompts

    seen = set()
    for entry in entries:
        config = entry.config
        prompts = config.get("sample_prompts") or []
        trigger = config.get("trigger")
        if not prompts and trigger and config.get("preset") in PRESETS:
            prompts = default_prompts(PRESETS[config["preset"]].sample_prompts, trigger, "")
        seen.add(tuple(prompts))
    shared = list(seen.pop()) if len(seen) == 1 else []
    return [shared[k] if k < len(shared) else f"prompt {k + 1}" for k in range(count)]
