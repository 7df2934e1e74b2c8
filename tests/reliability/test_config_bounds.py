"""Config values that meant something else than the user wrote (issue 14, part 5): YAML's
yes/no read as a number, and a schedule of millions of steps accepted without a word. Each is
one `error:` line before any training, from a real `loratui` process."""

from __future__ import annotations

import subprocess

import pytest

from reliability_kit import loratui, one_clear_line

pytestmark = pytest.mark.reliability

QUICK = ("--base-model", "tiny", "--resolution", "64", "--save-every", "0", "--sample-every", "0")


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("rank.yaml", "lora_rank: yes\n", "lora_rank = true"),
        ("lr.yaml", "learning_rate: on\n", "learning_rate = true"),
        ("epochs.yaml", "epochs: no\n", "epochs = false"),
        ("rank.toml", "rank = true\n", "rank = True"),
        ("seed.toml", "seed = false\n", "seed = False"),
    ],
)
def test_true_or_false_for_a_number_is_one_clear_line(tmp_path, rel_dataset, name, text, says):
    """`lora_rank: yes` (YAML 1.1 reads yes as true) trained at rank 1 without a word."""
    config = tmp_path / name
    config.write_text(text)
    out = tmp_path / "out"
    result = loratui("train", str(rel_dataset), "--config", str(config), *QUICK, "--steps", "2",
                     "--output", str(out))
    line = one_clear_line(result)
    assert name in line and says in line and "must be a number" in line, line
    assert not out.exists(), "a run folder was made for a refused config"


def test_a_schedule_of_millions_of_steps_is_refused(tmp_path, rel_dataset):
    """`--epochs 10000 --repeats 1000` was accepted as millions of steps with no warning."""
    try:
        result = loratui("train", str(rel_dataset), *QUICK, "--epochs", "10000", "--repeats", "1000",
                         "--output", str(tmp_path / "out"), timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("a 10,000-epoch × 1,000-repeat run started training")
    line = one_clear_line(result)
    assert "over the limit of 1,000,000" in line, line
    assert all(flag in line for flag in ("--epochs", "--repeats", "--steps")), line


def test_the_step_bound_holds_for_derived_schedules_too():
    """The bound is on the schedule, wherever its size comes from (here kohya folder repeats)."""
    from loratui.engine.errors import ConfigError
    from loratui.engine.planning.presets import MAX_TOTAL_STEPS, derive_schedule

    fine = derive_schedule([100], 1, 1500, epochs=10000, folder_repeats=True)
    assert fine.total_steps == MAX_TOTAL_STEPS  # exactly at the limit is allowed
    with pytest.raises(ConfigError, match="over the limit"):
        derive_schedule([101], 1, 1500, epochs=10000, folder_repeats=True)
