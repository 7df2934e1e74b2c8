"""Data-parallel runs: ``--gpus N`` starts N processes through ``accelerate launch`` (DDP).

loratui does not launch workers itself: accelerate does (its launcher sets up ranks, the
rendezvous and the backend). Every process runs the same loop on its share of each batch;
rank 0 alone writes files and events.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from loratui.engine import atomic
from loratui.engine.config import RunConfig, dump_toml
from loratui.engine.errors import ConfigError
from loratui.engine.runs.registry import CONFIG


def in_launched_worker() -> bool:
    """True inside a process that accelerate (or torchrun) started as one of several."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_data_parallel(config: RunConfig, run_dir: Path, resume: bool, json_out: bool) -> int:
    """Run the training of ``run_dir`` on ``config.gpus`` processes; returns the exit code.

    On a machine without CUDA this only runs with ACCELERATE_USE_CPU=1 (gloo on CPU), which
    is how the tests exercise the multi-process path.
    """
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if not cpu:
        import torch

        visible = torch.cuda.device_count()
        if visible < config.gpus:
            raise ConfigError(
                f"--gpus {config.gpus}: only {visible} CUDA GPU(s) are visible",
                "lower --gpus, or check CUDA_VISIBLE_DEVICES and `loratui doctor`",
            )
    if config.batch_size != "auto" and config.batch_size < config.gpus:
        raise ConfigError(
            f"--batch-size {config.batch_size} is smaller than --gpus {config.gpus}",
            "each GPU needs at least one image per batch: raise --batch-size",
        )
    if not resume:
        atomic.write_text(run_dir / CONFIG, dump_toml(config))
    what = ["--resume", str(run_dir)] if resume else ["--start-prepared", str(run_dir)]
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(config.gpus), "--num_machines", "1",
        "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "loratui", "train", *what, *(["--json"] if json_out else []),
    ]
    return subprocess.call(cmd)
