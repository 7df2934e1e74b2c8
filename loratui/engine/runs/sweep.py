"""A sweep's results side by side: one row per queued run, for ``loratui queue compare``.

The entries one ``queue add --sweep`` queued share a sweep id (see ``queue``); each row reads
its run folder as ``loratui status`` does (``state.json``, ``events.jsonl``) and its validation
losses from ``validation.json``. The structure ``compare`` returns is what ``queue compare
--json`` prints: a contract with scripts (add keys, never rename or retype one).

"Best" is the finished run with the lowest validation loss, each run counted at its best check:
the number its own recommendation is chosen by. Validation is the same fixed-noise MSE on the
same images in every run, so the losses compare, unless the sweep changes what is validated
(the seed picks the held-out images and the noise; the resolution, masks and prediction target
change the numbers): then ``note`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.engine.errors import RunError
from loratui.engine.runs.queue import Entry, RunQueue

SCHEMA = 1
BEST_RULE = "the finished run with the lowest validation loss (each run at its best check)"
# config keys that change what the validation loss measures: runs that differ in one compare loosely
_VALIDATION_KEYS = ("seed", "resolution", "validation", "masked_loss", "prediction_type",
                    "zero_terminal_snr", "base_model", "dataset")


def sweep_ids(entries: list[Entry]) -> list[int]:
    """The sweeps the queue holds entries of, oldest first."""
    return sorted({e.sweep for e in entries if e.sweep is not None})


def sweep_entries(queue: RunQueue, sweep: int | None = None) -> tuple[int, list[Entry]]:
    """The id and the entries of sweep ``sweep`` (default: the newest); a RunError when there is none."""
    entries = queue.entries()
    ids = sweep_ids(entries)
    if not ids:
        raise RunError("the queue holds no sweep",
                       "queue one with `loratui queue add FOLDER … --sweep lr=1e-4,2e-4 --sweep rank=8,16`")
    if sweep is None:
        sweep = ids[-1]
    elif sweep not in ids:
        raise RunError(f"sweep {sweep}: no such sweep in the queue",
                       f"the queue holds sweep{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}")
    return sweep, [e for e in entries if e.sweep == sweep]


def shown_status(entry_status: str, run_status: str | None, runner_alive: bool) -> str:
    """An entry's status as people should read it: a ``running`` entry whose run no longer
    trains while no ``queue run`` is alive is ``interrupted`` (the next ``queue run`` resumes it)."""
    if entry_status == "running" and not runner_alive and run_status != "running":
        return "interrupted"
    return entry_status


def compare(queue: RunQueue, sweep: int | None = None, runner_alive: bool = False) -> dict[str, Any]:
    """The comparison of one sweep (default: the newest): see the README, "Comparing a sweep"."""
    sweep, entries = sweep_entries(queue, sweep)
    rows = [_row(entry, runner_alive) for entry in entries]
    keys = list(dict.fromkeys(key for entry in entries for key in entry.sweep_values))
    varying = [k for k in keys if len({e.sweep_values.get(k) for e in entries}) > 1] or keys
    finished = [r for r in rows if r["status"] == "done"]
    scored = [r for r in finished if r["best_validation_loss"] is not None]
    best = min(scored, key=lambda r: (r["best_validation_loss"], r["id"])) if scored else None
    for row in rows:
        row["best"] = row is best
    return {
        "schema": SCHEMA,
        "sweep": sweep,
        "keys": keys,
        "varying": varying,
        "finished": len(finished),
        "ended": all(r["status"] in ("done", "failed", "stopped") for r in rows),
        "best": best["id"] if best else None,
        "best_rule": BEST_RULE,
        "note": _note(entries, finished, scored),
        "runs": rows,
    }


def _row(entry: Entry, runner_alive: bool) -> dict[str, Any]:
    from loratui.engine.runs.status import run_status
    from loratui.engine.validate.validation import load_history

    run_dir = Path(entry.run_dir) if entry.run_dir else None
    run = run_status(run_dir) if run_dir is not None and run_dir.is_dir() else None
    history = load_history(run_dir) if run_dir is not None else []
    best_step, best_loss = min(history, key=lambda h: (h[1], h[0])) if history else (None, None)
    status = shown_status(entry.status, run["status"] if run else None, runner_alive)
    return {
        "id": entry.id,
        "name": entry.name,
        "values": dict(entry.sweep_values),
        "status": status,
        "step": run["step"] if run else 0,
        "total_steps": (run["total_steps"] or None) if run else None,
        "final_loss": run["final_loss"] if run else None,  # the training loss, smoothed (EMA 0.9)
        "best_validation_loss": best_loss,
        "best_validation_step": best_step,
        "recommendation": run["recommendation"] if run else None,
        "run_dir": entry.run_dir,
        "lora": run["paths"]["lora"] if run else None,
        "message": entry.message if status in ("failed", "stopped") else None,
        "best": False,
    }


def _note(entries: list[Entry], finished: list[dict], scored: list[dict]) -> str | None:
    if finished and not scored:
        return "no finished run has a validation loss (validation was off): no run is marked best"
    differ = [k for k in _VALIDATION_KEYS if len({repr(e.config.get(k)) for e in entries}) > 1]
    if differ:
        return (f"the runs differ in {', '.join(differ)}, which changes what the validation loss measures: "
                "compare their samples too")
    return None
