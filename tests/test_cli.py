"""The command line end to end, in a real subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def loratui(*args: str, cwd: Path | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loratui", *args],
        capture_output=True, text=True, cwd=cwd, timeout=timeout, env={**os.environ, "COLUMNS": "100"},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.slow  # a full run in a subprocess
def test_train_json_end_to_end(tmp_path, small_dataset, tiny_model):
    proc = loratui(
        "train", str(small_dataset), "--preset", "pet", "--base-model", "tiny", "--json",
        "--steps", "8", "--save-every", "4", "--resolution", "64", "--batch-size", "2",
        "--trigger", "zxq", "--output", str(tmp_path / "runs"),
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] in ("phase", "warning", "run_started") and kinds[-1] == "run_finished"
    assert kinds.count("step") == 8 and kinds.count("checkpoint_saved") == 1
    assert all("t" in e for e in events)
    run = tmp_path / "runs" / "photos"
    assert Path(events[-1]["path"]) == run / "photos.safetensors"
    for name in ("config.toml", "state.json", "events.jsonl", "photos.safetensors",
                 "photos-step000004.safetensors", "diffusers/pytorch_lora_weights.safetensors",
                 "README.md", "checkpoints/latest.json"):
        assert (run / name).is_file(), name
    assert json.loads((run / "state.json").read_text())["status"] == "finished"
    # a second run of the same folder gets the next free name; nothing is overwritten
    again = loratui("train", str(small_dataset), "--base-model", "tiny", "--json", "--steps", "1",
                    "--resolution", "64", "--output", str(tmp_path / "runs"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "runs" / "photos-v2" / "photos-v2.safetensors").is_file()


def test_human_output_shows_schedule_and_result(tmp_path, small_dataset, tiny_model):
    proc = loratui("train", str(small_dataset), "--base-model", "tiny", "--steps", "3", "--resolution", "64",
                   "--output", str(tmp_path), "--name", "mine")
    assert proc.returncode == 0, proc.stderr
    assert "schedule: 4 images" in proc.stdout
    assert "<lora:mine:0.7>" in proc.stdout and "mine.safetensors" in proc.stdout


def test_config_file_and_flags(tmp_path, small_dataset, tiny_model):
    cfg = tmp_path / "lora.yaml"
    cfg.write_text(f"train_data_dir: {small_dataset}\nbase_model: tiny\nlora_rank: 4\nresolution: 64\n"
                   f"output_dir: {tmp_path / 'o'}\nsave_steps: 0\nbatch_size: 2\n")
    proc = loratui("train", "--config", str(cfg), "--steps", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    started = next(json.loads(l) for l in proc.stdout.splitlines() if '"run_started"' in l)
    assert started["config"]["rank"] == 4 and started["total_steps"] == 2


def test_batch_size_auto_from_the_command_line(tmp_path, small_dataset, tiny_model):
    proc = loratui("train", str(small_dataset), "--base-model", "tiny", "--steps", "2", "--resolution", "64",
                   "--batch-size", "auto", "--output", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    started = next(e for e in events if e["event"] == "run_started")
    assert isinstance(started["config"]["batch_size"], int)  # decided before the run starts
    assert any(e["event"] == "warning" and e["message"].startswith("batch size auto") for e in events)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "{missing}", "--base-model", "tiny"], ["no such folder"]),
        (["train", "{empty}", "--base-model", "tiny"], ["no images found"]),
        (["train", "{data}", "--base-model", "{missing}/model.safetensors"], ["no such model"]),
        (["train", "{data}", "--base-model", "{pickle}"], ["pickle", "--allow-pickle"]),
        (["train", "{data}", "--base-model", "tiny", "--rank", "0"], ["--rank", "rank = 0"]),
        (["train", "{data}", "--preset", "cats"], ["unknown preset", "'cats'"]),
        (["train", "{data}", "--base-model", "tiny", "--batch-size", "lots"], ["--batch-size", "or auto"]),
        (["train", "--resume", "{empty}"], ["not a loratui run folder"]),
        (["stop", "{empty}"], ["not a loratui run folder"]),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, small_dataset, args, needles):
    empty = tmp_path / "empty"
    empty.mkdir()
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    subs = {"{missing}": str(tmp_path / "missing"), "{empty}": str(empty), "{data}": str(small_dataset),
            "{pickle}": str(pickle)}
    filled = []
    for arg in args:
        for key, value in subs.items():
            arg = arg.replace(key, value)
        filled.append(arg)
    proc = loratui(*filled, "--output", str(tmp_path / "o")) if filled[0] == "train" and "--resume" not in filled \
        else loratui(*filled)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.safetensors"))


def test_unknown_flag_exits_non_zero_without_traceback(small_dataset):
    proc = loratui("train", str(small_dataset), "--rnak", "4")
    assert proc.returncode == 2 and "No such option" in proc.stderr and "Traceback" not in proc.stderr


def test_help_presets_and_doctor():
    assert loratui("--help").returncode == 0
    presets = loratui("presets")
    assert presets.returncode == 0 and "person" in presets.stdout and "0.00015" in presets.stdout
    doctor = loratui("doctor", "--json")
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["items"]["cuda available"] in (True, False)
    assert report["items"]["torch"] != "not installed"


def test_presets_with_folder_shows_the_derivation(demo_dataset):
    proc = loratui("presets", str(demo_dataset), "--base-model", "tiny")  # the demo's 96 px images are for tiny
    assert proc.returncode == 0, proc.stderr
    assert "person" in proc.stdout and "12 images ×" in proc.stdout


@pytest.mark.slow  # measures three presets for two families
def test_presets_plans_for_the_base_model_as_the_wizard_does(demo_dataset):
    """The family, resolution and measured memory the wizard's cards show, on the command line."""
    proc = loratui("presets", str(demo_dataset), "--base-model", "tiny-sdxl")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert text.count("SDXL at 64 px") == 3 and "needs ≈" in text


