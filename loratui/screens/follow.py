"""Following a run: fold ``events.jsonl`` into one snapshot of the run, off the UI thread.

The follower polls ``read_events`` (incremental, torn-line safe) and folds every event into a
``RunModel`` in its own thread; the UI only ever gets the latest ``RunSnapshot`` (small, frozen),
at most ``max_rate`` times a second. Replaying a long history on attach is therefore one fold
and one redraw, and a run that logs thousands of events a second costs the UI nothing extra.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loratui.engine.events import read_events
from loratui.engine.runs.registry import EVENTS, effective_status, read_state

LOSS_POINTS = 400  # points kept for the chart (it buckets them to its width)
SAMPLES_KEPT = 200  # the gallery's images (a run samples every few hundred steps: all of them)
EMA = 0.9  # loss smoothing: a moving average over roughly the last ten steps
ENDED = ("finished", "stopped", "failed", "stale")


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the run view shows, as of the last event read."""

    run_dir: Path
    name: str = ""
    status: str = "starting"  # starting | running | finished | stopped | failed | stale
    phase: str = ""
    phase_done: int = 0
    phase_total: int = 0
    phase_since: float = 0.0  # when the phase began (unix seconds): the view counts its time
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    smoothed: tuple[float, ...] = ()
    lr: float = 0.0
    it_per_s: float = 0.0
    eta_s: float = 0.0
    mem_used: int = 0
    mem_peak: int = 0
    mem_total: int = 0
    mem_kind: str = ""
    schedule: str = ""
    trigger: str = ""
    base_model: str = ""  # as the run's config names it ("tiny", a file, a hub id)
    last_checkpoint: str = ""
    last_checkpoint_step: int = 0
    last_sample: str = ""
    last_sample_step: int = 0
    samples: tuple[tuple[int, str], ...] = ()  # (step, absolute path), oldest first
    validation: tuple[tuple[int, float], ...] = ()  # (step, validation loss), oldest first
    validation_held_out: bool = False  # measured on held-out images, not on the training ones
    warnings: tuple[str, ...] = ()
    lora_path: str = ""
    # the run's advice (a "recommendation" event, when it validated): checkpoint, strength, why
    advice_step: int = 0
    advice_path: str = ""
    advice_strength: str = ""
    advice_reason: str = ""
    message: str = ""  # why it failed or stopped
    hint: str = ""
    events: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    @property
    def lora_file(self) -> Path | None:
        """The final LoRA as an absolute path: it is in the run folder, whatever folder the
        trainer was started from (a relative path on screen meant nothing after ``cd``)."""
        if not self.lora_path:
            return None
        path = Path(self.lora_path)
        return path if path.is_absolute() else self.run_dir.resolve() / path.name

    @property
    def lora_name(self) -> str:
        return Path(self.lora_path).stem if self.lora_path else self.name


