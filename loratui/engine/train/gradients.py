"""The adapters' gradient norm, and clipping it to ``max_grad_norm``, at the cost of one read.

torch's (and accelerate's) ``clip_grad_norm_`` multiplies every gradient by the clip factor at
every step, a factor of exactly 1 whenever the norm is under the limit (the usual case for a
LoRA): one more pass over the adapter tensors that changes nothing, plus accelerate's per-tensor
checks; on the CPU 0.3-0.6 ms of the tiny model's ~45 ms step (benchmarks/RESULTS.md, "Where a
step's time goes"). Here the norm and the factor are computed on the device, the step reads
them with its loss in the one device-to-host read it makes anyway, and the gradients are scaled
only when the factor is under 1: the same numbers, bit for bit, as torch's clipping.
"""

from __future__ import annotations

from typing import Any

EPS = 1e-6  # torch's: max_norm / (norm + eps)


def gradient_norm(accelerator: Any, params: list, max_norm: float) -> Any:
    """[norm, clip factor] of the gradients of ``params`` as one fp32 tensor on their device
    (``max_norm`` 0: no limit, the factor is inf). With fp16 mixed precision the loss scale is
    taken out of the gradients first, as accelerate's clipping does."""
    import torch

    accelerator.unscale_gradients()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor([0.0, float("inf")])
    norm = torch.nn.utils.get_total_norm(grads, 2.0).float()
    factor = (max_norm or float("inf")) / (norm + EPS)
    return torch.stack([norm, factor])


def clip(params: list, max_norm: float, norm: Any, factor: float) -> None:
    """Scale the gradients to ``max_norm`` when ``factor`` (read from ``gradient_norm``) says
    they are over it; torch would multiply them by exactly 1 otherwise."""
    if factor < 1.0:
        import torch

        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
