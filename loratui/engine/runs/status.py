"""A run's status as one stable structure, for `loratui status RUN --json` and `runs --json`.

Read from the run folder alone (``state.json`` and ``events.jsonl``), so it works for a run that
is running, finished, or whose process is gone. The keys are a contract with scripts and
monitoring: add keys, never rename or retype one (``schema`` changes if that ever must happen).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from loratui.engine.errors import RunError
from loratui.engine.runs.registry import CONFIG, EVENTS, STATE, effective_status, list_runs, load_state

SCHEMA = 1
_STEP_PREFIX = '{"event": "step"'  # how JsonlSink writes a step line: only the last one is parsed


def run_status(run_dir: Path) -> dict[str, Any]:
    """The status structure of ``run_dir`` (documented in the README, "Status for scripts")."""
    try:
        state = load_state(run_dir)
    except RunError as exc:
        return {**_empty(run_dir), "status": "damaged", "message": str(exc)}
    events = _events(run_dir / EVENTS)
    started = events.get("run_started") or {}
    step = events.get("step") or {}
    status = effective_status(state) if isinstance(state.get("status", ""), str) else "damaged"
    running = status == "running"
    eta_s = step.get("eta_s") if running else None
    if eta_s is not None and isinstance(step.get("t"), (int, float)):
        eta_s = max(0.0, step["t"] + eta_s - time.time())  # from when the step was logged to now
    validation = events.get("validation") or {}
    failed = events.get("run_failed") or {}
    warning = events.get("warning") or {}
    recommendation = state.get("recommendation") or events.get("recommendation")
    total = _int(state.get("total_steps")) or _int(step.get("total_steps")) or _int(started.get("total_steps"))
    current = max(_int(state.get("step")), _int(step.get("step")))  # state.json is written at most 1/s
    lora = state.get("lora") or (events.get("run_finished") or {}).get("path")
    samples = events.get("sample_saved") or {}
    config = started.get("config") or {}
    return {
        **_empty(run_dir),
        "name": str(state.get("name") or started.get("name") or run_dir.name),
        "status": status,
        "pid": _int(state.get("pid")) or None if running else None,
        "step": current,
        "total_steps": total,
        "progress": round(current / total, 4) if total else 0.0,
        "epoch": step.get("epoch"),
        "loss": _float(state.get("loss", step.get("loss"))),
        "final_loss": _float(state.get("final_loss")),
        "validation_loss": _float(validation.get("loss")),
        "lr": _float(step.get("lr")),
        "it_per_s": _float(step.get("it_per_s")),
        "eta_s": round(eta_s, 1) if eta_s is not None else None,
        "started_at": _float(state.get("started_at", started.get("t"))),
        "updated_at": _float(state.get("updated_at")) or 0.0,
        "finished_at": _float(state.get("finished_at")),
        "gpu": {
            "kind": step.get("mem_kind"),  # "cuda" (GPU memory) or "ram" (process memory on CPU)
            "count": _int(config.get("gpus")) or 1,
            "mem_used": step.get("mem_used"),
            "mem_peak": step.get("mem_peak"),
            "mem_total": step.get("mem_total"),
        },
        "recommendation": _recommendation(recommendation),
        "message": failed.get("message"),
        "hint": failed.get("hint"),
        "last_warning": warning.get("message"),
        "paths": {
            "run_dir": str(run_dir),
            "lora": _str(lora),
            "last_checkpoint": _str(state.get("last_checkpoint")),
            "last_sample": _str(samples.get("path")),
            "events": str(run_dir / EVENTS),
            "config": str(run_dir / CONFIG),
            "card": str(run_dir / "README.md") if (run_dir / "README.md").is_file() else None,
        },
    }


def all_statuses(extra_roots: list[Path] | None = None) -> list[dict[str, Any]]:
    """Every run `loratui runs` lists, newest first, each as ``run_status`` gives it."""
    out = []
    for row in list_runs(extra_roots):
        entry = run_status(row.run_dir)
        if row.status == "damaged":
            entry["status"] = "damaged"
        out.append(entry)
    return out


def find_run(run: str, extra_roots: list[Path] | None = None) -> Path:
    """A run folder from a path or a run name (the newest run of that name); RunError otherwise."""
    path = Path(run).expanduser()
    if (path / STATE).is_file() or (path / CONFIG).is_file():
        return path.resolve()
    matches = [r.run_dir for r in list_runs(extra_roots) if r.name == run or r.run_dir.name == run]
    if matches:
        return matches[0]
    raise RunError(f"{run}: no such run (not a run folder, nor the name of a run `loratui runs` lists)",
                   "pass the run folder `train` printed, or a name from `loratui runs`")


def _empty(run_dir: Path) -> dict[str, Any]:
    return {"schema": SCHEMA, "run_dir": str(run_dir), "name": run_dir.name}


def _events(path: Path) -> dict[str, dict[str, Any]]:
    """The last event of each kind in ``events.jsonl`` (step lines are skipped but the last)."""
    last: dict[str, dict[str, Any]] = {}
    last_step = ""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(_STEP_PREFIX):
                    last_step = line
                    continue
                _keep(last, line)
    except OSError:
        return last
    if last_step:
        _keep(last, last_step)
    return last


def _keep(last: dict[str, dict[str, Any]], line: str) -> None:
    try:
        event = json.loads(line)
    except ValueError:  # a line still being written, or damaged: the others still count
        return
    if isinstance(event, dict) and isinstance(event.get("event"), str):
        last[event["event"]] = event


def _recommendation(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) for k in ("path", "strength", "step", "reason", "overtrained")}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
