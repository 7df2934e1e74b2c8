"""`loratui check` as a user runs it: a real subprocess, exit codes, JSON and human output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import typer
from dataset_corpus import EXPECTED, TRIGGER, good_folder
from typer.testing import CliRunner

from loratui import dataset_commands


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "loratui", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_check_json_on_the_bad_corpus(bad_corpus):
    proc = run_cli("check", str(bad_corpus), "--trigger", TRIGGER, "--json")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    found = {(f["path"], f["code"]) for f in data["findings"]}
    assert set(EXPECTED.items()) <= found
    assert data["summary"]["errors"] > 0 and data["images"] > 40


def test_check_human_output_groups_findings_and_ends_with_a_verdict(bad_corpus):
    proc = run_cli("check", str(bad_corpus), "--trigger", TRIGGER)
    assert proc.returncode == 1
    out = proc.stdout
    assert out.index("errors") < out.index("warnings")
    assert "truncated.jpg" in out and "fix:" in out
    assert out.rstrip().splitlines()[-1].startswith("Not ready")


def test_check_clean_folder_exits_0(tmp_path):
    good_folder(tmp_path, 16)
    proc = run_cli("check", str(tmp_path), "--preset", "pet", "--trigger", TRIGGER)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Ready" in proc.stdout


def test_check_warnings_only_exits_0(tmp_path):
    good_folder(tmp_path, 10)
    proc = run_cli("check", str(tmp_path), "--json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["summary"]["verdict"] == "warnings"


def test_user_errors_are_one_line_without_traceback(tmp_path):
    proc = run_cli("check", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert str(tmp_path / "missing") in proc.stderr
    proc = run_cli("check", str(tmp_path), "--preset", "anime")
    assert proc.returncode == 1 and proc.stderr.startswith("error: unknown preset")


def test_register_mounts_check_on_any_typer_app(tmp_path):
    app = typer.Typer()
    dataset_commands.register(app)
    good_folder(tmp_path, 3)
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--json"])
    assert result.exit_code == 1  # three images is too few: an error
    codes = [f["code"] for f in json.loads(result.stdout)["findings"]]
    assert codes == ["too_few_images"]


def test_help_stays_fast_and_light():
    code = (
        "import sys, time; t = time.perf_counter(); import loratui.cli; "
        "print(time.perf_counter() - t); "
        "print(any(m in sys.modules for m in ('torch', 'transformers', 'PIL', 'rich', 'numpy')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    seconds, heavy = proc.stdout.split()
    assert heavy == "False"
    proc = run_cli("--help")
    assert proc.returncode == 0 and "check" in proc.stdout and "caption" in proc.stdout
    assert float(seconds) < 0.3


def test_progress_bar_shows_on_a_terminal_for_large_folders_only():
    import io

    from rich.console import Console

    from loratui.dataset_commands import StageProgress

    shown = io.StringIO()
    with StageProgress(Console(file=shown, force_terminal=True, width=100), "checking", min_total=10) as update:
        for done in range(0, 21, 5):
            update("pixels", done, 20)
    assert "checking: pixels" in shown.getvalue()
    quiet = io.StringIO()
    with StageProgress(Console(file=quiet, force_terminal=True), "checking", min_total=10) as update:
        update("pixels", 5, 5)  # a small folder
    with StageProgress(Console(file=quiet, force_terminal=False), "checking", min_total=10) as update:
        update("pixels", 20, 20)  # not a terminal (a pipe, a log file)
    assert quiet.getvalue() == ""
