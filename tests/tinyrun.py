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


def stopped_then_resumed(cfg, run_dir: Path, at: int):
    """Train ``cfg`` into ``run_dir``, stop it at step ``at`` as a stop request would, then resume
    it to the end; returns (the stopped result, the resumed result)."""
    from loratui.engine.events import StepLogged
    from loratui.engine.train.stop import StopSignal
    from loratui.engine.train.loop import train

    stop = StopSignal()

    def stop_at(event) -> None:
        if isinstance(event, StepLogged) and event.step == at:
            stop.request("test")

    part = train(cfg, run_dir, [stop_at], stop=stop)
    return part, train(cfg, run_dir, resume=True)
