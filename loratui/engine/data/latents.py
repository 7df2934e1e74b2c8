"""The training images as VAE posteriors: read, fitted to their bucket, encoded once.

Reading a photo (decoding a 12-megapixel JPEG, resizing it to its bucket) costs more than the
VAE pass on a GPU, so images are read on a pool of threads (Pillow releases the GIL while it
decodes and resizes) a bounded window ahead of the VAE, which encodes them in order on the
calling thread. The same threads hash files for the disk cache and load its entries.
"""

from __future__ import annotations

import os
from collections import deque
from contextlib import closing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from loratui.engine.errors import DatasetError
from loratui.engine import faults
from loratui.engine.events import EventBus, PhaseProgress, WarningRaised
from loratui.engine.planning.run_plan import RunPlan

T = TypeVar("T")
R = TypeVar("R")


def reader_count() -> int:
    """Threads that read images: one per core, up to 8 (beyond that the VAE is the limit)."""
    return max(1, min(8, os.cpu_count() or 1))


def read_ahead(pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, run on ``pool`` at most ``window`` items ahead of
    the consumer (so a slow consumer never has the whole data set decoded in memory)."""
    pending: deque[Future] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # stopped early (an error): drop what was read ahead
            future.cancel()


def read_pixels(item) -> Any:
    """The item's image, upright, RGB, fitted to its bucket: a (3, H, W) tensor in [-1, 1]."""
    from loratui.engine.data.images import fit_to_bucket, open_rgb, to_tensor

    return to_tensor(fit_to_bucket(open_rgb(item.record.path, cover=item.bucket), item.bucket))


def encode_pixels(vae, pixels, device) -> tuple[Any, Any]:
    """The VAE posterior (mean, std) of one image, on the CPU."""
    import torch

    with torch.no_grad():
        dist = vae.encode(pixels.unsqueeze(0).to(device, dtype=torch.float32)).latent_dist
    return dist.mean[0].cpu(), dist.std[0].cpu()


def encode_item(vae, item, device) -> tuple[Any, Any]:
    return encode_pixels(vae, read_pixels(item), device)


def cache_latents(plan: RunPlan, vae, device, bus: EventBus, use_disk: bool,
                  readers: int | None = None) -> dict[int, tuple[Any, Any]]:
    """Every training image's VAE posterior, from the disk cache where it has them."""
    from loratui.engine.data.latent_cache import LatentDiskCache, vae_fingerprint

    disk = LatentDiskCache(vae_fingerprint(vae)) if use_disk else None

    def look_up(item) -> tuple[Any, Any, Any]:
        """(disk entry, cached posterior or None, pixels to encode, or the DatasetError that
        reading them raised: an image whose header was fine but whose data is not)"""
        entry = disk.entry(item.record.path, item.bucket) if disk else None
        hit = disk.read(entry) if disk else None
        return entry, hit, (readable_pixels(item) if hit is None else None)

    cache: dict[int, tuple[Any, Any]] = {}
    unreadable: dict[int, str] = {}
    total = len(plan.items)
    every = max(1, total // 50)
    readers = readers or reader_count()
    bus.emit(PhaseProgress("caching latents", 0, total))
    with ThreadPoolExecutor(readers, thread_name_prefix="loratui-read") as pool, \
            closing(read_ahead(pool, look_up, plan.items, window=2 * readers)) as looked_up:
        for n, (item, (entry, hit, pixels)) in enumerate(zip(plan.items, looked_up), 1):
            if isinstance(pixels, DatasetError):
                unreadable[item.index] = pixels.message.removeprefix(f"{item.record.path}: ")
            elif hit is None:
                hit = encode_pixels(vae, pixels, device)
                if disk:
                    disk.write(entry, *hit)
            if hit is not None:
                cache[item.index] = hit
            faults.maybe_slow("cache")
            if n % every == 0 or n == total:
                bus.emit(PhaseProgress("caching latents", n, total))
        held_out = [item for item in plan.validation_items if isinstance(readable_pixels(item), DatasetError)]
    if unreadable or held_out:
        cache = drop_unreadable(plan, cache, unreadable, {i.index for i in held_out}, bus)
    return cache


def readable_pixels(item) -> Any:
    """``read_pixels(item)``, or the DatasetError that says why the image cannot be read."""
    try:
        return read_pixels(item)
    except DatasetError as exc:
        return exc


def drop_unreadable(plan: RunPlan, cache: dict[int, Any], unreadable: dict[int, str],
                    held_out: set[int], bus: EventBus, found: str = "while caching latents") -> dict[int, Any]:
    """Take the images that could not be decoded (a truncated JPEG: its header is whole, so
    planning kept it) out of ``plan``, as planning skips the ones whose header is broken: each
    is a warning naming it, and the run goes on with the others. Items are numbered again and
    the batches rebuilt; the same images fail on ``--resume``, so it sees the same order."""
    from dataclasses import replace

    from loratui.engine.data.batches import BatchPlan

    named = {item.index: item.record.rel for item in plan.items}
    for index, message in unreadable.items():
        note = f"skipped {named[index]}: {message}; found {found}, not trained"
        plan.warnings.append(note)
        bus.emit(WarningRaised(note))
    kept = [item for item in plan.items if item.index not in unreadable]
    if not kept:
        raise DatasetError(f"{plan.dataset.folder}: none of the images can be read", "run `loratui check` on it")
    renumbered = {item.index: n for n, item in enumerate(kept)}
    plan.items = [replace(item, index=renumbered[item.index]) for item in kept]
    plan.batches = BatchPlan(plan.items, plan.batches.batch_size, plan.batches.seed)
    for item in plan.validation_items:
        if item.index in held_out:
            note = f"skipped {item.record.rel}: cannot read this image; held back for validation, not used"
            plan.warnings.append(note)
            bus.emit(WarningRaised(note))
    plan.validation_items = [replace(item, index=n) for n, item in
                             enumerate(i for i in plan.validation_items if i.index not in held_out)]
    return {renumbered[index]: value for index, value in cache.items()}


def sample_latents(plan: RunPlan, indices: list[int], cache: dict, vae, gen) -> Any:
    """A latent sample of each image (mean + std × noise from ``gen``), encoding any not cached."""
    import torch

    out = []
    for i in indices:
        mean, std = cache[i] if i in cache else encode_item(vae, plan.items[i], next(vae.parameters()).device)
        out.append(mean + std * torch.randn(mean.shape, generator=gen))
    return torch.stack(out)
