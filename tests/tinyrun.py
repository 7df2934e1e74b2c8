"""Helpers for tests that train the tiny model (a plain module: conftest names can clash)."""

from __future__ import annotations

from pathlib import Path


def tiny_config(dataset: Path, out: Path, **overrides):
    """A config for the tiny model on ``dataset`` that trains in a few seconds."""
    from loratui.engine.config import build_config

    values = dict(
        base_model="tiny", resolution=64, steps=20, save_every=10, batch_size=2, trigger="zxq",
        output_dir=str(out), lr=1e-3,
    )
    values.update(overrides)
    return build_config(str(dataset), "pet", overrides=values)
