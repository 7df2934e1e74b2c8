"""A resume trains on the data the run started on, or says what changed (issue 14, part 4).

Images added, changed or removed and captions edited made a resume silently train a different
LoRA; a resume from another working directory read another folder of the same relative name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reliability_kit import loratui, one_clear_line, state_of

pytestmark = pytest.mark.reliability

ARGS = ("--base-model", "tiny", "--resolution", "64", "--batch-size", "2", "--steps", "8", "--save-every", "4",
        "--sample-every", "0", "--name", "run")


def _stopped_run(tmp_path: Path, rel_dataset: Path, cwd: Path) -> Path:
    """A run of ``photos`` (a relative path, from ``cwd``) killed in step 6, after its step-4 save."""
    shutil.copytree(rel_dataset, cwd / "photos")
    out = tmp_path / "out"
    killed = loratui("train", "photos", *ARGS, "--output", str(out), faults="kill@step:6", cwd=cwd)
    assert killed.returncode == -9, killed.stderr
    return out / "run"


def test_a_changed_dataset_is_named_on_resume_and_continuing_is_a_choice(tmp_path, rel_dataset):
    start = tmp_path / "start"
    start.mkdir()
    run = _stopped_run(tmp_path, rel_dataset, start)
    photos = start / "photos"
    first = sorted(photos.glob("*.png"))[0]
    caption = sorted(photos.glob("*.txt"))[-1]
    shutil.copy(first, photos / "new-one.png")
    (photos / "new-one.txt").write_text("zxq, a new photo")
    caption.write_text(caption.read_text() + ", edited")

    refused = loratui("train", "--resume", str(run), cwd=start)
    line = one_clear_line(refused)
    assert "the dataset changed since this run started" in line
    assert "1 image added: new-one.png" in line and f"1 image with a changed caption: {caption.with_suffix('.png').name}" in line
    assert "--allow-dataset-change" in line
    assert state_of(run)["status"] != "finished"

    accepted = loratui("train", "--resume", str(run), "--allow-dataset-change", cwd=start)
    assert accepted.returncode == 0, accepted.stderr
    assert "warning: training on the changed dataset: 1 image added: new-one.png" in accepted.stderr
    assert state_of(run)["status"] == "finished"


def test_a_resume_from_another_directory_reads_the_runs_own_folder(tmp_path, rel_dataset):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    run = _stopped_run(tmp_path, rel_dataset, start)
    assert json.loads((run / "dataset.json").read_text())["folder"] == str((start / "photos").resolve())
    shutil.copytree(rel_dataset, elsewhere / "photos")  # another folder of the same relative name
    (sorted((elsewhere / "photos").glob("*.txt"))[0]).write_text("something else entirely")

    resumed = loratui("train", "--resume", str(run), cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert state_of(run)["status"] == "finished"
    from safetensors import safe_open

    with safe_open(str(run / "run.safetensors"), "pt") as lora:
        tags = lora.metadata()["ss_tag_frequency"]
    assert "something else entirely" not in tags  # the captions of the run's own folder
