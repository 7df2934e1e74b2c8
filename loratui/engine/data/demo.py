"""The demo dataset: a dozen generated, captioned pictures of one made-up subject.

The subject is a red ball with a white band ("zxq ball"): simple enough that the tiny model
learns something visible in a minute, varied enough (backgrounds, positions, sizes, aspect
ratios) to exercise captions, the trigger word and aspect-ratio buckets.
"""

from __future__ import annotations

import random
from pathlib import Path

from loratui.engine import atomic

DEMO_TRIGGER = "zxq"
# A hidden file (every scan skips it) that says "made for the tiny model": its 96-128 px images
# train at the tiny model's 64 px, and `loratui check` judges them at that size.
DEMO_MARKER = ".loratui-demo"
_BACKGROUNDS = [
    ("blue sky", (90, 150, 230), (200, 225, 255)),
    ("green grass", (40, 120, 40), (120, 190, 90)),
    ("sandy beach", (230, 210, 160), (250, 240, 200)),
    ("dark room", (20, 20, 30), (60, 60, 80)),
]
_SIZES = [(96, 96), (128, 96), (96, 128), (112, 112)]


def make_demo_dataset(folder: Path, count: int = 12, seed: int = 0) -> Path:
    """Write ``count`` images with ``.txt`` captions into ``folder`` (kept if already there)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / DEMO_MARKER
    if not marker.exists():
        atomic.write_text(marker, "loratui's demo dataset, made for the tiny model (--base-model tiny, 64 px)\n")
    rng = random.Random(seed)
    for n in range(count):
        image_path = folder / f"demo_{n:02d}.png"
        caption_path = image_path.with_suffix(".txt")
        if image_path.exists() and caption_path.exists():
            continue
        label, top, bottom = _BACKGROUNDS[n % len(_BACKGROUNDS)]
        width, height = _SIZES[n % len(_SIZES)]
        image = Image.new("RGB", (width, height))
        draw = ImageDraw.Draw(image)
        for y in range(height):  # vertical gradient background
            t = y / max(1, height - 1)
            draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
        radius = rng.randint(min(width, height) // 5, min(width, height) // 3)
        cx = rng.randint(radius, width - radius)
        cy = rng.randint(radius, height - radius)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=(210, 30, 30))
        draw.rectangle([cx - radius, cy - radius // 6, cx + radius, cy + radius // 6], fill=(245, 245, 245))
        where = "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else "centre"
        with atomic.atomic_path(image_path) as tmp:
            image.save(tmp, format="PNG")
        atomic.write_text(caption_path, f"{DEMO_TRIGGER}, a red ball, {label}, {where}\n")
    return folder


def is_demo_dataset(folder: Path) -> bool:
    """True for a folder ``make_demo_dataset`` made (its images are for the tiny model)."""
    return (Path(folder) / DEMO_MARKER).is_file()
