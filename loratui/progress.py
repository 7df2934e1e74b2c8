"""The headless front end's views of the event stream: Rich progress, or JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Column

from loratui.engine.events import Event


def human_bytes(n: float) -> str:
    """1536 → '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def short_bytes(n: float) -> str:
    """1536 * 2**20 → '1.5G' (for tight columns)."""
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit in ("B", "K", "M") else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def human_seconds(s: float) -> str:
    """3725 → '1:02:05'."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


LOSS_SMOOTHING = 0.9  # the run's own: the run card's "final loss" is this average at the end
PLAIN_LINES = 10  # a captured run prints about this many progress lines per phase


class RichProgressSink:
    """Shows a run on a Rich console: phases, a step bar with loss, speed, ETA and memory.

    The loss shown is the smoothed one (an exponential average over about the last ten steps,
    as the run computes it), the figure the run card reports as its final loss. Output that is
    not a terminal (a log file, a pipe, CI) gets plain progress lines, printed in order with
    the other lines, instead of a live bar that would only be drawn when it stops.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.live = self.console.is_terminal
        if not self.live:
            self.console.soft_wrap = True  # a log line stays one line
        # Fits 80 columns: 16 + 20 + 11 + ~33 of info.
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=Column(width=16, no_wrap=True)),
            BarColumn(bar_width=20),
            TextColumn("{task.completed:>5}/{task.total:<5}", table_column=Column(width=11, no_wrap=True)),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=self.console,
            transient=False,
            expand=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._started = False
        self.smoothed: float | None = None
        self._printed: dict[str, int] = {}  # plain mode: the last tenth printed per phase

    def _task(self, key: str, description: str, total: int) -> TaskID:
        if not self._started and self.live:
            self.progress.start()
            self._started = True
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(description, total=total, info="")
        return self._tasks[key]

    def _plain(self, key: str, description: str, done: int, total: int, info: str = "") -> None:
        """One line when ``done`` reaches the next tenth of ``total`` (and at the end)."""
        tenth = PLAIN_LINES * done // max(1, total)
        if self._printed.get(key) == tenth:
            return
        self._printed[key] = tenth
        self.console.print(f"{description} {done}/{total}" + (f"  {info}" if info else ""), highlight=False)

    def _update(self, key: str, description: str, done: int, total: int, info: str = "") -> None:
        task = self._task(key, description, total)
        self.progress.update(task, completed=done, total=total, info=info)
        if not self.live:
            self._plain(key, description, done, total, info)

    def __call__(self, event: Event) -> None:
        e: Any = event
        kind = event.event
        if kind == "phase":
            self._update(e.phase, e.phase, e.done, e.total)
        elif kind == "run_started":
            self.console.print(f"[bold]{e.name}[/] → {e.run_dir}")
            self.console.print(f"schedule: {e.schedule}")
            if e.start_step:
                self.console.print(f"resuming at step {e.start_step}")
            self._update("train", "training", e.start_step, e.total_steps)
        elif kind == "step":
            self.smoothed = e.loss if self.smoothed is None else LOSS_SMOOTHING * self.smoothed + (1 - LOSS_SMOOTHING) * e.loss
            info = (
                f"avg loss {self.smoothed:.3f} {e.it_per_s:.1f} it/s ETA {human_seconds(e.eta_s)} "
                f"{short_bytes(e.mem_used)}/{short_bytes(e.mem_total)}"
            )
            self._update("train", "training", e.step, e.total_steps, info)
        elif kind == "checkpoint_saved":
            self.console.print(f"[green]saved[/] step {e.step}: {e.path}")
        elif kind == "sample_saved":
            self.console.print(f"sample at step {e.step}: {e.path}")
        elif kind == "validation":
            self.console.print(f"validation loss at step {e.step}: {e.loss:.4f}")
        elif kind == "recommendation":
            self.console.print(f"[bold]recommended:[/] {e.path} at strength {e.strength} ({e.reason})")
        elif kind == "warning":
            self.console.print(f"[yellow]warning:[/] {e.message}")
        elif kind in ("run_finished", "run_stopped", "run_failed"):
            self.close()

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False


def json_stdout_sink(event: Event) -> None:
    """Each event as one JSON line on stdout (``--json``)."""
    sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
    sys.stdout.flush()
