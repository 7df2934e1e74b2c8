"""Faults that heal: each is injected through LORATUI_FAULTS (loratui/engine/faults.py) on CPU.

A bad step is skipped, a streak of them rolls back with a halved learning rate, an out-of-
memory error halves the micro-batch (same effective batch), a full disk is one clear error
that leaves nothing partial and resumes exactly. `faults.load()` runs at the start of each
`train()`, so setting the variable with monkeypatch reaches the engine in this process.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reliability_kit import (
    assert_bit_identical,
    complete_checkpoints,
    config_of,
    load_lora,
    partial_files,
    standard_config,
    state_of,
)
from loratui.engine.errors import RunError
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


def _run(tmp_path: Path, dataset: Path, monkeypatch, faults: str, **overrides):
    """Train the standard run with ``faults``; (result or the RunError, events, run_dir)."""
    monkeypatch.setenv("LORATUI_FAULTS", faults)
    run_dir = tmp_path / "out" / "run"
    events: list[dict] = []
    try:
        result = train(standard_config(dataset, tmp_path / "out", **overrides), run_dir,
                       [lambda e: events.append(e.to_dict())])
    except RunError as exc:
        result = exc
    monkeypatch.delenv("LORATUI_FAULTS")
    return result, events, run_dir


def _warnings(events: list[dict]) -> list[str]:
    return [e["message"] for e in events if e["event"] == "warning"]


def _failed_once(events: list[dict], run_dir: Path, error) -> None:
    """One run_failed event, state.json 'failed', and the error is one line."""
    assert isinstance(error, RunError), error
    assert "\n" not in str(error)
    assert [e["event"] for e in events].count("run_failed") == 1
    assert state_of(run_dir)["status"] == "failed"


def test_one_nan_step_is_skipped_with_a_warning(tmp_path, rel_dataset, monkeypatch):
    result, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "nan@3", save_every=0)
    assert result.status == "finished" and result.step == 12
    assert any("non-finite" in w and "step 3" in w and "skipped" in w for w in _warnings(events))
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert 3 not in steps and steps[-1] == 12  # the bad update was never applied
    assert all(math.isfinite(float(t.float().abs().max())) for t in load_lora(result.lora_path).values())


def test_three_nan_in_a_row_roll_back_and_halve_the_lr(tmp_path, rel_dataset, monkeypatch):
    result, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "nan@6,nan@7,nan@8")
    assert result.status == "finished" and result.step == 12
    rollback = [w for w in _warnings(events) if "rolled back" in w]
    assert len(rollback) == 1 and "rolled back to step 4" in rollback[0] and "halved" in rollback[0]
    lrs: dict[int, list[float]] = {}
    for e in events:
        if e["event"] == "step":
            lrs.setdefault(e["step"], []).append(e["lr"])
    # step 5 ran before the streak and again after the rollback to the step-4 snapshot
    assert len(lrs[5]) == 2
    assert lrs[5][1] == pytest.approx(lrs[5][0] / 2, rel=1e-9)
    assert all(len(lrs[s]) == 1 for s in range(9, 13))


def test_endless_nan_fails_with_one_clear_error(tmp_path, rel_dataset, monkeypatch):
    # each fault fires once, so a fresh streak after each rollback to step 0: 1-3, 4-6, 7-9, 10-12
    faults = ",".join(f"nan@{k}" for k in range(1, 13))
    error, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, faults, save_every=0)
    _failed_once(events, run_dir, error)
    assert "keeps diverging" in error.message and "--lr" in error.hint
    assert len([w for w in _warnings(events) if "rolled back" in w]) == 3
    assert not (run_dir / "run.safetensors").exists()


def test_oom_halves_the_micro_batch_and_finishes_like_an_uninterrupted_run(
    tmp_path, rel_dataset, monkeypatch, reference
):
    result, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "oom@3")
    assert result.status == "finished" and result.step == 12
    [warning] = [w for w in _warnings(events) if "out of GPU memory" in w]
    assert "1 image(s) per pass" in warning and "effective batch stays 2" in warning
    import torch

    got = load_lora(result.lora_path)
    # the same samples, summed in another order: equal up to float rounding
    assert all(torch.allclose(got[k].float(), reference[k].float(), rtol=1e-3, atol=1e-5) for k in reference)


def test_oom_at_one_image_per_pass_names_the_options_left(tmp_path, rel_dataset, monkeypatch):
    error, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "oom@3,oom@4")
    _failed_once(events, run_dir, error)
    assert "one image at a time" in error.message
    for option in ("--gradient-checkpointing", "--resolution", "8-bit AdamW"):
        assert option in error.hint


def test_disk_full_while_saving_leaves_nothing_partial_and_resumes_exactly(
    tmp_path, rel_dataset, monkeypatch, reference
):
    error, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "disk_full@save:8")
    _failed_once(events, run_dir, error)
    assert "could not save step 8" in error.message and "--resume" in error.hint
    assert partial_files(run_dir) == []
    assert complete_checkpoints(run_dir) == [4]
    assert not (run_dir / "checkpoints" / "step000008").exists()
    result = train(config_of(run_dir), run_dir, resume=True)  # room again: no fault
    assert result.status == "finished" and state_of(run_dir)["status"] == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_disk_full_while_exporting_leaves_no_partial_lora_and_resumes_exactly(
    tmp_path, rel_dataset, monkeypatch, reference
):
    error, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "disk_full@export")
    _failed_once(events, run_dir, error)
    assert not (run_dir / "run.safetensors").exists()
    assert partial_files(run_dir) == []
    result = train(config_of(run_dir), run_dir, resume=True)
    assert result.status == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_disk_full_at_the_first_save_is_still_resumable(tmp_path, rel_dataset, monkeypatch, reference):
    """The error says `--resume`; with no checkpoint yet, that starts again from step 0."""
    error, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "disk_full@save:4")
    _failed_once(events, run_dir, error)
    assert "--resume" in error.hint
    result = train(config_of(run_dir), run_dir, resume=True)
    assert result.status == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_healed_faults_are_told_in_the_run_card(tmp_path, rel_dataset, monkeypatch):
    """Issue 6: each healed fault is a warning event *and* a line in the run card."""
    result, events, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "oom@2,nan@6,nan@7,nan@8")
    assert result.status == "finished"
    card = (run_dir / "README.md").read_text()
    assert "out of GPU memory" in card and "rolled back" in card


def test_the_oom_advice_can_be_followed_with_resume(tmp_path, rel_dataset, monkeypatch):
    from reliability_kit import loratui

    error, _, run_dir = _run(tmp_path, rel_dataset, monkeypatch, "oom@1,oom@2", steps=2)
    assert "--gradient-checkpointing" in error.hint and "--resume" in error.hint
    result = loratui("train", "--resume", str(run_dir), "--gradient-checkpointing", "--json")
    started = [line for line in result.stdout.splitlines() if '"run_started"' in line]
    ignored = result.returncode == 0 and started and '"gradient_checkpointing": false' in started[0]
    assert not ignored, "--gradient-checkpointing was silently ignored on --resume"
