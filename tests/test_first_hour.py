"""A newcomer's first hour (issue 17): the things met between the demo and a real LoRA."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loratui.engine.errors import ModelError
from loratui.engine.families.hub_access import loadable_spec
from loratui.engine.families.models import resolve_model

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def loratui(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loratui", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in proc.stderr + proc.stdout
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


# --- item 4: where the base model comes from, and offline said at once

def test_hub_id_with_the_hub_unreachable_fails_at_once_in_one_line(tmp_path, small_dataset):
    started = time.monotonic()
    proc = loratui("train", str(small_dataset), "--base-model", "someone/some-model", "--steps", "1",
                   "--output", str(tmp_path / "runs"),
                   env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": CLOSED, "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert time.monotonic() - started < 5
    assert proc.returncode == 1
    [line] = error_lines(proc)
    assert "cannot reach 127.0.0.1:9 to download someone/some-model" in line
    assert "--base-model PATH" in line and "config.json" not in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_hf_hub_offline_is_honoured_without_a_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set") as caught:
        loadable_spec(resolve_model("someone/other-model"))
    assert "unset HF_HUB_OFFLINE" in caught.value.hint


def test_a_downloaded_hub_id_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--someone--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", CLOSED)
    spec = loadable_spec(resolve_model("someone/cached"))
    assert (spec.kind, Path(spec.location), spec.name) == ("diffusers", snapshot, "someone/cached")


# --- item 9: a failed start leaves no run folder and keeps the name free

def test_a_failed_start_leaves_no_run_folder(tmp_path, small_dataset):
    from typer.testing import CliRunner

    from loratui.cli import app

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{}")  # looks like a diffusers folder; will not load
    runs = tmp_path / "runs"
    # in-process: the failure is in the model load, and the suite has torch imported already
    result = CliRunner().invoke(app, ["train", str(small_dataset), "--base-model", str(broken), "--steps", "1",
                                      "--resolution", "64", "--output", str(runs), "--json"])
    assert result.exit_code == 1
    assert "broken-model" in result.output and "Traceback" not in result.output
    assert not (runs / "photos").exists()  # the next run is "photos" again, not "photos-v2"


# --- items 6, 7, 8, 9: one real tiny run with captured output, read many ways

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model):
    """A 4-step tiny run whose captions all start with 'zxq', no --trigger, output captured."""
    from loratui.engine.data.demo import make_demo_dataset

    base = tmp_path_factory.mktemp("first-run")
    dataset = make_demo_dataset(base / "photos", count=4)
    proc = loratui("train", str(dataset), "--base-model", "tiny", "--preset", "Pet", "--steps", "4",
                   "--save-every", "0", "--sample-every", "0", "--resolution", "64", "--batch-size", "2", "--output", str(base / "runs"))
    assert proc.returncode == 0, proc.stderr
    return proc, base / "runs" / "photos"


def test_captions_that_start_alike_name_the_trigger(tiny_run):
    proc, run = tiny_run
    assert "trigger word: 'zxq' (every caption starts with it" in proc.stdout
    card = (run / "README.md").read_text()
    assert "| trigger word | `zxq` |" in card and "| preset | pet |" in card  # --preset Pet taken


def test_the_tiny_lora_says_what_it_is_for(tiny_run):
    from safetensors import safe_open

    proc, run = tiny_run
    card = (run / "README.md").read_text()
    assert "tiny test model" in card and "samples are noise" in card
    assert "from_pretrained" not in card and "models/Lora/" not in card  # nothing that cannot load
    with safe_open(str(run / "photos.safetensors"), "pt") as fh:
        meta = fh.metadata()
    assert meta["ss_base_model_version"] == "loratui_tiny_sd_v1"
    assert "tiny test model" in proc.stdout and "samples are noise" in proc.stdout


def test_progress_lines_come_in_order_and_the_losses_agree(tiny_run):
    proc, run = tiny_run
    lines = proc.stdout.splitlines()
    at = {key: next(i for i, line in enumerate(lines) if line.startswith(key))
          for key in ("loading model 1/1", "schedule:", "training 4/4", "done:")}
    assert at["loading model 1/1"] < at["schedule:"] < at["training 4/4"] < at["done:"]
    shown = float(lines[at["training 4/4"]].split("avg loss ")[1].split()[0])
    card = (run / "README.md").read_text()
    final = float(card.split("| final loss | ")[1].split()[0])
    assert round(final, 3) == shown and "smoothed" in card
    assert "measured once, at step 4" in card and "still falling" not in card  # one validation point


def test_sample_counts_what_it_renders(tiny_run):
    from loratui.engine.validate.xyz import plan_sample
    from loratui.sample_commands import render_count

    _, run = tiny_run
    plan = plan_sample(run, prompts=["zxq"], strengths=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert render_count(plan) == "6 images: (1 checkpoint(s) × 5 strength(s) + the base model at strength 0) × 1 prompt(s)"
    assert plan.total_renders == 6


def test_uncaptioned_images_warn_with_the_fix(tmp_path):
    from loratui.engine.config import build_config
    from loratui.engine.data.demo import make_demo_dataset
    from loratui.engine.planning.run_plan import plan_run

    photos = make_demo_dataset(tmp_path / "photos", count=4)
    for caption in photos.glob("*.txt"):
        caption.unlink()
    [warning] = [w for w in plan_run(build_config(str(photos), "pet", overrides={"base_model": "tiny"})).warnings
                 if "no caption" in w]
    assert f"loratui caption {photos}" in warning and "--trigger WORD" in warning


def test_a_card_without_a_trigger_does_not_ask_for_one(tmp_path):
    from loratui.engine.export.runcard import write_run_card

    card = write_run_card(tmp_path, {"name": "cat", "base_model": "stable-diffusion-v1-5/stable-diffusion-v1-5"}).read_text()
    assert "(none set)" not in card and "trigger word" in card and "put the trigger word" not in card
    assert 'from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")' in card


def test_an_unknown_option_names_the_one_meant():
    from typer.testing import CliRunner

    from loratui.cli import app

    result = CliRunner().invoke(app, ["train", "photos", "--learning-rate", "1e-4"])
    assert result.exit_code == 2 and "Did you mean --lr?" in result.output
