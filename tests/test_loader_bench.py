"""benchmarks/loader_bench.py runs end to end on loratui's current reading code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "loader_bench.py"


def test_small_run_prints_every_variant_and_the_draw_table():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--images", "3", "--source", "800x600", "--size", "64",
         "--workers", "2", "--repeats", "1", "--draws", "7"],
        capture_output=True, text=True, timeout=180, check=True,
    ).stdout
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+)x \|$", out, re.M)
    assert [r[0].split(",")[0] for r in rows] == ["full decode", "full decode", "drafted", "drafted"]
    assert all(float(ms) > 0 for _, ms, _ in rows)
    psnr = float(re.search(r"PSNR median ([\d.]+) dB", out).group(1))
    assert psnr > 40  # drafted decoding keeps the fitted image
    draws = re.findall(r"^\| (\d) \| ([\d.]+) \|$", out, re.M)
    assert [b for b, _ in draws] == ["1", "4", "8"]
