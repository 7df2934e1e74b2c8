"""The event-loop lag harness: follow a run that writes N events a second and measure how late
the UI's event loop wakes up meanwhile (shared by test_ui_lag.py and benchmarks/ui_bench.py)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from loratui.engine.runs.registry import EVENTS, STATE


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class EventWriter(threading.Thread):
    """Writes step events to ``run_dir/events.jsonl`` at ``rate`` a second, like a fast run."""

    def __init__(self, run_dir: Path, rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.rate, self.seconds = run_dir, rate, seconds
        self.total = int(rate * seconds)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STATE).write_text(json.dumps({"status": "running", "pid": os.getpid()}))
        (run_dir / EVENTS).write_text(json.dumps({"event": "run_started", "t": time.time(), "name": "lag",
                                                  "run_dir": str(run_dir), "config": {}, "total_steps": self.total})
                                      + "\n")

    def run(self) -> None:
        start = time.monotonic()
        with open(self.run_dir / EVENTS, "a", encoding="utf-8") as fh:
            for step in range(1, self.total + 1):
                fh.write(json.dumps({"event": "step", "t": time.time(), "step": step, "total_steps": self.total,
                                     "epoch": 1, "loss": 0.1 + (step % 17) / 100, "lr": 1e-4, "it_per_s": self.rate,
                                     "eta_s": (self.total - step) / self.rate, "mem_used": 3 << 30,
                                     "mem_peak": 4 << 30, "mem_total": 24 << 30, "mem_kind": "cuda"}) + "\n")
                fh.flush()
                delay = start + step / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)


async def measure_follow_lag(run_dir: Path, rate: float = 100, seconds: float = 5, interval: float = 0.005,
                             size: tuple[int, int] = (80, 24)) -> dict[str, Any]:
    """Attach the run view to a run writing ``rate`` events/s; the loop lag while it streams."""
    from loratui.app import build_app

    writer = EventWriter(run_dir, rate, seconds)
    app = build_app(start="run", run_dir=run_dir)
    lags: list[float] = []
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        await pilot.pause(0.3)
        started = time.monotonic()
        writer.start()
        while writer.is_alive():
            t0 = time.perf_counter()
            await asyncio.sleep(interval)
            lags.append(max(0.0, time.perf_counter() - t0 - interval))
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 10
        while screen.snapshot.step < writer.total and time.monotonic() < deadline:
            await pilot.pause(0.05)
        result = {
            "events": writer.total, "seconds": elapsed, "rate": rate,
            "lag_p50_ms": 1000 * percentile(lags, 50), "lag_p99_ms": 1000 * percentile(lags, 99),
            "lag_max_ms": 1000 * max(lags, default=0.0), "redraws": screen.redraws,
            "redraws_per_s": screen.redraws / elapsed, "last_step_seen": screen.snapshot.step,
            "loss_points": len(screen.snapshot.smoothed),
        }
    return result
