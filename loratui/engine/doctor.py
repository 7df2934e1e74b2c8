"""`loratui doctor`: what this machine offers for training, and what to fix."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import sys
from typing import Any

from loratui.engine.paths import cache_dir

LIBRARIES = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "textual", "bitsandbytes")


def diagnose() -> dict[str, Any]:
    """{"items": {name: value}, "advice": [lines], "ok": bool}."""
    items: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for lib in LIBRARIES:
        try:
            items[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            items[lib] = "not installed"
    advice: list[str] = []
    ok = True
    try:
        import torch
    except Exception as exc:  # a broken torch install is exactly what doctor is for
        items["torch import"] = f"failed: {exc}"
        advice.append("torch does not import: reinstall it (see pytorch.org for your CUDA version)")
        return {"items": items, "advice": advice, "ok": False}
    items["cuda available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        items["cuda version"] = torch.version.cuda
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            items[f"gpu {i}"] = f"{props.name}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free)"
        items["bf16"] = torch.cuda.is_bf16_supported()
        total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
        if total_gib < 8:
            advice.append("under 8 GiB of GPU memory: use --gradient-checkpointing and --batch-size 1")
        if items["bitsandbytes"] == "not installed":
            advice.append("pip install bitsandbytes for 8-bit AdamW (less GPU memory)")
    else:
        advice.append("no CUDA GPU: real models will train very slowly; `loratui demo` runs on the CPU")
    cache = cache_dir()
    probe = cache if cache.exists() else cache.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    items["cache dir"] = str(cache)
    items["free disk"] = f"{free / 2**30:.1f} GiB"
    if free < 10 * 2**30:
        advice.append("under 10 GiB free disk: base models (2-7 GB) and checkpoints need room")
    return {"items": items, "advice": advice, "ok": ok}
