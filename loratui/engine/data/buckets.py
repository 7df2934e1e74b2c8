"""Aspect-ratio buckets: train each image near its own shape instead of cropping it square."""

from __future__ import annotations

import math


def make_buckets(resolution: int, enabled: bool = True) -> list[tuple[int, int]]:
    """(width, height) buckets with about ``resolution``² pixels, sides a multiple of the step.

    Sides stay within half and double the resolution (kohya's usual range) and 3:1; the step is 64 px
    for real resolutions (UNet-friendly) and 8 px for the tiny model's small ones.
    """
    if not enabled:
        return [(resolution, resolution)]
    step = 64 if resolution >= 256 else 8
    area = resolution * resolution
    buckets = {(resolution, resolution)}
    width = resolution // 2 // step * step or step
    while width <= resolution * 2:
        height = area // width // step * step
        in_range = resolution // 2 <= height <= resolution * 2 and width >= resolution // 2
        if in_range and max(width, height) <= 3 * min(width, height):  # past 3:1 is mostly crop
            buckets.add((width, height))
            buckets.add((height, width))
        width += step
    return sorted(buckets)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to ``width/height`` (in log space)."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - aspect), -b[0] * b[1]))
