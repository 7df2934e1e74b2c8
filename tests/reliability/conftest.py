"""Fixtures for the reliability suite (helpers live in reliability_kit.py)."""

from __future__ import annotations

import contextlib

from pathlib import Path

import pytest

from reliability_kit import load_lora, standard_config


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one CPU thread like the child processes (reliability_kit.env); restored after."""
    with _one_thread():
        yield


@pytest.fixture(scope="session")
def rel_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """Four captioned demo images, shared read-only by the whole suite."""
    from loratui.engine.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("reliability") / "photos", count=4)


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, rel_dataset: Path) -> dict:
    """The standard run's final LoRA tensors, trained without interruption (same seed)."""
    from loratui.engine.train.loop import train

    out = tmp_path_factory.mktemp("reference")
    with _one_thread():  # a session fixture is set up before the per-test one_thread
        result = train(standard_config(rel_dataset, out), out / "reference")
    assert result.status == "finished"
    return load_lora(result.lora_path)
