"""Ctrl-C while latents are cached (before the loop takes over the signal) is the user's choice,
not a defect (issue 14, part 6): it was `KeyboardInterrupt … this is a bug or an environment
problem`, state failed. Now: stopped, one line saying how to continue, and a resume finishes."""

from __future__ import annotations

import signal

import pytest

from reliability_kit import Child, events_of, loratui, state_of, write_config

pytestmark = pytest.mark.reliability


def test_ctrl_c_while_caching_latents_stops_the_run_and_resume_finishes(tmp_path, rel_dataset):
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="run", steps=4)
    run_dir = tmp_path / "out" / "run"
    child = Child("--config", str(config), faults="slow@cache")  # each image takes 0.5 s to cache
    assert child.wait_for(lambda e: e["event"] == "phase" and e["phase"] == "caching latents")
    child.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    code, err = child.finish()
    assert code == 130, err
    assert "Traceback" not in err and "bug" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: a run stopped this way continues with")
    state = state_of(run_dir)
    assert state["status"] == "stopped" and "loratui train --resume" in state["message"], state
    assert not [e for e in events_of(run_dir) if e["event"] == "run_failed"]
    resumed = loratui("train", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert state_of(run_dir)["status"] == "finished"
