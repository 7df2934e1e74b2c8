"""An output folder no run can be made in (issue 14, part 6): `--output` naming a file, or a
folder without write permission, was an internal error (PermissionError, NotADirectoryError)
after the model had loaded. Each is one clear line naming the folder and the fix, and no run
folder is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from reliability_kit import env, loratui, one_clear_line

pytestmark = pytest.mark.reliability

QUICK = ("--base-model", "tiny", "--steps", "2", "--save-every", "0", "--sample-every", "0")


@pytest.mark.parametrize("where", ["runs.txt", "runs.txt/more"], ids=["a-file", "under-a-file"])
def test_an_output_that_is_a_file_is_one_clear_line(tmp_path, rel_dataset, where):
    (tmp_path / "runs.txt").write_text("not a folder")
    result = loratui("train", str(rel_dataset), *QUICK, "--output", str(tmp_path / where))
    line = one_clear_line(result)
    assert f"{tmp_path / 'runs.txt'}: the output folder is a file, not a folder" in line, line
    assert "pass --output a folder" in line, line
    assert (tmp_path / "runs.txt").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="root writes everywhere")
@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "detach"])
def test_a_read_only_output_folder_is_one_clear_line(tmp_path, rel_dataset, detach):
    locked = tmp_path / "runs"
    locked.mkdir()
    locked.chmod(0o555)
    # root writes anywhere; without CAP_DAC_OVERRIDE it meets the permissions as a user does
    drop = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
             "--inh-caps", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else [])
    try:
        result = subprocess.run(
            [*drop, sys.executable, "-m", "loratui", "train", str(rel_dataset), *QUICK, "--output", str(locked),
             *(["--detach"] if detach else [])],
            capture_output=True, text=True, env=env(), timeout=120, stdin=subprocess.DEVNULL)
        line = one_clear_line(result)
        assert f"{locked}: cannot make the run folder there (Permission denied)" in line, line
        assert "pass --output a folder you can write to" in line, line
        assert list(locked.iterdir()) == []  # no run folder, no probe left
    finally:
        locked.chmod(0o755)
