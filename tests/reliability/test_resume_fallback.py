"""--resume finds the newest intact checkpoint when latest.json is lost, garbage or names a gone folder.

Before, each of these restarted the run from step 0 without a word, although whole checkpoint
folders were there (and the hint for a damaged checkpoint, "delete that checkpoint folder",
led to the same restart).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reliability_kit import assert_bit_identical, config_of, load_lora, loratui, standard_config
from loratui.engine.errors import RunError
from loratui.engine.train.stop import StopSignal
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, rel_dataset) -> Path:
    """The standard run stopped at step 9: checkpoints step000004, step000008, step000009."""
    base = tmp_path_factory.mktemp("fallback")
    stop = StopSignal()

    def stop_at_9(event) -> None:
        if event.event == "step" and event.step == 9:
            stop.request("test")

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(standard_config(rel_dataset, base), base / "run", [stop_at_9], stop=stop)
    finally:
        torch.set_num_threads(before)
    assert result.status == "stopped" and result.step == 9
    names = sorted(p.name for p in (base / "run" / "checkpoints").glob("step*"))
    assert names == ["step000004", "step000008", "step000009"]
    return base / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run", symlinks=True))


def _resume(run_dir: Path):
    events: list[dict] = []
    result = train(config_of(run_dir), run_dir, [lambda e: events.append(e.to_dict())], resume=True)
    [started] = [e for e in events if e["event"] == "run_started"]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    return result, started["start_step"], warnings


@pytest.mark.parametrize("damage", ["garbage", "missing", "empty", "a_list"])
def test_a_lost_latest_json_resumes_from_the_newest_intact_checkpoint(stopped_run, tmp_path, reference, damage):
    run_dir = _copy(stopped_run, tmp_path)
    latest = run_dir / "checkpoints" / "latest.json"
    if damage == "missing":
        latest.unlink()
    else:
        latest.write_text({"garbage": "\x00{not json", "empty": "", "a_list": "[1, 2]"}[damage])
    result, start, warnings = _resume(run_dir)
    assert start == 9, "restarted from step 0 although step000009 is whole"
    [note] = [w for w in warnings if "resuming from" in w]
    assert "step000009" in note and "latest.json" in note
    assert result.status == "finished"
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_deleting_a_damaged_checkpoint_as_told_resumes_from_the_one_before(stopped_run, tmp_path, reference):
    run_dir = _copy(stopped_run, tmp_path)
    newest = run_dir / "checkpoints" / "step000009"
    (newest / "optimizer.pt").write_bytes(b"torn")
    with pytest.raises(RunError) as refused:
        _resume(run_dir)
    assert "step000009" in str(refused.value) and "delete that checkpoint folder" in str(refused.value)
    shutil.rmtree(newest)  # what the hint says
    result, start, warnings = _resume(run_dir)
    assert start == 8
    [note] = [w for w in warnings if "resuming from" in w]
    assert "step000008" in note and "step000009" in note and "not there" in note
    assert_bit_identical(load_lora(result.lora_path), reference)


def test_the_fallback_skips_a_damaged_folder_and_says_so(stopped_run, tmp_path):
    run_dir = _copy(stopped_run, tmp_path)
    (run_dir / "checkpoints" / "latest.json").unlink()
    (run_dir / "checkpoints" / "step000009" / "rng.pt").unlink()
    (run_dir / "checkpoints" / "step000008" / "trainer.json").write_text("[]")
    result, start, warnings = _resume(run_dir)
    assert start == 4
    [note] = [w for w in warnings if "resuming from" in w]
    assert "step000004" in note and "step000009 (no rng.pt)" in note and "step000008" in note


def test_the_fallback_is_told_on_the_command_line(stopped_run, tmp_path):
    run_dir = _copy(stopped_run, tmp_path)
    (run_dir / "checkpoints" / "latest.json").write_text("garbage")
    result = loratui("train", "--resume", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert '"event": "warning"' in result.stdout and "step000009" in result.stdout
    assert '"start_step": 9' in result.stdout
