"""A damaged trainer.json or state.json is one clear line naming the file and the fix.

Before, a trainer.json that was a list (or lacked its step) and a state.json that was a JSON
list were `internal error: TypeError/AttributeError …`, and one such state.json made
`loratui runs` fail for every run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reliability_kit import loratui, one_clear_line, standard_config, state_of
from loratui.engine.train.stop import StopSignal
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, rel_dataset) -> Path:
    """A run stopped at step 1 with its checkpoint (the cheapest resumable run)."""
    base = tmp_path_factory.mktemp("damaged")
    stop = StopSignal()
    stop.request("test")
    result = train(standard_config(rel_dataset, base, steps=4, save_every=0), base / "run", stop=stop)
    assert result.status == "stopped" and result.step == 1
    return base / "run"


def _copy(run: Path, where: Path) -> Path:
    return Path(shutil.copytree(run, where, symlinks=True))


@pytest.mark.parametrize("record", ["[1, 2]", '"step"', '{"micro_index": 1}', '{"step": "1", "micro_index": 1}'])
def test_a_bad_trainer_json_is_one_clear_line(stopped_run, tmp_path, record):
    run_dir = _copy(stopped_run, tmp_path / "run")
    (run_dir / "checkpoints" / "step000001" / "trainer.json").write_text(record)
    line = one_clear_line(loratui("train", "--resume", str(run_dir)))
    assert "checkpoints/step000001/trainer.json" in line and "delete that checkpoint folder" in line
    assert state_of(run_dir)["status"] == "failed"


@pytest.mark.parametrize("content", ["[]", '["running", 3]', "7", "null", "{torn"])
def test_a_state_json_that_is_not_an_object_is_one_clear_line_on_resume(stopped_run, tmp_path, content):
    run_dir = _copy(stopped_run, tmp_path / "run")
    (run_dir / "state.json").write_text(content)
    line = one_clear_line(loratui("train", "--resume", str(run_dir)))
    assert f"{run_dir}/state.json" in line and "delete that file" in line and "--resume" in line


def test_following_the_state_json_hint_resumes(stopped_run, tmp_path):
    run_dir = _copy(stopped_run, tmp_path / "run")
    (run_dir / "state.json").write_text("[]")
    one_clear_line(loratui("train", "--resume", str(run_dir)))
    (run_dir / "state.json").unlink()  # what the hint says
    result = loratui("train", "--resume", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert '"start_step": 1' in result.stdout and state_of(run_dir)["status"] == "finished"


def test_stop_on_a_state_json_list_is_one_clear_line(stopped_run, tmp_path):
    run_dir = _copy(stopped_run, tmp_path / "run")
    (run_dir / "state.json").write_text("[]")
    line = one_clear_line(loratui("stop", str(run_dir)))
    assert "state.json" in line and "delete that file" in line


def test_runs_lists_the_other_runs_when_one_state_json_is_damaged(stopped_run, tmp_path):
    good = _copy(stopped_run, tmp_path / "loratui-runs" / "good")
    for name, content in {"listed": "[1]", "garbage": "{torn", "odd": '{"step": "x", "name": 5, "status": 3}'}.items():
        bad = tmp_path / "loratui-runs" / name
        bad.mkdir(parents=True)
        (bad / "state.json").write_text(content)
    result = loratui("runs", "--json", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = {Path(r["run_dir"]).name: r for r in json.loads(result.stdout)
            if Path(r["run_dir"]).parent == (tmp_path / "loratui-runs").resolve()}
    assert rows["good"]["status"] == "stopped" and rows["good"]["step"] == 1
    assert {rows[n]["status"] for n in ("listed", "garbage", "odd")} == {"damaged"}
    table = loratui("runs", cwd=tmp_path)
    assert table.returncode == 0 and "stopped" in table.stdout and "damaged" in table.stdout, table.stderr
