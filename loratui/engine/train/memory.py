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
    try:
        used = int(os.pread(_statm(), 128, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        used = 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return MemoryReading(used, max(peak, used), _TOTAL, "ram")


# Read every step: /proc/self/statm kept open (a read is 1 µs, an open and read 15 µs), per
# process (a forked child must not read its parent's /proc/self)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TOTAL = _PAGE * os.sysconf("SC_PHYS_PAGES")
_kept: tuple[int, int] | None = None  # (pid, fd)


def _statm() -> int:
    global _kept
    if _kept is None or _kept[0] != os.getpid():
        _kept = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY))
    return _kept[1]
