"""How long a run will take on this GPU or CPU: its FLOPs over the speed this device reaches.

A run's work is counted, not guessed: the measured model (``engine/footprint.py``) gives the
FLOPs of one training pass at the run's batch and resolution. The speed is the one this device
reached in earlier runs (each run records its achieved FLOP/s), and until there is one, an
assumed share of the GPU's data-sheet peak, or a conservative figure per CPU thread. A measured
speed carries across models and resolutions because it is kept as FLOP/s, not as steps per
second. A CPU is keyed by its model name and thread count ("cpu:AMD EPYC 2 threads"); the tiny
model's speed is kept apart (" tiny"): its passes are so small that per-call overhead, not
arithmetic, sets their pace, so its FLOP/s says nothing about a real model on the same CPU.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import dataclass

from loratui.engine import atomic
from loratui.engine.paths import cache_dir

# Dense (no sparsity) bf16/fp16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
# First match on the device name wins, so the more specific names come first.
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 80GB HBM3", 989.0),  # how an H100 SXM names itself
    ("H100 SXM", 989.0),
    ("H100 NVL", 835.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 4090", 165.0),
    ("RTX 3090", 71.0),
    ("T4", 65.0),
)
# Until a run on this GPU has measured it: the share of peak a LoRA step reaches is assumed.
ASSUMED_MFU = 0.3
# Until a run on this CPU has measured it, FLOP/s per thread in fp32: a real UNet's convolutions
# (a modern core peaks near 100 GFLOP/s; a loaded, shared one reaches a fraction), and the tiny
# model's passes, which overhead dominates: 40 steps at batch 4 reached 1.4 GFLOP/s on 2 threads
# of the development machine (load 1); half that per thread leaves room for a busy machine (a run
# under load 6 reached 74 MFLOP/s, which the first run's measurement then replaces).
CPU_FLOPS_PER_THREAD = 10e9
TINY_CPU_FLOPS_PER_THREAD = 350e6
SPEED_FILE = "speeds.json"
KEEP = 5  # the last runs per GPU and precision; the median of them is used


@dataclass(frozen=True)
class RunTime:
    seconds: float
    measured: bool  # from this GPU's earlier runs (else from its peak and ASSUMED_MFU)


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16/fp16 peak of a GPU by its name, or None when it is not in the table."""
    for key, peak in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return peak
    return None


def gpu_name(device) -> str:
    """The CUDA device's name ("NVIDIA H100 80GB HBM3"); empty for any other device."""
    import torch

    return torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else ""


def cpu_key(threads: int, tiny: bool = False) -> str:
    """The key a CPU's speed is kept under: "cpu:<model name> <threads> threads" (+ " tiny")."""
    return f"cpu:{cpu_model()} {threads} threads" + (" tiny" if tiny else "")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def record_speed(gpu: str, precision: str, flop_per_s: float) -> None:
    """Remember what a run reached on ``gpu`` (a bad or full cache only costs the record)."""
    if gpu:
        _remember(_key(gpu, precision), flop_per_s)


def measured_speed(gpu: str, precision: str) -> float | None:
    """FLOP/s earlier runs reached on ``gpu`` in ``precision`` (their median), or None."""
    return _median(_key(gpu, precision))


def record_setup(device: str, base_model: str, seconds: float) -> None:
    """Remember how long a run of ``base_model`` on ``device`` (a GPU's name or a ``cpu_key``)
    took from its start to its first step: loading the model, caching latents, encoding
    captions. For a small run that is most of its time, which FLOPs alone leave out."""
    if device:
        _remember(_setup_key(device, base_model), seconds)


def measured_setup(device: str, base_model: str) -> float | None:
    """Seconds earlier runs of ``base_model`` on ``device`` took to their first step (median)."""
    return _median(_setup_key(device, base_model))


def _remember(key: str, value: float) -> None:
    if not value > 0:
        return
    book = _read()
    book[key] = ([*book.get(key, []), value])[-KEEP:]
    try:
        atomic.write_json(cache_dir() / SPEED_FILE, book)
    except OSError:
        pass


def _median(key: str) -> float | None:
    values = [v for v in _read().get(key, []) if isinstance(v, (int, float)) and v > 0]
    return statistics.median(values) if values else None


def _setup_key(device: str, base_model: str) -> str:
    """A model as given (a hub id, a built-in name) or, for a file or folder, its full path."""
    from pathlib import Path

    model = base_model.strip()
    path = Path(model).expanduser()
    if path.exists():
        model = str(path.resolve())
    return f"{device}|setup|{model}"


def run_time(flops_per_step: float, steps: int, gpu: str, precision: str) -> RunTime | None:
    """The time of ``steps`` × ``flops_per_step`` on ``gpu`` (a GPU's name or a ``cpu_key``);
    None for a GPU neither measured nor in the table."""
    measured = measured_speed(gpu, precision)
    if measured is not None:
        return RunTime(flops_per_step * steps / measured, True)
    if gpu.startswith("cpu:"):
        return RunTime(flops_per_step * steps / _assumed_cpu_speed(gpu), False)
    peak = peak_tflops(gpu) if precision in ("bf16", "fp16") else None
    if peak is None:
        return None
    return RunTime(flops_per_step * steps / (peak * 1e12 * ASSUMED_MFU), False)


def _assumed_cpu_speed(key: str) -> float:
    """A conservative FLOP/s for the CPU ``key`` names, from its thread count."""
    parts = key.split()
    try:
        threads = max(1, int(parts[parts.index("threads") - 1]))
    except (ValueError, IndexError):
        threads = 1
    return threads * (TINY_CPU_FLOPS_PER_THREAD if key.endswith(" tiny") else CPU_FLOPS_PER_THREAD)


def _key(gpu: str, precision: str) -> str:
    return f"{gpu}|{precision}"


def _read() -> dict[str, list]:
    try:
        data = json.loads((cache_dir() / SPEED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}
