"""A real full disk under torch.save: torch raises RuntimeError, not OSError.

`torch.save` to a full disk fails with `RuntimeError: [enforce fail at inline_container.cc:672]
. unexpected pos 576 vs 534` (safetensors with `SafetensorError: … (os error 28)`); the run
showed that as `internal error: RuntimeError …`. The fault `torch_disk_full@save:N` makes the
torch.save of the step-N `optimizer.pt` raise that RuntimeError, word for word.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from reliability_kit import (
    assert_bit_identical,
    complete_checkpoints,
    config_of,
    load_lora,
    loratui,
    one_clear_line,
    partial_files,
    state_of,
    write_config,
)
from loratui.engine.train.checkpoint import write_failure
from loratui.engine.train.loop import train

pytestmark = pytest.mark.reliability


def test_a_full_disk_under_torch_save_is_the_clear_resumable_error(tmp_path, rel_dataset, reference):
    config = write_config(tmp_path / "run.toml", rel_dataset, tmp_path / "out", name="run")
    run_dir = tmp_path / "out" / "run"
    result = loratui("train", "--config", str(config), faults="torch_disk_full@save:8")
    line = one_clear_line(result)
    assert "could not save step 8" in line and "optimizer.pt" in line and "No space left" in line
    assert f"loratui train --resume {run_dir}" in line
    assert state_of(run_dir)["status"] == "failed"
    assert partial_files(run_dir) == [] and complete_checkpoints(run_dir) == [4]
    resumed = train(config_of(run_dir), run_dir, resume=True)  # room again
    assert resumed.status == "finished"
    assert_bit_identical(load_lora(resumed.lora_path), reference)


def test_only_write_failures_are_taken_for_a_full_disk():
    file = Path("optimizer.pt")
    short = write_failure(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), file)
    assert isinstance(short, OSError) and short.errno == errno.ENOSPC and "optimizer.pt" in short.strerror
    failed = write_failure(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"), file)
    assert failed is not None and failed.errno == errno.ENOSPC
    quota = write_failure(Exception("Error while serializing: I/O error: Disk quota exceeded (os error 122)"), file)
    assert quota is not None and quota.errno == errno.EDQUOT
    empty = write_failure(RuntimeError("basic_ios::clear: iostream error"), file)  # not one byte fitted
    assert empty is not None and empty.errno == errno.ENOSPC
    for other in (RuntimeError("CUDA error: an illegal memory access was encountered"),
                  RuntimeError("Expected all tensors to be on the same device"),
                  ValueError("unexpected pos 1 vs 2")):
        assert write_failure(other, file) is None, other
