"""Memory readings for the step events: GPU memory on CUDA, process RAM otherwise."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryReading:
    used: int
    peak: int
    total: int
    kind: str  # "cuda" | "ram"


def read_memory(device) -> MemoryReading:
    """Bytes used now, the peak so far, and the total, for ``device`` (a torch.device)."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        return MemoryReading(
            torch.cuda.memory_allocated(device), torch.cuda.max_memory_allocated(device), total, "cuda"
        )
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/statm") as fh:
            used = int(fh.read().split()[1]) * page
    except OSError:
        used = 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    total = page * os.sysconf("SC_PHYS_PAGES")
    return MemoryReading(used, max(peak, used), total, "ram")
