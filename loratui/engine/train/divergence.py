"""Non-finite losses: skip a bad step, and roll back to the last good state when they persist.

A single NaN or inf step is skipped (never applied). ``MAX_BAD_STEPS`` in a row mean the run has
gone astray: it returns to the last saved state (kept in memory) with half the learning rate,
at most ``MAX_ROLLBACKS`` times before giving up with a clear error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from loratui.engine.errors import RunError
from loratui.engine.train import lora

MAX_BAD_STEPS = 3  # non-finite steps in a row before rolling back
MAX_ROLLBACKS = 3  # rollbacks (each halving the lr) before giving up


def to_cpu(obj: Any) -> Any:
    """A detached CPU copy of a (nested) state dict."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


@dataclass
class Snapshot:
    """The last good state in memory: LoRA weights, optimizer and schedule."""

    step: int
    adapters: list[dict]
    optimizer: dict
    scheduler: dict
    ema: dict | None = None  # --ema: the average rolls back with the weights


@dataclass
class Verdict:
    """What to do after a non-finite step: go on from ``step``; ``message`` for the user."""

    step: int
    message: str


class DivergenceGuard:
    """Watches each step's loss and gradient norm; keeps the state to roll back to."""

    def __init__(self, accelerator, trained: dict, optimizer, lr_scheduler, run_dir: object, fp16: bool,
                 ema: Any = None) -> None:
        self.accelerator = accelerator
        self.trained = trained
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.run_dir = run_dir
        self.fp16 = fp16
        self.ema = ema  # train/ema.py's WeightAverage, or None
        self.bad_streak = 0
        self.rollbacks = 0
        self.snapshot: Snapshot | None = None

    def remember(self, step: int) -> None:
        """Take ``step``'s state as the one to roll back to (at the start and at each save)."""
        self.snapshot = Snapshot(
            step,
            [to_cpu(lora.lora_state_dict(self.accelerator.unwrap_model(m))) for m in self.trained.values()],
            to_cpu(self.optimizer.state_dict()),
            to_cpu(self.lr_scheduler.state_dict()),
            to_cpu(self.ema.state_dict()) if self.ema is not None else None,
        )

    def good(self) -> None:
        self.bad_streak = 0

    def bad(self, step: int) -> Verdict:
        """Step ``step`` (0-based) had a non-finite loss or gradient: skip it, or roll back."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_streak += 1
        if self.bad_streak < MAX_BAD_STEPS:
            with warnings.catch_warnings():  # the schedule moves on without an update, on purpose
                warnings.simplefilter("ignore", UserWarning)
                self.lr_scheduler.step()
            return Verdict(step + 1, f"non-finite loss or gradient at step {step + 1}: step skipped")
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            raise RunError(
                f"{self.run_dir}: training keeps diverging (non-finite loss) after {MAX_ROLLBACKS} "
                "rollbacks with lower learning rates",
                "lower --lr, use --mixed-precision bf16 or no, and check the dataset with loratui check",
            )
        back = self._rollback()
        self.bad_streak = 0
        hint = " (fp16 overflows easily: --mixed-precision bf16 avoids it)" if self.fp16 else ""
        return Verdict(back, (
            f"{MAX_BAD_STEPS} bad steps in a row: rolled back to step {back} and halved the "
            f"learning rate (try {self.rollbacks} of {MAX_ROLLBACKS}){hint}"))

    def _rollback(self) -> int:
        """Restore the snapshot with the learning rate halved; returns the step to go on from."""
        snap = self.snapshot
        assert snap is not None, "remember() runs before the first step"
        for model, adapters in zip(self.trained.values(), snap.adapters):
            lora.load_lora_state_dict(self.accelerator.unwrap_model(model), adapters)
        if self.ema is not None and snap.ema is not None:
            self.ema.load_state_dict(snap.ema)  # copies back to the device: the snapshot stays whole
        sched = self.lr_scheduler
        self.optimizer.load_state_dict(to_cpu(snap.optimizer))
        sched.load_state_dict(to_cpu(snap.scheduler))
        sched.base_lrs = [lr * 0.5 for lr in sched.base_lrs]
        snap.scheduler = to_cpu(sched.state_dict())  # a second rollback keeps the lower lr
        for group, base in zip(self.optimizer.param_groups, sched.base_lrs):
            group["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        return snap.step
