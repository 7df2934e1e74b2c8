"""`loratui sample --out` given an existing folder writes the grid inside it (issue 14, part 6):
it wrote `FOLDER.png` beside the folder, silently, where the user would not look."""

from __future__ import annotations

import json

import pytest

from reliability_kit import loratui

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def finished(tmp_path_factory, rel_dataset):
    from loratui.engine.train.loop import train
    from tinyrun import tiny_config

    out = tmp_path_factory.mktemp("sample-out")
    result = train(tiny_config(rel_dataset, out, steps=2, save_every=0, sample_every=0, validation="off"),
                   out / "run")
    assert result.status == "finished"
    return out / "run"


QUICK = ("--prompt", "a photo of zxq", "--strengths", "0,1", "--steps", "1", "--checkpoints", "last", "--json")


def test_sample_out_an_existing_folder_writes_the_grid_inside_it(finished, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    result = loratui("sample", str(finished), *QUICK, "--out", str(shots))
    assert result.returncode == 0, result.stderr
    grids = json.loads(result.stdout)["grids"]
    assert grids == [str((shots / "grid-0.png").resolve())], grids
    assert (shots / "grid-0.png").is_file()
    assert not (tmp_path / "shots.png").exists(), "the grid went beside the folder, not into it"


def test_sample_out_a_file_name_is_still_that_file(finished, tmp_path):
    result = loratui("sample", str(finished), *QUICK, "--out", str(tmp_path / "mine"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mine.png").is_file()
