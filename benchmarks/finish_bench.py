"""How long a run takes to end: its last step's event to ``run_finished`` and to the process's exit.

Runs ``loratui train DATASET --base-model tiny-sdxl --steps 12 --resolution 64 --json`` (no
saves or samples between) with an empty ``LORATUI_CACHE_DIR`` each time, the tiny model built
beforehand outside the timing, and stamps the events as they arrive. An empty cache is a user's
first run of a setting: the speed record measures the model's FLOPs then.

    .venv/bin/python benchmarks/finish_bench.py DATASET [--repo CHECKOUT] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path


def one_run(repo: Path, dataset: Path, model: str) -> tuple[float, float]:
    python = str(repo / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LORATUI_CACHE_DIR": str(Path(tmp) / "cache"), "OMP_NUM_THREADS": "1"}
        subprocess.run([python, "-c", f"from loratui.engine.families.tiny import tiny_model_dir; tiny_model_dir({model!r})"],
                       env=env, cwd=repo, check=True, capture_output=True)
        proc = subprocess.Popen(
            [python, "-m", "loratui", "train", str(dataset), "--base-model", model, "--steps", "12", "--resolution", "64",
             "--output", str(Path(tmp) / "out"), "--json", "--sample-every", "0", "--save-every", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=repo)
        last = done = None
        for line in proc.stdout:
            try:
                event = json.loads(line).get("event")
            except (ValueError, AttributeError):
                continue
            if event == "step":
                last = time.monotonic()
            elif event == "run_finished":
                done = time.monotonic()
        proc.wait()
        end = time.monotonic()
    if last is None or done is None:
        raise SystemExit(f"the run in {repo} did not finish (exit {proc.returncode})")
    return done - last, end - last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--model", default="tiny-sdxl")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.repeats):
        finished, exited = one_run(args.repo.resolve(), args.dataset.resolve(), args.model)
        print(f"{args.repo}: last step -> run_finished {finished:.1f} s, -> exit {exited:.1f} s, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
