"""Helpers for the reliability suite: the standard run, the CLI as a real process, LoRA checks.

A plain module (not the conftest), so test files can import it without a name clash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

# The run every kill test interrupts: 12 steps, a checkpoint every 4, and every source of
# randomness switched on (tag shuffle, caption dropout, noise offset, text-encoder LoRA), so
# "bit-identical after resume" proves the RNG and data-order state really are restored.
STANDARD: dict[str, Any] = dict(
    preset="pet", base_model="tiny", resolution=64, steps=12, save_every=4, batch_size=2,
    trigger="zxq", lr=1e-3, seed=42, sample_every=0, validation="off", shuffle_tags=True,
    caption_dropout=0.2, noise_offset=0.05, train_text_encoder=True, rank=4,
)


def write_config(path: Path, dataset: Path, output: Path, **overrides: Any) -> Path:
    """A TOML run config (what ``loratui train --config`` reads) for the standard run."""
    import tomli_w

    values = {**STANDARD, "dataset": str(dataset), "output_dir": str(output), **overrides}
    path.write_text(tomli_w.dumps(values))
    return path


def standard_config(dataset: Path, output: Path, **overrides: Any):
    """The standard run as a RunConfig, for in-process ``train()``."""
    from loratui.engine.config import build_config

    values = {**STANDARD, "output_dir": str(output), **overrides}
    return build_config(str(dataset), values.pop("preset"), overrides=values)


def config_of(run_dir: Path):
    """The config a run folder was started with (as ``--resume`` reads it)."""
    from loratui.engine.config import build_config, load_config_file

    return build_config(None, file_values=load_config_file(run_dir / "config.toml"))


def env(faults: str | None = None) -> dict[str, str]:
    """The environment for a child ``loratui``: the test session's cache and state dirs."""
    out = {k: v for k, v in os.environ.items() if k != "LORATUI_FAULTS"}
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    # One CPU thread everywhere (children here, the test process in conftest): float sums
    # then come out in one order, so runs are comparable bit for bit, and a loaded 2-core
    # machine is not oversubscribed (2 threads per process ran 4x slower under load).
    out["OMP_NUM_THREADS"] = "1"
    if faults:
        out["LORATUI_FAULTS"] = faults
    return out


def loratui(*args: str, faults: str | None = None, cwd: Path | None = None, timeout: float = 120):
    """Run ``loratui ARGS`` to the end; the CompletedProcess (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "loratui", *args], capture_output=True, text=True, env=env(faults),
        cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL,
    )


class Child:
    """``loratui train … --json`` as a real process whose events the test reads as they come."""

    def __init__(self, *args: str, faults: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loratui", "train", *args, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(faults),
            stdin=subprocess.DEVNULL,
        )
        self.events: list[dict[str, Any]] = []

    def next_event(self) -> dict[str, Any] | None:
        """The next event on stdout; None when the process has closed it."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return None
            if line.startswith("{"):
                event = json.loads(line)
                self.events.append(event)
                return event

    def wait_for(self, predicate) -> dict[str, Any] | None:
        """Read events until one matches ``predicate``; None when the process ended first."""
        while (event := self.next_event()) is not None:
            if predicate(event):
                return event
        return None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Drain the output, reap the process; (exit code, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("{"):
                self.events.append(json.loads(line))
        return self.proc.returncode, err


def load_lora(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path)


def assert_bit_identical(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Every tensor equal bit for bit (metadata, e.g. timestamps, may differ)."""
    import torch

    assert got.keys() == want.keys()
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{len(differ)} of {len(want)} tensors differ, e.g. {differ[:3]}"


def partial_files(run_dir: Path) -> list[str]:
    """Anything a half-finished write leaves behind: temp files and staging folders."""
    found = [*run_dir.rglob("*.tmp"), *run_dir.rglob(".tmp-*"), *run_dir.glob(".diffusers-*")]
    return sorted(str(p.relative_to(run_dir)) for p in found)


def complete_checkpoints(run_dir: Path) -> list[int]:
    """Steps of the whole checkpoint folders (those a resume may load)."""
    folder = run_dir / "checkpoints"
    return sorted(int(p.name[4:]) for p in folder.glob("step*") if (p / "trainer.json").is_file())


def events_of(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole line of ``events.jsonl`` (a line torn by SIGKILL is skipped)."""
    out = []
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def state_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "state.json").read_text())


def wait_until(predicate, timeout: float = 60, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def one_clear_line(result) -> str:
    """Assert a CLI failure is exactly one ``error:`` line and no traceback; return it."""
    err = result.stderr.strip()
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in lines[0], lines[0]
    return lines[0]
