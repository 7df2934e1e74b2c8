"""`cd photos && loratui train .` would put the run folder inside the dataset: refused first.

Before, the run went to `photos/loratui-runs/…`, and the next run (and `--resume`) trained on
that run's own sample images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reliability_kit import loratui, one_clear_line

pytestmark = pytest.mark.reliability

ARGS = ("--base-model", "tiny", "--resolution", "64", "--steps", "2", "--save-every", "0", "--sample-every", "0")


@pytest.fixture
def photos(tmp_path, rel_dataset) -> Path:
    return Path(shutil.copytree(rel_dataset, tmp_path / "photos"))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_train_dot_inside_the_dataset_is_refused_before_any_run_folder(photos):
    before = _files(photos)
    result = loratui("train", ".", *ARGS, cwd=photos)
    line = one_clear_line(result)
    assert f"{photos.resolve()}/loratui-runs" in line and f"inside the dataset {photos.resolve()}" in line
    assert "--output" in line
    assert _files(photos) == before, "something was written inside the dataset"


@pytest.mark.parametrize("inside, output", [(True, "."), (False, "photos"), (False, "photos/runs/deeper")])
def test_any_output_inside_the_dataset_is_refused(photos, inside, output):
    before = _files(photos)
    folder, cwd = (".", photos) if inside else ("photos", photos.parent)
    line = one_clear_line(loratui("train", folder, *ARGS, "--output", output, cwd=cwd))
    assert "inside the dataset" in line and "--output" in line
    assert _files(photos) == before


def test_detach_is_refused_the_same_way(photos):
    line = one_clear_line(loratui("train", ".", *ARGS, "--detach", cwd=photos))
    assert "inside the dataset" in line and not (photos / "loratui-runs").exists()


def test_an_output_beside_the_dataset_still_trains(photos):
    result = loratui("train", ".", *ARGS, "--output", "../runs", cwd=photos)
    assert result.returncode == 0, result.stderr
    assert (photos.parent / "runs" / "photos" / "photos.safetensors").is_file()
