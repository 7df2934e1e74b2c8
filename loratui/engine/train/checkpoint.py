"""Resume checkpoints: everything ``--resume`` needs, written so a torn one is never picked.

A checkpoint is a folder ``checkpoints/stepNNNNNN/`` built under a temp name, every file
fsynced, then renamed into place; only after that does ``checkpoints/latest.json`` (written
atomically) point at it. A crash at any moment leaves the previous pointer and folder whole.
Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from loratui.engine import atomic, faults
from loratui.engine.errors import RunError

LATEST = "latest.json"
STEP_DIR = re.compile(r"step\d{6}")  # a finished folder; staging ones are ".tmp-stepNNNNNN-PID"
FILES = ("trainer.json", "adapters.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt")
EMA_FILE = "ema.safetensors"  # only in the checkpoints of an --ema run


@dataclass
class TrainerState:
    """The loop's own counters and the objects whose state must survive a restart."""

    step: int
    micro_index: int
    adapters: dict[str, Any]  # "unet.…"/"text_encoder.…" peft keys → tensors
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None
    ema: dict[str, Any] | None = None  # --ema: the average's WeightAverage.state_dict() (train/ema.py)


def save_checkpoint(folder: Path, state: TrainerState, keep: int) -> Path:
    """Write ``state`` as ``folder/stepNNNNNN`` atomically, point latest.json at it, prune old ones."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = f"step{state.step:06d}"
    staging = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        adapters = {k: v.contiguous() for k, v in state.adapters.items()}
        _write(staging / "adapters.safetensors", lambda f: save_file(adapters, f))
        faults.maybe_kill(f"save:{state.step}")  # crash tests: a half-written checkpoint
        faults.maybe_disk_full(f"save:{state.step}")
        def save_optimizer(file: Path) -> None:
            faults.maybe_torch_disk_full(f"save:{state.step}")
            torch.save(state.optimizer, file)

        _write(staging / "optimizer.pt", save_optimizer)
        _write(staging / "scheduler.pt", lambda f: torch.save(state.scheduler, f))
        if state.scaler is not None:
            _write(staging / "scaler.pt", lambda f: torch.save(state.scaler, f))
        _write(staging / "rng.pt", lambda f: torch.save(_rng_state(), f))
        if state.ema is not None:
            shadow = {k: v.contiguous() for k, v in state.ema["shadow"].items()}
            _write(staging / EMA_FILE,
                   lambda f: save_file(shadow, f, metadata={"updates": str(state.ema["updates"])}))
        (staging / "trainer.json").write_text(
            json.dumps({"step": state.step, "micro_index": state.micro_index, **(state.extra or {})})
        )
        for child in staging.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        final = folder / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    atomic.write_json(folder / LATEST, {"step": state.step, "dir": name})
    _prune(folder, keep, final)
    return final


def load_latest(folder: Path) -> tuple[TrainerState | None, str]:
    """The checkpoint ``--resume`` continues from, and a note when it is not the one latest.json names.

    latest.json's folder is loaded when it names one that exists (a damaged one is a RunError:
    the user decides). When latest.json is missing or garbage, or names a folder that is gone
    (the hint for a damaged checkpoint is to delete it), the newest ``stepNNNNNN`` folder that
    loads whole is used instead, and the note says which and why: intact checkpoints are never
    passed over for a restart from step 0. (None, note) when there is none to load.
    """
    why = ""
    try:
        pointer = json.loads((folder / LATEST).read_text())
        named = folder / pointer["dir"]
    except FileNotFoundError:
        why = f"{folder / LATEST} is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"{folder / LATEST} is unreadable ({type(exc).__name__})"
    else:
        if STEP_DIR.fullmatch(named.name) and named.parent == folder and named.is_dir():
            return load_checkpoint(named), ""
        why = f"{folder / LATEST} names {pointer['dir']!r}, which is not there"
    candidates = sorted((p for p in folder.glob("step*") if STEP_DIR.fullmatch(p.name) and p.is_dir()),
                        reverse=True)
    skipped: list[str] = []
    for path in candidates:
        missing = [name for name in FILES if not (path / name).is_file()]
        if missing:
            skipped.append(f"{path.name} (no {missing[0]})")
            continue
        try:
            state = load_checkpoint(path)
        except RunError as exc:
            skipped.append(f"{path.name} ({exc.message.removeprefix(str(path)).lstrip(': /')})")
            continue
        passed = f"; skipped {', '.join(skipped)}" if skipped else ""
        return state, f"resuming from {path} (step {state.step}): {why}{passed}"
    if candidates:
        return None, (f"no intact checkpoint in {folder} ({why}; skipped {', '.join(skipped)}); "
                      "starting again from step 0")
    return None, ""


# torch reports a failed write in these words, without an errno. Measured on a full tmpfs:
# "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598" (its zip writer got a
# short write) and, for a file that fits no byte, "basic_ios::clear: iostream error"
_TORCH_WRITE_FAILED = re.compile(
    r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed writing|file write failed|basic_ios::clear"
)
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # safetensors (Rust): "I/O error: … (os error 28)"


def _write(file: Path, write: Callable[[Path], None]) -> None:
    """``write(file)``; torch's and safetensors' write failures become the OSError they stand for.

    They raise RuntimeError / SafetensorError where Python raises OSError, so a full disk
    would be an "internal error" instead of the clear, resumable one the run gives for OSError.
    Any other error is raised as it is.
    """
    try:
        write(file)
    except OSError:
        raise
    except Exception as exc:
        failure = write_failure(exc, file)
        if failure is None:
            raise
        raise failure from exc


def write_failure(exc: BaseException, file: Path) -> OSError | None:
    """The OSError a torch/safetensors write error stands for, or None when it is not one."""
    text = str(exc)
    if match := _OS_ERROR.search(text):
        code = int(match.group(1))
        return OSError(code, f"writing {file.name} failed: {os.strerror(code)}")
    if isinstance(exc, RuntimeError) and _TORCH_WRITE_FAILED.search(text):
        # a short write: the disk filled (or a quota ran out) part way through the file
        return OSError(errno.ENOSPC, f"writing {file.name} failed: {os.strerror(errno.ENOSPC)} "
                                     "(or a disk quota is used up)")
    return None


def latest_checkpoint(folder: Path) -> Path | None:
    """The folder latest.json names when it holds a checkpoint record, or None."""
    try:
        pointer = json.loads((folder / LATEST).read_text())
        path = folder / pointer["dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return path if (path / "trainer.json").is_file() else None


def load_checkpoint(path: Path) -> TrainerState:
    """Read a checkpoint folder (weights only: nothing in it can run code)."""
    import torch
    from safetensors.torch import load_file

    def weights(name: str) -> Any:
        file = path / name
        try:
            return torch.load(file, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError:
            raise RunError(
                f"{file}: refused: it holds more than plain weights (a pickle that could run code)",
                "delete that checkpoint folder to resume from an earlier one",
            ) from None

    try:
        meta = json.loads((path / "trainer.json").read_text())
        adapters = load_file(path / "adapters.safetensors")
        optimizer = weights("optimizer.pt")
        scheduler = weights("scheduler.pt")
        scaler = weights("scaler.pt") if (path / "scaler.pt").exists() else None
        rng = weights("rng.pt")
        ema = _read_ema(path / EMA_FILE) if (path / EMA_FILE).exists() else None
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: one answer
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"{path}: checkpoint is unreadable ({type(exc).__name__}: {first})",
            "delete that checkpoint folder to resume from an earlier one",
        ) from None
    meta = _trainer_record(path / "trainer.json", meta)
    _set_rng_state(rng)
    extra = {k: v for k, v in meta.items() if k not in ("step", "micro_index")}
    return TrainerState(meta["step"], meta["micro_index"], adapters, optimizer, scheduler, scaler, extra, ema)


def _read_ema(file: Path) -> dict[str, Any]:
    """The EMA of a checkpoint: its tensors, and the update count kept in the file's metadata."""
    from safetensors import safe_open

    with safe_open(str(file), "pt") as fh:
        updates = int((fh.metadata() or {})["updates"])
        shadow = {k: fh.get_tensor(k) for k in fh.keys()}
    return {"updates": updates, "shadow": shadow}


def _trainer_record(file: Path, meta: Any) -> dict[str, Any]:
    """``trainer.json`` as the loop needs it: an object with whole-number step counters."""
    counters = ("step", "micro_index")
    if not isinstance(meta, dict):
        what = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
        problem = f"a JSON {what.get(type(meta), 'null')}, not an object"
    elif not all(isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] >= 0
                 for k in counters):
        problem = "no whole-number step and micro_index"
    else:
        return meta
    raise RunError(
        f"{file}: not a loratui checkpoint record ({problem})",
        "delete that checkpoint folder to resume from an earlier one",
    )


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    out = {
        "torch": torch.get_rng_state(),
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype("int64")), *np_state[2:]],
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(rng: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(rng["torch"])
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), *rest))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _prune(folder: Path, keep: int, newest: Path) -> None:
    done = sorted(p for p in folder.glob("step*") if p.is_dir())
    for old in done[:-keep]:
        if old != newest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
