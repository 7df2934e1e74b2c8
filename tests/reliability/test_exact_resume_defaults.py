"""Resume is bit-identical at DEFAULT settings (issue 14, part 4): validation on, a sample at
every save, the default thread count, no tag shuffle, killed mid-epoch after each save point.

The reliability suite's standard run switches validation and samples off and uses one thread,
which hid a difference: a frozen text encoder's outputs were cached from batches whose make-up
depended on history (validation and earlier steps), so a resumed run, starting with an empty
cache, conditioned some captions with other rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reliability_kit import REPO, assert_bit_identical, load_lora

# 6 images at batch 2 is 3 steps an epoch: a kill in step 6 resumes from the save at 4 and one
# in step 10 from the save at 8, both in the middle of an epoch
ARGS = ("--base-model", "tiny", "--batch-size", "2", "--steps", "12", "--save-every", "4", "--json")


def _train(*args: str, faults: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LORATUI_FAULTS")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if faults:
        env["LORATUI_FAULTS"] = faults
    return subprocess.run([sys.executable, "-m", "loratui", "train", *args], capture_output=True, text=True,
                          env=env, timeout=600, stdin=subprocess.DEVNULL)


def test_killed_after_each_save_point_and_resumed_at_default_settings_is_bit_identical(tmp_path: Path) -> None:
    from loratui.engine.data.demo import make_demo_dataset

    photos = make_demo_dataset(tmp_path / "photos", count=6)
    fewer = tmp_path / "fewer-sample-steps.toml"  # the one value changed: 4 denoising steps a sample, not 20
    fewer.write_text("sample_steps = 4\n")
    whole = _train(str(photos), *ARGS, "--output", str(tmp_path / "whole"), "--config", str(fewer))
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "part" / "photos"
    killed = _train(str(photos), *ARGS, "--output", str(tmp_path / "part"), "--config", str(fewer),
                    faults="kill@step:6")
    assert killed.returncode == -9 and (run / "checkpoints").is_dir()
    again = _train("--resume", str(run), "--json", faults="kill@step:10")
    assert again.returncode == -9
    assert '"start_step": 4' in again.stdout  # resumed mid-epoch 2 from the save at step 4
    last = _train("--resume", str(run), "--json")
    assert last.returncode == 0, last.stderr
    assert '"start_step": 8' in last.stdout  # and mid-epoch 3 from the save at step 8
    assert list((run / "samples").glob("step000012-*.png")), "samples at default settings"
    want = load_lora(tmp_path / "whole" / "photos" / "photos.safetensors")
    assert_bit_identical(load_lora(run / "photos.safetensors"), want)
