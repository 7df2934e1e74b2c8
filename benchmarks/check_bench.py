"""`loratui check` and caption-store benchmark on a generated folder of captioned images.

Builds COUNT images (SIZE px JPEGs, each a different block pattern, a few exact and near
duplicates among them) with a .txt caption each, then times, in this process:
  - the header pass   check(pixels=False): listing, headers, captions, CLIP token counts
  - the full pass     check(): the header pass plus decoding every image (blur, exposure, pHash)
  - the caption store CaptionStore(folder): every caption read
and `loratui check --json` end to end as a subprocess (imports included).
The CLIP tokenizer folder is built before timing (a one-off per user). Files were just written,
so they are in the page cache: these are warm-cache figures.

    .venv/bin/python benchmarks/check_bench.py [--count 5000] [--size 512] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(folder: Path, count: int, size: int) -> None:
    """COUNT captioned JPEGs; in every 500, one exact copy and one re-encode (a near duplicate)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if i % 500 == 2:
            shutil.copyfile(folder / f"img_{i - 1:05d}.jpg", path)
        elif i % 500 == 3:
            with Image.open(folder / f"img_{i - 3:05d}.jpg") as original:
                original.save(path, quality=60)
        else:
            blocks = rng.integers(20, 235, size=(12, 12, 3), dtype=np.uint8)
            img = Image.fromarray(blocks, "RGB").resize((size, size), Image.Resampling.NEAREST)
            img.save(path, quality=85)
        path.with_suffix(".txt").write_text(f"sks, a photo of thing {i}, indoors, soft light", encoding="utf-8")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--folder", type=Path, help="reuse or create the folder here (default: a temp dir)")
    args = parser.parse_args()

    from loratui.engine.data.captionstore import CaptionStore
    from loratui.engine.families.clip_tokenizer import clip_tokenizer_dir
    from loratui.engine.data.lint import check

    tmp = None
    folder = args.folder
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="loratui-check-bench-")
        folder = Path(tmp) / "photos"
    try:
        if not folder.exists():
            _, t_build = timed(lambda: build(folder, args.count, args.size))
            print(f"built {args.count} images of {args.size}px in {t_build:.1f} s")
        clip_tokenizer_dir()
        header, t_header = timed(lambda: check(folder, trigger="sks", pixels=False))
        full, t_full = timed(lambda: check(folder, trigger="sks"))
        store, t_store = timed(lambda: CaptionStore(folder))
        env = dict(os.environ)
        cli, t_cli = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", "loratui", "check", str(folder), "--trigger", "sks", "--json"],
                capture_output=True, text=True, env=env,
            )
        )
        cli_summary = json.loads(cli.stdout)["summary"] if cli.stdout else {"error": cli.stderr.strip()}
        print(f"cores: {os.cpu_count()}, images: {full.images}")
        print(f"header pass:   {t_header:6.2f} s  ({len(header.findings)} findings)")
        print(f"full pass:     {t_full:6.2f} s  ({len(full.findings)} findings: {full.codes()})")
        print(f"caption store: {t_store:6.2f} s  ({len(store.entries)} captions)")
        print(f"`loratui check --json` subprocess: {t_cli:6.2f} s  (exit {cli.returncode}, {cli_summary.get('verdict')})")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