@dataclass
class RunModel:
    """The fold: ``apply`` each event dict in order; ``snapshot()`` for the UI."""

    run_dir: Path
    values: dict[str, Any] = field(default_factory=dict)
    smoothed: deque[float] = field(default_factory=lambda: deque(maxlen=LOSS_POINTS))
    warnings: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    samples: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    validation: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=LOSS_POINTS))
    _ema: float | None = None

    def apply(self, ev: dict[str, Any]) -> None:
        v = self.values
        v["events"] = v.get("events", 0) + 1
        kind = ev.get("event")
        if kind == "run_started":
            config = ev.get("config") or {}
            v.update(
                status="running", name=str(ev.get("name", "")), total_steps=int(ev.get("total_steps", 0)),
                step=int(ev.get("start_step", 0)), schedule=str(ev.get("schedule", "")),
                trigger=str(config.get("trigger") or ""), base_model=str(config.get("base_model") or ""),
                message="", hint="",
            )
        elif kind == "phase":
            phase = str(ev.get("phase", ""))
            if phase != v.get("phase"):
                v["phase_since"] = float(ev.get("t", 0.0))
            v.update(phase=phase, phase_done=int(ev.get("done", 0)), phase_total=int(ev.get("total", 0)))
            v.setdefault("status", "running")
        elif kind == "step":
            loss = float(ev.get("loss", 0.0))
            if loss == loss:  # NaN stays out of the smoothed line (it would poison it for good)
                self._ema = loss if self._ema is None else EMA * self._ema + (1 - EMA) * loss
                self.smoothed.append(self._ema)  # starts at the first loss, so no warm-up bias
            v.update(
                status="running", phase="", step=int(ev.get("step", 0)), total_steps=int(ev.get("total_steps", 0)),
                epoch=int(ev.get("epoch", 0)), loss=loss, lr=float(ev.get("lr", 0.0)),
                it_per_s=float(ev.get("it_per_s", 0.0)), eta_s=float(ev.get("eta_s", 0.0)),
                mem_used=int(ev.get("mem_used", 0)), mem_peak=int(ev.get("mem_peak", 0)),
                mem_total=int(ev.get("mem_total", 0)), mem_kind=str(ev.get("mem_kind", "")),
            )
        elif kind == "checkpoint_saved":
            v.update(last_checkpoint=str(ev.get("path", "")), last_checkpoint_step=int(ev.get("step", 0)))
        elif kind == "sample_saved":
            path = str(in_run_dir(self.run_dir, str(ev.get("path", ""))))
            v.update(last_sample=path, last_sample_step=int(ev.get("step", 0)))
            self.samples.append((int(ev.get("step", 0)), path))
        elif kind == "validation":
            loss = float(ev.get("loss", float("nan")))
            if loss == loss:
                self.validation.append((int(ev.get("step", 0)), loss))
                v["validation_held_out"] = bool(ev.get("held_out", False))
        elif kind == "warning":
            self.warnings.append(str(ev.get("message", "")))
        elif kind == "recommendation":
            v.update(advice_step=int(ev.get("step", 0)), advice_path=str(ev.get("path", "")),
                     advice_strength=str(ev.get("strength", "")), advice_reason=str(ev.get("reason", "")))
        elif kind == "run_finished":
            v.update(status="finished", lora_path=str(ev.get("path", "")), eta_s=0.0)
            if ev.get("step"):
                v["step"] = int(ev["step"])
        elif kind == "run_stopped":
            v.update(status="stopped", step=int(ev.get("step", v.get("step", 0))), eta_s=0.0,
                     message=f"stopped at step {ev.get('step', '?')}; checkpoint {ev.get('checkpoint', '')}")
        elif kind == "run_failed":
            v.update(status="failed", message=str(ev.get("message", "")), hint=str(ev.get("hint", "")), eta_s=0.0)

    def set_process_status(self, status: str) -> None:
        """What ``state.json`` says: only 'stale' (the process died silently) overrides events."""
        if status == "stale" and self.values.get("status") not in ENDED:
            self.values.update(status="stale", message="the training process is gone without a final event",
                               hint="see output.log in the run folder; `loratui train --resume RUN_DIR` continues it")
        elif status in ENDED and self.values.get("status") in (None, "starting"):
            self.values["status"] = status

    def snapshot(self) -> RunSnapshot:
        return replace(
            RunSnapshot(self.run_dir),
            **self.values,
            smoothed=tuple(self.smoothed),
            warnings=tuple(self.warnings),
            samples=tuple(self.samples),
            validation=tuple(self.validation),
        )


def in_run_dir(run_dir: Path, path: str) -> Path:
    """An event's file path as an absolute one. The trainer writes paths as it was given the
    run folder (relative to the folder it was started from, which the viewer may not share),
    and every file it names lies inside the run folder: keep what follows the folder's name."""
    p = Path(path)
    if p.is_absolute():
        return p
    root = run_dir.resolve()
    parts = p.parts
    if root.name in parts:
        at = len(parts) - 1 - parts[::-1].index(root.name)
        return root.joinpath(*parts[at + 1:])
    return root / p


def follow_run(
    run_dir: Path,
    publish: Callable[[RunSnapshot], None],
    cancelled: Callable[[], bool],
    max_rate: float = 10.0,
    poll_s: float = 0.05,
    state_every_s: float = 1.0,
) -> RunSnapshot:
    """Follow ``run_dir`` until it ends (or ``cancelled()``), publishing snapshots.

    Replays the whole history first, so a late attach sees the full loss curve. Publishes at
    most ``max_rate`` times a second, and always once more when the run ends.
    """
    model = RunModel(run_dir)
    path = run_dir / EVENTS
    offset = 0
    last_publish = last_state = 0.0
    dirty = True
    while not cancelled():
        events, offset = read_events(path, offset)
        for ev in events:
            model.apply(ev)
        dirty = dirty or bool(events)
        now = time.monotonic()
        if now - last_state >= state_every_s and not events:
            last_state = now
            state = read_state(run_dir)
            model.set_process_status(effective_status(state) if state else "starting")
            dirty = True
        snap_status = model.values.get("status")
        ended = snap_status in ENDED and not events
        if dirty and (ended or now - last_publish >= 1.0 / max_rate):
            publish(model.snapshot())
            last_publish, dirty = now, False
        if ended:
            break
        time.sleep(poll_s)
    return model.snapshot()

