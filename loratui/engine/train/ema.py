"""An exponential moving average (EMA) of the trained adapter weights (``--ema keep|final``).

The average is kept in fp32 on the training device and moves after each optimizer step that
was applied (a skipped non-finite step does not move it), at the decay
``min(ema_decay, (1 + n) / (10 + n))`` for the ``n``-th update: the usual warm-up, so the first
steps are not dominated by the random initial weights.

``applied()`` swaps the average into the model for a block (a saved file, samples, validation)
and puts the trained weights back bit for bit, so a run that saves or samples at a step trains
on exactly as one that did not (and a resumed run equals an uninterrupted one).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from loratui.engine.train.kept_weights import restored

MODES = ("off", "keep", "final")


def decay_at(updates: int, decay: float) -> float:
    """The decay of the ``updates``-th update (1 for the first): warm-up, capped at ``decay``."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightAverage:
    """The EMA of ``params`` (name -> trainable parameter); ``mode`` is the run's ``--ema``:
    ``final`` means the average is the LoRA to use (files, samples, validation)."""

    def __init__(self, params: dict[str, Any], decay: float, mode: str = "keep") -> None:
        self.params = params
        self.decay = decay
        self.mode = mode
        self.updates = 0
        self.shadow: dict[str, Any] = {}
        self.reset()

    @classmethod
    def of(cls, trained: dict[str, Any], accelerator: Any, decay: float, mode: str) -> "WeightAverage":
        """The EMA of every trainable parameter of the ``trained`` models (component -> model),
        named ``component.parameter``."""
        params = {f"{component}.{name}": p
                  for component, model in trained.items()
                  for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
        return cls(params, decay, mode)

    def reset(self) -> None:
        """Start the average again at the weights the model holds now (no updates yet)."""
        self.updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in self.params.items()}

    def update(self) -> None:
        """Move the average towards the current weights (right after an applied optimizer step)."""
        import torch

        self.updates += 1
        weight = 1.0 - decay_at(self.updates, self.decay)
        with torch.no_grad():
            # shadow += (1 - d) * (w - shadow): one fused kernel for all tensors
            torch._foreach_lerp_(list(self.shadow.values()), [p.detach().float() for p in self.params.values()],
                                 weight)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The average in the model inside the block; the trained weights back, exactly, after."""
        import torch

        with restored(self.params.values()) as params:
            with torch.no_grad():
                for p, value in zip(params, self.shadow.values()):
                    p.copy_(value)
            yield

    def state_dict(self) -> dict[str, Any]:
        """The average and its update count (a checkpoint, a rollback snapshot)."""
        return {"updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back a ``state_dict()``; a checkpoint of other weights is a clear error."""
        shadow = state["shadow"]
        if shadow.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() - shadow.keys()) or sorted(shadow.keys() - self.shadow.keys())
            raise ValueError(f"the EMA in the checkpoint does not match this run's adapters ({missing[0]})")
        device = next(iter(self.shadow.values())).device if self.shadow else None
        self.shadow = {name: shadow[name].to(device=device, dtype=self.shadow[name].dtype, copy=True)
                       for name in self.shadow}
        self.updates = int(state["updates"])


def in_use(ema: WeightAverage | None) -> contextlib.AbstractContextManager:
    """The weights to use (save, sample, validate) inside the block: the average with
    ``--ema final``, else the trained weights as they are."""
    return ema.applied() if ema is not None and ema.mode == "final" else contextlib.nullcontext()
