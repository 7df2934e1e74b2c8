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
