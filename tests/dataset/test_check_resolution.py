"""`loratui check` judges a dataset as `train` would train it (issue 17, item 5): at the
resolution the preset and base model give, the demo dataset for the tiny model it is made for,
and captions counted for every image."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from loratui.cli import app
from loratui.engine.data.demo import DEMO_MARKER

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # a hub id: its family is known without a download


def check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


def test_the_demo_dataset_is_ready_for_the_model_it_is_made_for(demo_dataset):
    result = check(str(demo_dataset))
    assert result.exit_code == 0, result.output
    assert "12 usable, 12 captioned" in result.output
    assert "the tiny model (tiny) at 64 px" in result.output and "Ready" in result.output


def test_check_judges_at_the_resolution_train_would_use(demo_dataset, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(demo_dataset, photos)
    (photos / DEMO_MARKER).unlink()  # any folder of 96-128 px images
    default = check(str(photos), "--json")
    assert default.exit_code == 1  # SD-1.5's 512 px: train would skip every image
    summary = json.loads(default.output)["summary"]
    assert summary["by_code"]["too_small"] == 12
    assert summary["captioned"] == 12  # unusable, but captioned all the same
    assert check(str(photos), "--resolution", "96").exit_code == 0
    tiny = check(str(photos), "--base-model", "tiny-sdxl", "--preset", "Pet")
    assert tiny.exit_code == 0 and "at 64 px (preset pet)" in tiny.output
    named = check(str(demo_dataset), "--base-model", SD15)  # the demo for a real model: too small
    assert named.exit_code == 1 and "SD-1.5 at 512 px" in named.output
