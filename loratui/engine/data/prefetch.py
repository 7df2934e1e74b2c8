"""Draw the next micro-batch while the device trains on this one.

A micro-batch is a pure function of its index (``step.draw_micro``), so the next one can be
drawn on a background thread while the current step runs: sampling latents from the cached
posteriors (or reading and encoding the images when latents are not cached), the noise, the
timesteps and the captions, and on CUDA copying them into pinned memory, so that the copy to
the GPU does not block and the GPU never waits for the CPU between steps.

Any other index than the one drawn ahead (a rollback after bad steps) is drawn on the spot,
and the last batch is kept for a retry (after an out-of-memory error), so a run sees exactly
the batches it would see drawing them in order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from loratui.engine.train.step import MicroBatch


class Prefetcher:
    """``get(m)`` returns micro-batch ``m`` and starts drawing ``m + 1`` (below ``end``)."""

    def __init__(self, draw: Callable[[int], MicroBatch], end: int, device: Any, ahead: bool = True) -> None:
        """``ahead=False`` draws each batch when asked (when drawing runs the VAE, which must
        not add its memory to the training pass's on the GPU)."""
        self._draw = draw
        self._end = end if ahead else 0
        self._pin = device.type == "cuda"
        # a new thread starts on CUDA device 0: give it this process's, so pinned memory is
        # tied to it (not a second CUDA context on GPU 0 for every rank)
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="loratui-prefetch",
            initializer=_use_device,
            initargs=(device,),
        )
        self._ahead: tuple[int, Future] | None = None
        self._last: tuple[int, MicroBatch] | None = None

    def get(self, micro: int) -> MicroBatch:
        if self._last is not None and self._last[0] == micro:
            return self._last[1]
        if self._ahead is not None and self._ahead[0] == micro:
            ahead, self._ahead = self._ahead[1], None  # a failed draw is drawn again if asked again
            batch = ahead.result()
        else:
            if self._ahead is not None:  # a jump (rollback): what was drawn ahead is not needed
                stale, self._ahead = self._ahead[1], None
                if not stale.cancel():
                    wait([stale])  # never two draws at once
            batch = self._load(micro)
        self._ahead = (micro + 1, self._pool.submit(self._load, micro + 1)) if micro + 1 < self._end else None
        self._last = (micro, batch)
        return batch

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead[1].cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, micro: int) -> MicroBatch:
        batch = self._draw(micro)
        if self._pin:
            batch.latents = batch.latents.pin_memory()
            batch.noise = batch.noise.pin_memory()
            batch.timesteps = batch.timesteps.pin_memory()
            if batch.sizes is not None:
                batch.sizes = batch.sizes.pin_memory()
        return batch


def to_device(batch: MicroBatch, device: Any) -> MicroBatch:
    """``batch`` with its tensors on ``device`` (an asynchronous copy from pinned memory)."""
    if batch.latents.device == device:
        return batch
    def move(tensor: Any) -> Any:
        return tensor.to(device, non_blocking=True) if tensor is not None else None

    return MicroBatch(batch.indices, move(batch.latents), move(batch.noise), move(batch.timesteps), batch.captions,
                      move(batch.sizes), move(batch.reg), move(batch.weights), move(batch.masks))


def _use_device(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
