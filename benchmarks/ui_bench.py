"""The wizard's benchmark: first paint, caption-review keystroke latency on 2,000 images, and
event-loop lag while following a run that writes 100 events a second.

    LORATUI_CACHE_DIR=/tmp/lt-cache-ui .venv/bin/python benchmarks/ui_bench.py [--json]
        [--only paint|review|lag|check|exit ...] [--load N] [--profile FILE]

``--only review`` runs the caption review's key-to-paint part alone (about 15 s); ``--load N``
adds N busy processes to every part that runs; ``--profile FILE`` writes a cProfile of the keys.
``check``: the event loop's lag while the folder step's full check runs; ``exit``: how long the
caption review takes to return after ``exit()``.

Goals (issue 4): first paint < 1 s, review latency < 50 ms, lag p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "ui"))  # the lag harness, shared with the tests
sys.path.insert(0, str(ROOT))


def make_folder(folder: Path, count: int) -> Path:
    """``count`` small captioned PNGs (the review's speed does not depend on pixel count)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for n in range(count):
        Image.new("RGB", (96, 96), (n * 7 % 256, n * 13 % 256, n * 29 % 256)).save(folder / f"img_{n:05d}.png")
        (folder / f"img_{n:05d}.txt").write_text(f"zxq, a test picture, number {n}, colour {n % 11}")
    return folder


def first_paint(args: list[str], ready: tuple[str, ...], runs: int = 3) -> dict:
    """``loratui ARGS`` in a real terminal (tmux, 80×24), from the command to the first frame
    that shows every string in ``ready``: Python start-up and imports included."""
    if shutil.which("tmux") is None:
        return {"skipped": "no tmux"}
    times = []
    for n in range(runs):
        socket = f"loratui-bench-{os.getpid()}-{args[0]}-{n}"  # a server per run: no exit races
        cmd = " ".join(map(shlex.quote, [sys.executable, "-m", "loratui", *args]))
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items() if k.startswith("LORATUI_"))
        start = time.perf_counter()
        subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", f"b{n}", "-x", "80",
                        "-y", "24", f"env {env} {cmd}; sleep 30"], check=True)  # the pane outlives a quick exit
        while True:
            screen = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", f"b{n}"],
                                    capture_output=True, text=True).stdout
            if all(text in screen for text in ready):
                times.append(time.perf_counter() - start)
                break
            if time.perf_counter() - start > 30:
                times.append(float("nan"))
                break
            time.sleep(0.005)
        subprocess.run(["tmux", "-L", socket, "kill-server"], check=False, capture_output=True)
    return {"runs_s": times, "median_s": statistics.median(times)}


def first_paints(small: Path, run_dir: Path) -> dict:
    """The three ways in: the wizard on the demo, caption review, and attach to a run."""
    return {
        "demo": first_paint(["demo"], ("1 Folder", "Next")),
        "review": first_paint(["review", str(small)], ("2 Captions", "e Edit")),
        "attach": first_paint(["attach", str(run_dir)], ("4 Train", "Help")),
    }


async def check_lag(folder: Path, interval: float = 0.005) -> dict:
    """The folder step's full check (ctrl+n) on ``folder``: how late the UI's event loop wakes
    (every ``interval`` s) while the pixel pass runs, from the key to the check's answer."""
    from loratui.app import build_app

    app = build_app(folder, defaults={"resolution": 64})
    lags: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        while screen.summary is None or screen.summary.folder != folder:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        start = time.perf_counter()
        await pilot.press("ctrl+n")
        while app.screen is screen and (screen._checking or screen.summary is None
                                        or not screen.summary.report.pixels_checked):
            t0 = time.perf_counter()
            await asyncio.sleep(interval)
            lags.append(max(0.0, time.perf_counter() - t0 - interval))
        seconds = time.perf_counter() - start
    from ui_lag import percentile

    return {"images": len(list(folder.glob("*.png"))), "check_s": seconds, "samples": len(lags),
            "lag_p50_ms": 1000 * percentile(lags, 50), "lag_p99_ms": 1000 * percentile(lags, 99),
            "lag_max_ms": 1000 * max(lags, default=0.0)}


def exit_time(folder: Path) -> dict:
    """The caption review on ``folder``, quit as soon as its first caption shows: the seconds
    from ``exit()`` until ``asyncio.run`` has returned, as ``app.run()`` does: it waits for the
    thread workers still running (asyncio shuts its default executor down)."""
    result = asyncio.run(_quit_review(folder))
    result["exit_s"] = time.perf_counter() - result.pop("exit_at")
    return result


async def _quit_review(folder: Path) -> dict:
    from loratui.app import build_app

    app = build_app(folder, start="captions", defaults={"resolution": 64})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        while screen.current is None:
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        running = sorted(w.name for w in app.workers if not w.is_finished)
        start = time.perf_counter()
        app.exit()
    return {"images": len(screen.entries), "exit_at": start, "workers_running": running}


PARTS = ("paint", "review", "lag", "check", "exit")


class Load:
    """``n`` busy processes (a loaded machine) while the block runs: ``with Load(2): …``."""

    def __init__(self, n: int) -> None:
        self.n, self.procs = n, []

    def __enter__(self) -> "Load":
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


