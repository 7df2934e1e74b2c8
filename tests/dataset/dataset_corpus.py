"""Generated image folders for the dataset tests, good and bad (imported by their conftest).

Every image is made here with Pillow and NumPy, seeded, so the corpus is the same on every
machine and nothing is downloaded.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

TRIGGER = "sks"


def pattern(seed: int, size: tuple[int, int] = (512, 512), low: int = 20, high: int = 235) -> Image.Image:
    """A sharp, well-exposed test image: a random block pattern, different for every seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(low, high, size=(12, 12, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize(size, Image.Resampling.NEAREST)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def caption(path: Path, text: str | bytes) -> None:
    target = path.with_suffix(".txt")
    target.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


def good_folder(folder: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` good images with good captions."""
    paths = []
    for i in range(start, start + n):
        p = save(pattern(i), folder / f"good_{i:02d}.png")
        caption(p, f"{TRIGGER}, a photo of thing {i}, indoors")
        paths.append(p)
    return paths


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> None:
    """A PNG whose header claims 1.6 gigapixels but whose data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# path -> the code `check` must report for it (the corpus covers every code in DESIGN.md)
EXPECTED = {
    "text.png": "not_an_image",
    "empty.jpg": "not_an_image",
    "download.webp": "not_an_image",
    "truncated.jpg": "corrupt_image",
    "bomb.png": "decompression_bomb",
    "small.png": "too_small",
    "tiny.png": "too_small",
    "panorama.png": "extreme_aspect_ratio",
    "good_00_copy.png": "duplicate",
    "near_01.jpg": "near_duplicate",
    "blurry.png": "blurry",
    "dark.png": "too_dark",
    "backlit.png": "too_dark",
    "uncaptioned.png": "missing_caption",
    "empty_caption.png": "empty_caption",
    "lonely.txt": "orphan_caption",
    "gone.png": "orphan_caption",
    "latin1.txt": "unreadable_caption",
    "long.png": "caption_too_long",
    "no_trigger.png": "trigger_missing",
    "outside.png": "unsafe_path",
    "linked_dir/": "unsafe_path",
    "../escape.png": "unsafe_path",
    "/etc/hosts.png": "unsafe_path",
    "anim.webp": "animated_image",
    "clip.gif": "ignored_file",
    "bad\\xff.png": "non_utf8_filename",
    "good_02.png": "caption_conflict",
}
# odd but fine: each must open without any error finding
ACCEPTED = ["café 猫.png", "grey16.png", "cmyk.jpg", "palette.png", "alpha.png", "huge.jpg", "10_repeat/good_r.png"]


def build_bad_corpus(root: Path) -> Path:
    """A folder with every kind of problem `check` knows, plus odd files that are fine."""
    folder = root / "bad"
    outside = root / "outside"
    outside.mkdir(parents=True)
    good_folder(folder, 16)
    for name in ACCEPTED:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    seed = 100

    def fine(name: str, img: Image.Image | None = None, **kw) -> Path:
        nonlocal seed
        seed += 1
        p = save(img if img is not None else pattern(seed), folder / name, **kw)
        caption(p, f"{TRIGGER}, {Path(name).stem}")
        return p

    # not images
    (folder / "text.png").write_text("this is not a picture\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "download.webp").write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    # broken or dangerous images
    buf = io.BytesIO()
    pattern(7).save(buf, "JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 6 // 10])
    bomb_png(folder / "bomb.png")
    # geometry
    fine("small.png", pattern(201, (300, 400)))
    fine("tiny.png", pattern(202, (100, 120)))
    fine("panorama.png", pattern(203, (1800, 600)))
    # duplicates
    (folder / "good_00_copy.png").write_bytes((folder / "good_00.png").read_bytes())
    caption(folder / "good_00_copy.png", f"{TRIGGER}, copy")
    fine("near_01.jpg", Image.open(folder / "good_01.png").convert("RGB"), quality=85)
    # quality
    fine("blurry.png", pattern(204).filter(ImageFilter.GaussianBlur(8)))
    fine("dark.png", pattern(205, low=0, high=40))
    backlit = np.asarray(pattern(206), dtype=np.int16).copy()
    backlit[:, :300] = np.clip(backlit[:, :300] // 8, 0, 25)  # the subject in shadow
    backlit[:, 400:] = 250  # a window
    fine("backlit.png", Image.fromarray(backlit.astype(np.uint8)))
    # captions
    save(pattern(207), folder / "uncaptioned.png")
    p = save(pattern(208), folder / "empty_caption.png")
    caption(p, "  \n")
    (folder / "lonely.txt").write_text("sks, a caption for nothing")
    p = save(pattern(209), folder / "latin1.png")
    caption(p, "sks, caf\xe9 au lait".encode("latin-1"))
    p = save(pattern(210), folder / "long.png")
    caption(p, TRIGGER + ", " + ", ".join(f"a very detailed tag number {i}" for i in range(30)))
    p = save(pattern(211), folder / "no_trigger.png")
    caption(p, "a photo of a dog on a sofa")
    (folder / "metadata.csv").write_text(
        'filename,prompt\n'
        '"../escape.png","sks, outside"\n'
        '/etc/hosts.png,"sks, absolute"\n'
        'gone.png,"sks, an image that is not there"\n'
        'good_02.png,"sks, a different caption, with ""quotes"""\n'
    )
    # links out of the folder
    save(pattern(212), outside / "elsewhere.png")
    os.symlink(outside / "elsewhere.png", folder / "outside.png")
    os.symlink(outside, folder / "linked_dir")
    # formats
    frames = [pattern(213 + i) for i in range(3)]
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    caption(folder / "anim.webp", f"{TRIGGER}, animated")
    frames[0].save(folder / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    raw = os.fsencode(str(folder)) + b"/bad\xff.png"
    with open(raw, "wb") as fh:
        pattern(220).save(fh, "PNG")
    with open(raw[:-4] + b".txt", "wb") as fh:
        fh.write(b"sks, bad name")
    # odd but fine
    fine("café 猫.png")
    grey = (np.asarray(pattern(221).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    fine("grey16.png", Image.fromarray(grey))
    fine("cmyk.jpg", pattern(222).convert("CMYK"), quality=92)
    fine("palette.png", pattern(223).convert("P", palette=Image.Palette.ADAPTIVE))
    rgba = pattern(224).convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 200))
    fine("alpha.png", rgba)
    fine("huge.jpg", pattern(225, (4000, 3000)), quality=80)
    fine("10_repeat/good_r.png")
    return folder
