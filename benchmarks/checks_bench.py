"""What samples and validation cost in the demo: wall time, and the share of it spent in the
sampling and validating phases, for one or more source trees, interleaved.

    LORATUI_CACHE_DIR=/tmp/ltcache .venv/bin/python benchmarks/checks_bench.py --repeats 3 \
        --tree before=/tmp/base --tree after=.

Each run is ``loratui demo --headless`` in its own process with that tree first on the path;
the phases are timed from the run's events.jsonl (every event carries its time), the load
average is printed beside each run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def phase_seconds(events: list[dict]) -> dict[str, float]:
    """Seconds spent in each sampling / validating phase, from its start (done 0) to its end."""
    spent = {"sampling": 0.0, "validating": 0.0}
    started: dict[str, float] = {}
    for e in events:
        if e.get("event") != "phase" or e.get("phase") not in spent:
            continue
        if e["done"] == 0:
            started[e["phase"]] = e["t"]
        elif e["done"] == e["total"] and e["phase"] in started:
            spent[e["phase"]] += e["t"] - started.pop(e["phase"])
    return spent


def run_once(tree: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}  # cwd is not the tree: -m puts it first
        load = os.getloadavg()[0]
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "loratui", "demo", "--headless", "--steps", str(steps),
                        "--output", out], env=env, cwd=out, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - tic
        events = [json.loads(line) for line in (Path(out) / "demo" / "events.jsonl").read_text().splitlines()]
    run = next(e["t"] for e in events if e["event"] == "run_started")
    end = next(e["t"] for e in events if e["event"] == "run_finished")
    spent = phase_seconds(events)
    passes = {k: sum(1 for e in events if e["event"] == "phase" and e["phase"] == k and e["done"] == 0) for k in spent}
    return {"wall": wall, "run": end - run, "load": load, **spent,
            "passes": f"{passes['sampling']}s/{passes['validating']}v"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a loratui source tree")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree]
    results: dict[str, list[dict]] = {name: [] for name, _ in trees}
    for r in range(args.repeats):
        for name, tree in trees:
            res = run_once(tree, args.steps)
            results[name].append(res)
            checks = res["sampling"] + res["validating"]
            print(f"{name} #{r + 1}: wall {res['wall']:.1f} s, run {res['run']:.1f} s, sampling {res['sampling']:.1f} s, "
                  f"validating {res['validating']:.1f} s ({100 * checks / res['run']:.0f}% of the run, "
                  f"{res['passes']}), load {res['load']:.2f}", flush=True)
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "run", "sampling", "validating", "load")}
        share = statistics.median(100 * (r["sampling"] + r["validating"]) / r["run"] for r in rows)
        print(f"{name}: median wall {med['wall']:.1f} s, run {med['run']:.1f} s, sampling {med['sampling']:.1f} s, "
              f"validating {med['validating']:.1f} s, checks {share:.0f}% of the run; load {med['load']:.2f}")


if __name__ == "__main__":
    main()
