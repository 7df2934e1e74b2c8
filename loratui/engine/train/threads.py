"""How many CPU threads a run computes with, so that a shared machine slows it in proportion.

PyTorch starts one OpenMP thread per core, and each operator waits for all of them at its
end. When other processes hold some of the cores, every operator waits for the thread that
was not scheduled: on the 2-core machine with other work running (load 10-12), a step of the
tiny model took 2.5-3.1 s with two threads and 0.09-0.16 s with one (benchmarks/RESULTS.md).

So a run on the CPU takes the cores that are free when it starts (the 1-minute load average,
less this process's own work), and the tiny model one thread: its operators are too small
for a second thread to pay even on an idle machine. The count is fixed for the whole run and
kept across ``--resume``: a different count changes the floating-point sums, and a resumed run
must continue exactly. ``LORATUI_THREADS`` (or ``OMP_NUM_THREADS``) sets it by hand.
"""

from __future__ import annotations

import os

ENV = "LORATUI_THREADS"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or taskset limits it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose_threads(cores: int, load: float, tiny: bool, processes: int = 1) -> int:
    """The thread count for a run: one for the tiny model; else the cores the other work leaves
    free (``load``, the load average, counts this process as one), shared by ``processes``
    data-parallel processes, at least one."""
    if tiny:
        return 1
    if processes > 1:  # every rank must compute alike: an even share, not each one's view of the load
        return max(1, cores // processes)
    others = max(0.0, load - 1.0)
    return max(1, min(cores, int(cores - others + 0.5)))


def set_run_threads(tiny: bool, processes: int = 1, kept: int | None = None) -> int:
    """Set PyTorch's thread count for this run and return it: ``kept`` (the count a resumed run
    started with), else the user's setting, else ``choose_threads`` from the load now."""
    import torch

    count = kept if isinstance(kept, int) and not isinstance(kept, bool) and kept > 0 else _from_env()
    if count is None:
        count = choose_threads(usable_cores(), os.getloadavg()[0], tiny, processes)
    torch.set_num_threads(count)
    return count


def _from_env() -> int | None:
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None
