"""Weights swapped for a block and put back exactly.

Sampling, validation and saving may use other weights than the ones being trained (the EMA
average, schedule-free AdamW's average). Whatever the block does to the parameters, they are
restored bit for bit after it, so a run that samples, validates or saves at a step trains on as
one that did not (which exact resume relies on).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator


@contextlib.contextmanager
def restored(params: Iterable[Any]) -> Iterator[list[Any]]:
    """Keep a copy of ``params``; inside the block they may change; after it, every one holds
    its kept value again (also when the block raises). Yields the parameters as a list."""
    import torch

    params = list(params)
    kept = [p.detach().clone() for p in params]
    try:
        yield params
    finally:
        with torch.no_grad():
            for p, value in zip(params, kept):
                p.copy_(value)