async def review_latency(folder: Path, keys: int = 200, profile: Path | None = None) -> dict:
    """j pressed ``keys`` times in the caption review: from the key event to the screen painted
    with the next image's caption (the screen's compositor refresh after the change)."""
    from loratui.app import build_app
    from loratui.screens.captions import CaptionEditor

    app = build_app(folder, start="captions", defaults={"resolution": 64})
    latencies = []
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        t_open = time.perf_counter()
        while screen.current is None:
            await pilot.pause(0.05)
        opened = time.perf_counter() - t_open
        await pilot.pause(0.5)
        editor = screen.query_one(CaptionEditor)
        painted = asyncio.Event()
        refresh = screen._compositor_refresh

        def refresh_and_tell() -> None:
            refresh()
            painted.set()

        screen._compositor_refresh = refresh_and_tell  # type: ignore[method-assign]
        profiler = None
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu_start = time.thread_time()  # the UI thread's CPU: what a key costs, whatever the load
        for n in range(1, keys + 1):
            expected = screen.entries[screen.shown[n]].caption
            start = time.perf_counter()
            app.simulate_key("j")
            while editor.text != expected:
                await asyncio.sleep(0)
            painted.clear()
            await painted.wait()
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)  # a fast typist: 50 keys a second
        cpu_s = time.thread_time() - cpu_start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
    ms = sorted(1000 * x for x in latencies)
    return {"images": len(screen.entries), "open_s": opened, "keys": keys, "cpu_ms_per_key": 1000 * cpu_s / keys,
            "p50_ms": ms[len(ms) // 2], "p99_ms": ms[int(0.99 * (len(ms) - 1))], "max_ms": ms[-1],
            "slowest": sorted(((round(1000 * x, 1), n + 1) for n, x in enumerate(latencies)), reverse=True)[:5]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=200, help="j presses in the review")
    parser.add_argument("--load", type=int, default=0, help="busy processes beside the parts that run (0: none)")
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the review's keys here")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    os.environ.setdefault("LORATUI_CACHE_DIR", tempfile.mkdtemp(prefix="lt-cache-ui-"))
    os.environ["LORATUI_STATE_DIR"] = tempfile.mkdtemp(prefix="lt-state-ui-")
    from ui_lag import measure_follow_lag

    work = Path(tempfile.mkdtemp(prefix="loratui-ui-bench-"))
    results: dict = {}
    try:
        with Load(args.load):
            if "paint" in parts:
                small = make_folder(work / "small", 12)
                import test_ui_snapshots  # a finished run's fixed history

                run_dir = work / "runs" / "demo"
                test_ui_snapshots.write_run(run_dir, small / "img_00000.png")
                results["first_paint"] = first_paints(small, run_dir)
            if "review" in parts:
                t = time.perf_counter()
                folder = make_folder(work / "photos", args.images)
                results["folder_build_s"] = time.perf_counter() - t
                results["review"] = asyncio.run(review_latency(folder, args.keys, args.profile))
            if "check" in parts or "exit" in parts:
                photos = work / "photos"
                if not photos.exists():
                    make_folder(photos, args.images)
                if "check" in parts:
                    results["check"] = asyncio.run(check_lag(photos))
                if "exit" in parts:
                    results["exit"] = exit_time(photos)
            if "lag" in parts:
                results["lag"] = asyncio.run(measure_follow_lag(work / "run", rate=100, seconds=5))
            results["load"] = {"busy_processes": args.load, "loadavg": os.getloadavg()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {args.load} busy processes added, load average {results['load']['loadavg'][0]:.1f} "
          f"(1 min, at the end; other users' work counts in it)")
    for what, paint in results.get("first_paint", {}).items():
        print(f"first paint (tmux 80x24, `loratui {what}`): median {paint.get('median_s', float('nan')):.2f} s  "
              f"runs {paint.get('runs_s')}")
    if "review" in results:
        rv = results["review"]
        print(f"caption review on {rv['images']} images: opened in {rv['open_s']:.2f} s; j → next caption "
              f"p50 {rv['p50_ms']:.1f} ms, p99 {rv['p99_ms']:.1f} ms, max {rv['max_ms']:.1f} ms ({rv['keys']} keys; "
              f"UI thread CPU {rv['cpu_ms_per_key']:.1f} ms a key)")
    if "check" in results:
        ck = results["check"]
        print(f"folder step's full check on {ck['images']} images: {ck['check_s']:.2f} s; loop lag meanwhile "
              f"p50 {ck['lag_p50_ms']:.1f} ms, p99 {ck['lag_p99_ms']:.1f} ms, max {ck['lag_max_ms']:.1f} ms")
    if "exit" in results:
        ex = results["exit"]
        print(f"caption review on {ex['images']} images, quit once open: returned {ex['exit_s']:.2f} s after exit() "
              f"(workers running then: {', '.join(ex['workers_running']) or 'none'})")
    if "lag" in results:
        lag = results["lag"]
        print(f"following {lag['rate']:.0f} events/s for {lag['seconds']:.1f} s: loop lag p50 {lag['lag_p50_ms']:.1f} ms, "
              f"p99 {lag['lag_p99_ms']:.1f} ms, max {lag['lag_max_ms']:.1f} ms; {lag['redraws_per_s']:.1f} redraws/s; "
              f"last step seen {lag['last_step_seen']}/{lag['events']}")


if __name__ == "__main__":
    main()
