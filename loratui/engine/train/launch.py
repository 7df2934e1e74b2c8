"""Starting a run as its own process, detached from the terminal that asked for it.

The wizard and ``train --detach`` both use this: the run gets its own session (no
controlling terminal, so an SSH drop's SIGHUP never reaches it), its output goes to the run
folder, and whoever started it follows ``events.jsonl``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loratui.engine import atomic
from loratui.engine.config import RunConfig, dump_toml
from loratui.engine.data.dataset import scan
from loratui.engine.errors import ConfigError, RunError
from loratui.engine.families.models import resolve_model
from loratui.engine.runs.registry import CONFIG, next_run_dir, read_state

LOG = "output.log"


@dataclass(frozen=True)
class Launched:
    run_dir: Path
    pid: int


def prepare_run_dir(config: RunConfig) -> Path:
    """Check the model and dataset cheaply, then make the run folder (next free name)."""
    refuse_output_inside_dataset(config)
    resolve_model(config.base_model, config.allow_pickle)
    scan(config.dataset).require_images()
    base_name = config.name or Path(config.dataset).resolve().name
    run_dir = next_run_dir(Path(config.output_dir), base_name)
    run_dir.mkdir(parents=True)
    return run_dir


def refuse_output_inside_dataset(config: RunConfig) -> None:
    """A ConfigError when the run folder would go inside the dataset (``cd photos; loratui train .``).

    The dataset scan would then find the run's sample images, and the next run (or a resume)
    would train on them.
    """
    dataset = Path(config.dataset).resolve()
    output = Path(config.output_dir).resolve()
    if output.is_relative_to(dataset):
        raise ConfigError(
            f"{output}: the run folder would go inside the dataset {dataset}, "
            "and the next run would train on its sample images",
            f"pass --output a folder outside it, e.g. --output {dataset.parent / 'loratui-runs'}",
        )


def launch_detached(config: RunConfig, run_dir: Path, wait_s: float = 60.0) -> Launched:
    """Start training ``config`` in ``run_dir`` as a detached process; return once it is running.

    Raises RunError with the last line of its output when the process dies before starting.
    """
    atomic.write_text(run_dir / CONFIG, dump_toml(config))
    with open(run_dir / LOG, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loratui", "train", "--start-prepared", str(run_dir), "--json"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and proc.poll() is None and not read_state(run_dir):
        time.sleep(0.05)
    code = proc.poll()
    if code not in (None, 0) and read_state(run_dir).get("status") != "running":
        lines = (run_dir / LOG).read_text(errors="replace").strip().splitlines()
        errors = [line for line in lines if line.startswith("error:")]
        raise RunError(f"{run_dir}: the run did not start: {(errors or lines or ['no output'])[-1]}")
    return Launched(run_dir, proc.pid)
