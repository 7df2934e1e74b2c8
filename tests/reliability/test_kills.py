"""Runs that cannot be lost: SIGKILL a real `loratui train` anywhere, `--resume` finishes it exactly.

"Exactly" means the final LoRA's tensors are bit-identical to an uninterrupted run with the
same seed (the `reference` fixture). Every kill here is a real SIGKILL of a real process: no
cleanup code runs, like a crash, an OOM killer or a preempted spot instance.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from reliability_kit import (
    Child,
    assert_bit_identical,
    complete_checkpoints,
    config_of,
    load_lora,
    partial_files,
    state_of,
    write_config,
)

pytestmark = pytest.mark.reliability

NAME = "run"


def _start(tmp_path: Path, dataset: Path, faults: str | None = None) -> tuple[Child, Path]:
    config = write_config(tmp_path / "run.toml", dataset, tmp_path / "out", name=NAME)
    return Child("--config", str(config), faults=faults), tmp_path / "out" / NAME


def _pointer(run_dir: Path) -> int:
    from loratui.engine.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None, "no loadable checkpoint after the kill"
    return int(latest.name[4:])


def _check_resumed(run_dir: Path, events: list[dict], expect_start: int) -> None:
    started = [e for e in events if e["event"] == "run_started"]
    assert started and started[0]["start_step"] == expect_start, "did not resume from the newest checkpoint"
    assert state_of(run_dir)["status"] == "finished"
    assert partial_files(run_dir) == []


def _cli_resume_to_the_end(run_dir: Path, expect_start: int) -> None:
    """``loratui train --resume RUN_DIR`` as a real process, to the end."""
    child = Child("--resume", str(run_dir))
    code, err = child.finish()
    assert code == 0, err
    _check_resumed(run_dir, child.events, expect_start)


def _resume_to_the_end(run_dir: Path, expect_start: int) -> None:
    """What ``loratui train --resume RUN_DIR`` does, in this process (saves a start-up per test)."""
    from loratui.engine.runs.registry import effective_status, read_state
    from loratui.engine.train.loop import train

    assert effective_status(read_state(run_dir)) == "stale"  # the CLI refuses a live run
    events: list[dict] = []
    train(config_of(run_dir), run_dir, [lambda e: events.append(e.to_dict())], resume=True)
    _check_resumed(run_dir, events, expect_start)


def _killed(tmp_path: Path, rel_dataset: Path, fault: str) -> tuple[Child, Path]:
    """A training child run until the injected ``fault`` SIGKILLs it; the child and its run folder."""
    child, run_dir = _start(tmp_path, rel_dataset, faults=fault)
    code, _ = child.finish()
    assert code == -signal.SIGKILL
    return child, run_dir


def _resumes_to_the_reference(run_dir: Path, expect_start: int, reference) -> None:
    """Resumed from ``expect_start``, the run ends with the uninterrupted run's LoRA, bit for bit."""
    _resume_to_the_end(run_dir, expect_start)
    assert_bit_identical(load_lora(run_dir / f"{NAME}.safetensors"), reference)


def test_sigkill_at_seeded_random_moments_then_resume_is_bit_identical(tmp_path, rel_dataset, reference):
    """Three SIGKILLs at seeded-random moments (mid-step or mid-save), each run resumed."""
    rng = random.Random(20240606)
    child, run_dir = _start(tmp_path, rel_dataset)
    newest = 0
    for kill in range(3):
        started = child.wait_for(lambda e: e["event"] == "run_started")
        assert started is not None, child.finish()
        assert started["start_step"] == newest, "did not resume from the newest complete checkpoint"
        # the first kill waits for the first checkpoint (before it: test_kill_before_first_checkpoint)
        low = 5 if kill == 0 else newest + 1
        after = rng.randint(low, min(low + 3, 10))
        assert child.wait_for(lambda e: e["event"] == "step" and e["step"] >= after) is not None
        time.sleep(rng.uniform(0.0, 0.08))  # somewhere inside the next step, or a save
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL
        assert state_of(run_dir)["status"] == "running"  # nothing cleaned up: a real crash
        complete = complete_checkpoints(run_dir)
        newest = _pointer(run_dir)  # what --resume loads: latest.json, written after the rename
        # a kill between renaming a checkpoint into place and updating latest.json (a few ms)
        # leaves the previous one named: still whole, still exact
        assert newest in complete and max(complete) - newest in (0, 4), (newest, complete)
        assert not (run_dir / f"{NAME}.safetensors").exists()
        if kill < 2:
            child = Child("--resume", str(run_dir))
    _cli_resume_to_the_end(run_dir, newest)
    assert_bit_identical(load_lora(run_dir / f"{NAME}.safetensors"), reference)


def test_kill_mid_step_then_resume_is_bit_identical(tmp_path, rel_dataset, reference):
    child, run_dir = _killed(tmp_path, rel_dataset, "kill@step:7")
    assert max(e["step"] for e in child.events if e["event"] == "step") == 6
    assert complete_checkpoints(run_dir) == [4] and _pointer(run_dir) == 4
    _resumes_to_the_reference(run_dir, 4, reference)


def test_kill_mid_checkpoint_write_never_picks_the_torn_one(tmp_path, rel_dataset, reference):
    _, run_dir = _killed(tmp_path, rel_dataset, "kill@save:8")
    torn = list((run_dir / "checkpoints").glob(".tmp-step000008-*"))
    assert torn and (torn[0] / "adapters.safetensors").is_file(), "the kill did not land mid-write"
    assert complete_checkpoints(run_dir) == [4] and _pointer(run_dir) == 4
    _resumes_to_the_reference(run_dir, 4, reference)  # also: the torn staging folder is gone afterwards


def test_kill_mid_export_leaves_no_partial_lora(tmp_path, rel_dataset, reference):
    _, run_dir = _killed(tmp_path, rel_dataset, "kill@export")
    assert not (run_dir / f"{NAME}.safetensors").exists(), "a partial final LoRA is visible"
    assert list(run_dir.glob(f".{NAME}.safetensors.*.tmp")), "the kill did not land mid-write"
    assert complete_checkpoints(run_dir) == [4, 8]
    _resumes_to_the_reference(run_dir, 8, reference)


def test_kill_before_first_checkpoint_is_still_resumable(tmp_path, rel_dataset, reference):
    """No checkpoint yet: --resume starts again from step 0 (every draw derives from the seed)."""
    _, run_dir = _killed(tmp_path, rel_dataset, "kill@step:2")
    assert complete_checkpoints(run_dir) == []
    _resumes_to_the_reference(run_dir, 0, reference)
