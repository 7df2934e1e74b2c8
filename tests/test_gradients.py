"""Gradient clipping at the cost of one read: the same numbers as torch's, and no pass over the
gradients when they are under the limit."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from loratui.engine.train import gradients


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.zeros(shape, requires_grad=True) for shape in [(8, 4), (4, 8), (16,), (3, 3, 2)]]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    return params


@pytest.mark.parametrize("max_norm", [0.5, 1e6, 0.0])
def test_clipping_gives_torchs_numbers(max_norm: float) -> None:
    ours, theirs = _params(), _params()
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm or float("inf"))
    norm = gradients.gradient_norm(Accelerator(cpu=True), ours, max_norm)
    norm_value, factor = norm.tolist()
    gradients.clip(ours, max_norm, norm[0], factor)
    assert norm_value == expected.item()
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)


def test_gradients_under_the_limit_are_not_rewritten() -> None:
    params = _params()
    versions = [p.grad._version for p in params]
    norm = gradients.gradient_norm(Accelerator(cpu=True), params, 1e6)
    gradients.clip(params, 1e6, norm[0], norm[1].item())
    assert [p.grad._version for p in params] == versions  # torch's clip_grad_norm_ multiplies them by 1
    over = gradients.gradient_norm(Accelerator(cpu=True), params, 0.1)
    gradients.clip(params, 0.1, over[0], over[1].item())
    assert torch.nn.utils.get_total_norm([p.grad for p in params]).item() == pytest.approx(0.1, rel=1e-4)


def test_no_gradients_is_a_zero_norm() -> None:
    params = [torch.zeros(3, requires_grad=True)]
    assert gradients.gradient_norm(Accelerator(cpu=True), params, 1.0).tolist() == [0.0, float("inf")]
