"""A real full disk (a small tmpfs) filled by another process between saves, and full at the
start (issue 14, part 3). Each case: one clear, resumable error; state.json says failed; no
torn events line; nothing left behind that cannot be resumed; optional writes never lose a run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reliability_kit import assert_bit_identical, load_lora, loratui, one_clear_line, standard_config, write_config
from loratui.engine.errors import RunError
from loratui.engine.events import StepLogged
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MiB tmpfs: a real file system that really fills up (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the disk is full, as another process would."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_disk_filled_between_saves_fails_clearly_and_resumes(small_disk, rel_dataset, reference):
    run_dir = small_disk / "out" / "run"
    cfg = standard_config(rel_dataset, small_disk / "out", validation="train", sample_every=4)
    filled: list[Path] = []

    def fill_at_step_10(event) -> None:
        if isinstance(event, StepLogged) and event.step == 10 and not filled:
            filled.append(fill(small_disk))

    with pytest.raises(RunError) as caught:
        train(cfg, run_dir, [fill_at_step_10])
    assert "could not save step 12" in caught.value.message and "No space left" in caught.value.message
    assert f"loratui train --resume {run_dir}" in caught.value.hint
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "failed" and "could not save step 12" in state["message"]
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line whole: none torn
    assert events[-1]["event"] == "run_failed"
    # space comes back: the run resumes from its step-8 checkpoint to exactly the planned LoRA
    filled[0].unlink()
    resumed = train(cfg, run_dir, resume=True)
    assert resumed.status == "finished" and resumed.step == 12
    assert_bit_identical(load_lora(resumed.lora_path), reference)  # validation and samples change no weight


def test_a_sample_that_cannot_be_written_is_a_warning_and_the_run_finishes(tmp_path, rel_dataset):
    from loratui.engine import faults

    cfg = standard_config(rel_dataset, tmp_path / "out", sample_every=6, steps=6)
    os.environ["LORATUI_FAULTS"] = "disk_full@sample"
    try:
        events: list = []
        result = train(cfg, tmp_path / "out" / "run", [events.append])
    finally:
        del os.environ["LORATUI_FAULTS"]
        faults.load()
    assert result.status == "finished" and result.lora_path.is_file()
    warnings = [e.message for e in events if e.event == "warning"]
    assert any(w.startswith("could not write sample step000006-0.png: No space left") for w in warnings), warnings


def test_a_full_disk_at_the_start_is_one_line_and_leaves_no_folder(small_disk, rel_dataset, tmp_path):
    fill(small_disk)
    out = small_disk / "out"
    config = tmp_path / "run.toml"
    write_config(config, rel_dataset, out, name="run")
    result = loratui("train", "--config", str(config))
    line = one_clear_line(result)
    assert "No space left" in line or "full" in line, line
    assert not (out / "run").exists(), sorted(p.name for p in out.iterdir()) if out.exists() else None