def test_building_a_tiny_model_prints_nothing(tmp_path):
    """The first command that needs a tiny model builds it: the libraries' save bars ("Writing
    model shards") and torchvision notes stay out of that command's output."""
    proc = subprocess.run(
        [sys.executable, "-c", "from loratui.engine.families.tiny import tiny_model_dir; tiny_model_dir('tiny')"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "LORATUI_CACHE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")


def test_demo_headless(tmp_path, tiny_model):
    proc = loratui("demo", "--headless", "--steps", "6", "--output", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "demo.safetensors").is_file()
    assert "done:" in proc.stdout and "demo.safetensors" in proc.stdout


def test_runs_lists_a_finished_run(tmp_path, small_dataset, tiny_model):
    proc = loratui("train", str(small_dataset), "--base-model", "tiny", "--steps", "1", "--resolution", "64",
                   "--output", str(tmp_path / "loratui-runs"), "--json")
    assert proc.returncode == 0
    listed = json.loads(loratui("runs", "--json", cwd=tmp_path).stdout)
    mine = [r for r in listed if Path(r["run_dir"]).parent == (tmp_path / "loratui-runs").resolve()]
    assert mine and mine[0]["status"] == "finished" and mine[0]["step"] == 1


def test_detach_runs_in_its_own_session_and_finishes(tmp_path, small_dataset, tiny_model):
    import time

    proc = loratui("train", str(small_dataset), "--base-model", "tiny", "--steps", "10", "--resolution", "64",
                   "--output", str(tmp_path / "runs"), "--detach")
    assert proc.returncode == 0, proc.stderr
    assert "in the background" in proc.stdout and "loratui stop" in proc.stdout
    run = tmp_path / "runs" / "photos"
    state = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").exists() else {}
        if state.get("status") in ("finished", "failed"):
            break
        time.sleep(0.2)
    assert state.get("status") == "finished", (run / "output.log").read_text()
    assert os.getsid(0) != state["pid"]  # it was its own session leader, not ours
    assert (run / "photos.safetensors").is_file()
