"""Fixtures for the wizard's tests: datasets to edit, and real tiny runs to attach to."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def snap_compare(snap_compare):
    """The snapshot plugin's compare, which shoots once ``run_before`` is done and the screen is
    steady (ui_helpers.steady): a blinking cursor, or a frame still to come, is not caught
    half drawn by how busy the machine is."""
    import inspect

    from ui_helpers import steady

    def compare(app, *args, run_before=None, **kwargs):
        async def ready(pilot) -> None:
            result = run_before(pilot) if run_before is not None else None
            if inspect.isawaitable(result):
                await result
            await steady(pilot)

        return snap_compare(app, *args, run_before=ready, **kwargs)

    return compare


@pytest.fixture
def photos(tmp_path: Path, demo_dataset: Path) -> Path:
    """Six captioned demo images in a fresh folder the test may edit."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted(demo_dataset.glob("demo_0[0-5].*")):
        shutil.copy2(src, folder / src.name)
    return folder


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, demo_dataset: Path, tiny_model: Path) -> Path:
    """A run of the tiny model, trained for real (in this process) to the end."""
    from tinyrun import tiny_config

    from loratui.engine.train.launch import prepare_run_dir
    from loratui.engine.train.loop import train

    out = tmp_path_factory.mktemp("finished")
    config = tiny_config(demo_dataset, out, steps=8, save_every=4, name="finished")
    run_dir = prepare_run_dir(config)
    train(config, run_dir)
    return run_dir
