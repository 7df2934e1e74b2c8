"""Out of GPU memory mid-run: split each micro-batch into more passes and go on.

The effective batch stays the same (the pieces accumulate their gradients), so a run that
fits after the split trains exactly the steps it would have; only a batch that is already
one image per pass is given up, with what to change.
"""

from __future__ import annotations

import math

from loratui.engine.errors import RunError
from loratui.engine.train.step import chunks


class BatchSplit:
    """How many passes each process splits its rows of a micro-batch into (1 until memory runs out)."""

    def __init__(self, split: int, batch_size: int, world: int) -> None:
        self.split = split
        self.batch_size = batch_size
        self.world = world

    def pieces(self, rows: list[int]) -> list[list[int]]:
        """``rows`` in ``split`` near-equal pieces, in order (fewer when there are fewer rows)."""
        return chunks(rows, self.split)

    def halve(self, step: int, accum: int, run_dir: object) -> str:
        """After an out-of-memory error at ``step``: twice the passes, and the message that says
        so. Raises RunError when a pass is already one image."""
        per_piece = math.ceil(self.batch_size / self.world / self.split)
        if per_piece <= 1:
            raise RunError(
                f"{run_dir}: out of GPU memory even one image at a time",
                "try --gradient-checkpointing, a lower --resolution, or 8-bit AdamW "
                "(pip install bitsandbytes), then loratui train --resume RUN_DIR",
            ) from None
        self.split *= 2
        return (f"out of GPU memory at step {step + 1}: now {math.ceil(per_piece / 2)} image(s) per pass, "
                f"{self.split}× accumulation; the effective batch stays {self.batch_size * accum}")
