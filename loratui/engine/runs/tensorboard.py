"""TensorBoard as one more consumer of the event stream, through accelerate's tracker.

Off by default (``--tensorboard``); needs the ``tensorboard`` package (``pip install
'loratui[tensorboard]'``). View it over SSH with a port forward:
``ssh -L 6006:localhost:6006 gpu-box`` then ``tensorboard --logdir RUN_DIR/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path

from loratui.engine.errors import ConfigError
from loratui.engine.events import Event


class TensorBoardSink:
    """Logs loss, lr and speed per step, validation loss per checkpoint, and samples."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from accelerate.tracking import TensorBoardTracker
        except ImportError as exc:  # accelerate is a dependency; tensorboard may be missing
            raise ConfigError("--tensorboard needs the tensorboard package", "pip install tensorboard") from exc
        try:
            self.tracker = TensorBoardTracker("", run_dir / "tensorboard")
            self.tracker.start()  # accelerate opens the writer here, not in __init__
        except (ImportError, ModuleNotFoundError) as exc:
            raise ConfigError("--tensorboard needs the tensorboard package", "pip install tensorboard") from exc

    def __call__(self, event: Event) -> None:
        e = event
        if e.event == "step":
            self.tracker.log(
                {"train/loss": e.loss, "train/lr": e.lr, "train/it_per_s": e.it_per_s,  # type: ignore[attr-defined]
                 "train/mem_used_gib": e.mem_used / 2**30},  # type: ignore[attr-defined]
                step=e.step,  # type: ignore[attr-defined]
            )
        elif e.event == "validation":
            self.tracker.log({"validation/loss": e.loss}, step=e.step)  # type: ignore[attr-defined]
        elif e.event == "sample_saved":
            import numpy as np
            from PIL import Image

            with Image.open(e.path) as im:  # type: ignore[attr-defined]
                pixels = np.asarray(im.convert("RGB"))
            name = Path(e.path).stem.split("-", 1)[-1]  # type: ignore[attr-defined]
            self.tracker.log_images({f"samples/{name}": pixels[None]}, step=e.step, dataformats="NHWC")  # type: ignore[attr-defined]
        elif e.event in ("run_finished", "run_stopped", "run_failed"):
            self.tracker.finish()
