"""The order images are trained in: bucketed batches, reshuffled each epoch, reproducible.

The order is a pure function of (seed, epoch), so the data position at any step is known
from the step alone: resuming needs no saved iterator, and a resumed run sees exactly the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from loratui.engine.data.dataset import ImageRecord


@dataclass(frozen=True)
class TrainItem:
    """One image as trained: its record, bucket size and how many times an epoch shows it."""

    index: int
    record: ImageRecord
    bucket: tuple[int, int]
    repeats: int
    size: tuple[int, int] | None = None  # (width, height) upright, from the header
    reg: bool = False  # a regularisation (class) image: no trigger, its loss weighs prior_loss_weight
    mask: str | None = None  # where its loss mask comes from (data/masks.py): a file, "alpha", or none

    def size_conditioning(self) -> tuple[int, int, int, int, int, int]:
        """SDXL's size conditioning: the original (height, width), the crop's (top, left) in the
        resized image, and the target (height, width), as the bucket fit resizes and crops."""
        from loratui.engine.data.images import cover_size

        width, height = self.bucket
        original = self.size or self.bucket
        new_w, new_h = cover_size(original, self.bucket)
        return original[1], original[0], (new_h - height) // 2, (new_w - width) // 2, height, width


class BatchPlan:
    """Batches of item indices; a batch never mixes buckets (its tensors must stack)."""

    def __init__(self, items: list[TrainItem], batch_size: int, seed: int) -> None:
        self.items = items
        self.batch_size = batch_size
        self.seed = seed
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for item in items:
            self.by_bucket.setdefault(item.bucket, []).extend([item.index] * item.repeats)
        self.batches_per_epoch = sum(math.ceil(len(v) / batch_size) for v in self.by_bucket.values())
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def bucket_views(self) -> list[int]:
        """Per bucket, how many item views one epoch has (repeats included)."""
        return [len(v) for v in self.by_bucket.values()]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``, in order."""
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = random.Random(f"loratui-order-{self.seed}-{epoch}")
        batches: list[list[int]] = []
        for bucket in sorted(self.by_bucket):
            views = list(self.by_bucket[bucket])
            rng.shuffle(views)
            batches.extend(views[i : i + self.batch_size] for i in range(0, len(views), self.batch_size))
        rng.shuffle(batches)
        self._epoch_cache = (epoch, batches)
        return batches

    def batch_at(self, micro_index: int) -> tuple[int, list[int]]:
        """(epoch, item indices) of the ``micro_index``-th batch of the whole run."""
        epoch, position = divmod(micro_index, self.batches_per_epoch)
        return epoch, self.epoch_batches(epoch)[position]
