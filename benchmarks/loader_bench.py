"""How fast training images are read and fitted to their bucket before the VAE encodes them.

Latent caching reads every training image once: open, EXIF transpose, RGB, Lanczos resize to
cover the bucket, centre crop, tensor. With phone photos (12 MP JPEGs) most of that time is
JPEG decoding and resizing pixels the bucket throws away. This measures, per image:

  - full, one by one   loratui before: open_rgb + fit_to_bucket + to_tensor, one at a time
  - full, threaded     the same on a thread pool (Pillow releases the GIL while it decodes
                       and resizes), results in order
  - drafted, one by one  open_rgb(cover=bucket): a JPEG decoded at a reduced DCT scale
                       (Image.draft) to no less than twice the size the fit keeps
  - drafted, threaded  what loratui's latent cache does now (engine/latents.py): read_pixels
                       through read_ahead on a pool of WORKERS threads

and how far the drafted images are from the full decode's: PSNR and max abs difference of the
final bucket-sized uint8 images. The JPEGs (gradients, blotches, shapes, sensor-like noise;
some portrait, natively or by EXIF orientation as phones store them) are written once,
untimed, and are in the page cache when timed: warm-cache figures. Each variant's time is the
median of REPEATS passes over the set, divided by the number of images; the variants take turns.

    .venv/bin/python benchmarks/loader_bench.py [--images 24] [--workers 4] [--size 512]
        [--source 4032x3024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from loratui.engine.data.images import fit_to_bucket, open_rgb, to_tensor
from loratui.engine.data.latents import read_ahead

ORIENTATION = 0x0112
# image i is stored as ORIENTATIONS[i % 6]: (stored portrait?, EXIF orientation)
ORIENTATIONS = [(False, 1), (False, 1), (False, 6), (False, 1), (True, 1), (False, 8)]


# --- the set of images


def synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like RGB image: a smooth gradient, blotches, shapes and sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    slope = rng.uniform(-60, 60, (3, 2)).astype(np.float32)
    pixels = np.empty((height, width, 3), np.float32)
    for c in range(3):
        pixels[..., c] = base[c] + slope[c, 0] * x / width + slope[c, 1] * y / height
    # low-frequency blotches: a coarse random field upsampled smoothly
    coarse = rng.normal(0, 25, (height // 64 + 1, width // 64 + 1, 3))
    blotches = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8), "RGB")
    pixels += np.asarray(blotches.resize((width, height), Image.Resampling.BICUBIC), np.float32) - 128
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(12, 24))):
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=int(rng.integers(4, 40)))
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 30)))
    # fine texture: sensor-like noise, so the JPEG keeps high-frequency detail to decode
    noisy = np.asarray(image, np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def write_images(folder: Path, count: int, source: tuple[int, int]) -> list[Path]:
    """COUNT JPEGs (quality 90) of SOURCE size; some portrait, natively or by EXIF tag."""
    paths = []
    for i in range(count):
        portrait, orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        width, height = source[::-1] if portrait else source
        image = synthetic_photo(width, height, seed=i)
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        path = folder / f"img_{i:03d}.jpg"
        image.save(path, quality=90, exif=exif.tobytes())
        paths.append(path)
    return paths


# --- the ways of loading


def load_full(path: Path, size: tuple[int, int]):
    """loratui before: the whole JPEG decoded, then fitted."""
    return to_tensor(fit_to_bucket(open_rgb(path), size))


def load_drafted(path: Path, size: tuple[int, int]):
    """loratui now (engine/latents.read_pixels): decoded at the smallest scale that keeps 2x."""
    return to_tensor(fit_to_bucket(open_rgb(path, cover=size), size))


def fit_drafted(path: Path, size: tuple[int, int]) -> Image.Image:
    return fit_to_bucket(open_rgb(path, cover=size), size)


# --- timing and quality


def serial(load: Callable, paths: list[Path], size: tuple[int, int], workers: int) -> list:
    """LOAD over PATHS one at a time (WORKERS is ignored)."""
    return [load(path, size) for path in paths]


def threaded(load: Callable, paths: list[Path], size: tuple[int, int], workers: int) -> list:
    """LOAD over PATHS on WORKERS threads, a bounded window ahead, in order (engine/latents.py)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(read_ahead(pool, lambda path: load(path, size), paths, window=2 * workers))


def ms_per_image(variants: list[tuple[str, Callable, Callable]], paths: list[Path],
                 size: tuple[int, int], workers: int, repeats: int) -> dict[str, float]:
    """Each variant's median wall time over REPEATS passes of PATHS, per image, in ms. The
    variants take turns pass by pass, so a neighbour's load on a shared machine falls on all."""
    for _, run, load in variants:  # warm-up: lazy imports, thread start, first allocations
        run(load, paths[:2], size, workers)
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for _ in range(repeats):
        for name, run, load in variants:
            start = time.perf_counter()
            run(load, paths, size, workers)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) / len(paths) * 1000 for name, t in times.items()}


def difference(reference: Image.Image, other: Image.Image) -> tuple[float, int]:
    """(PSNR in dB, max abs pixel difference) of two same-sized uint8 RGB images."""
    a = np.asarray(reference, np.float64)
    b = np.asarray(other, np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
    return psnr, int(np.max(np.abs(a - b)))


def quality(fit: Callable, paths: list[Path], size: tuple[int, int]) -> str:
    """Median and worst PSNR / max abs difference of FIT's images against the full decode's."""
    pairs = [difference(fit_to_bucket(open_rgb(p), size), fit(p, size)) for p in paths]
    psnrs = [psnr for psnr, _ in pairs]
    maxes = [peak for _, peak in pairs]
    return (f"PSNR median {statistics.median(psnrs):.1f} dB, worst {min(psnrs):.1f} dB; "
            f"max abs difference median {statistics.median(maxes):.0f}, worst {max(maxes)} (of 255)")


# --- drawing a micro-batch (what the training loop's prefetch thread does ahead of each step)


def draw_costs(batches: list[int], draws: int) -> list[tuple[int, float]]:
    """Median ms of CPU to draw one micro-batch for SD-1.5 at 512 px (4x64x64 latents, sampled
    from cached posteriors, noise, timesteps, shuffled captions), per batch size."""
    import torch

    from loratui.engine.config import build_config
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.engine.data.latents import sample_latents
    from loratui.engine.planning.run_plan import plan_run
    from loratui.engine.train.step import draw_micro

    out = []
    with tempfile.TemporaryDirectory(prefix="loader_bench_draw_") as tmp:
        dataset = make_demo_dataset(Path(tmp) / "dataset")
        for batch in batches:
            config = build_config(str(dataset), "person", overrides=dict(
                base_model="tiny", resolution=64, batch_size=batch, trigger="zxq", shuffle_tags=True,
                output_dir=tmp))
            plan = plan_run(config)
            cache = {item.index: (torch.randn(4, 64, 64), torch.rand(4, 64, 64)) for item in plan.items}

            def latents_of(indices, gen, plan=plan, cache=cache):
                return sample_latents(plan, indices, cache, None, gen)

            times = []
            for micro in range(draws):
                start = time.perf_counter()
                draw_micro(plan, config, micro, latents_of, 0.18215, 1000)
                times.append(time.perf_counter() - start)
            out.append((batch, statistics.median(times[5:]) * 1000))
    return out


# --- command line


def machine_busy_seconds() -> float:
    """CPU seconds all processes have spent on this (Linux) machine since boot; nan elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def command_line() -> str:
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    return shlex.join([python, *sys.argv])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="number of JPEGs in the set")
    parser.add_argument("--workers", type=int, default=4, help="threads in the pool")
    parser.add_argument("--size", type=int, default=512, help="square training bucket, px")
    parser.add_argument("--source", type=parse_size, default=(4032, 3024), help="JPEG size WxH")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes; the median is kept")
    parser.add_argument("--draws", type=int, default=105, help="micro-batches drawn per batch size")
    args = parser.parse_args()
    size = (args.size, args.size)

    variants = [
        ("full decode, one by one (loratui before)", serial, load_full),
        (f"full decode, threaded ({args.workers} workers)", threaded, load_full),
        ("drafted, one by one", serial, load_drafted),
        (f"drafted, threaded ({args.workers} workers; loratui now)", threaded, load_drafted),
    ]
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        paths = write_images(Path(tmp), args.images, args.source)
        start_wall, start_busy, start_own = time.perf_counter(), machine_busy_seconds(), time.process_time()
        megabytes = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        rows = list(ms_per_image(variants, paths, size, args.workers, args.repeats).items())
        # the machine may be shared: how many cores other processes kept busy while this timed
        others = (machine_busy_seconds() - start_busy - (time.process_time() - start_own)) / (
            time.perf_counter() - start_wall)
        drafted_quality = quality(fit_drafted, paths, size)

    print(f"`{command_line()}`")
    print(f"os.cpu_count() = {os.cpu_count()}, Pillow {Image.__version__}, "
          f"{args.images} JPEGs {args.source[0]}x{args.source[1]} q90 (mean {megabytes:.1f} MB) "
          f"-> {args.size}x{args.size}, median of {args.repeats}; "
          f"other processes kept {others:.1f} cores busy while timing\n")
    print("| variant | ms/image | speed-up |")
    print("|---|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.1f} | {rows[0][1] / ms:.2f}x |")
    print(f"\ndrafted vs full decode: {drafted_quality}")

    import torch

    print(f"\ndrawing one micro-batch for SD-1.5 at 512 px, {torch.get_num_threads()} torch threads, "
          f"median of {args.draws - 5}:\n")
    print("| batch | ms per micro-batch |")
    print("|---|---|")
    for batch, ms in draw_costs([1, 4, 8], args.draws):
        print(f"| {batch} | {ms:.2f} |")


if __name__ == "__main__":
    main()
