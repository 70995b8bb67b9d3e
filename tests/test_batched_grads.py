"""Batched gradients (issue 19, item 2): ``torch.autograd.grad(..., is_grads_batched=True)`` and
``torch.autograd.functional.jacobian(..., vectorize=True)`` over the kernel losses equal a loop of
single backward passes, on every backend (Triton in the interpreter here, on CUDA in the GPU script).
A batched ``grad_output`` has no value to read and no storage for a kernel: the backward applies it
with tensor ops, which batch."""

from __future__ import annotations

import pytest
import torch

import focalkit as fk
from device import DEVICE
from focalkit.backends import native, triton

BACKENDS = ["eager"] + (["native"] if native.available() else []) + \
    (["triton"] if triton.unsupported(torch.zeros(1, device=DEVICE)) is None else [])


def _cases(backend, dev):
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(5, 3, generator=g) < 0.4).float().to(dev)
    t = torch.randint(0, 3, (5,), generator=g).to(dev)
    return {
        "sigmoid-none": lambda a: fk.sigmoid_focal_loss(a, y, reduction="none", backend=backend),
        "sigmoid-mean": lambda a: fk.sigmoid_focal_loss(a, y, backend=backend),
        "softmax-none": lambda a: fk.softmax_focal_loss(a, t, reduction="none", backend=backend),
        "softmax-sum": lambda a: fk.softmax_focal_loss(a, t, reduction="sum", backend=backend),
    }


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sigmoid-none", "sigmoid-mean", "softmax-none", "softmax-sum"])
def test_is_grads_batched_and_vectorized_jacobian_equal_a_loop(backend, name):
    dev = DEVICE if backend == "triton" else "cpu"
    dtype = torch.float32 if backend == "triton" else torch.float64
    f = _cases(backend, dev)[name]
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)).to(dev, dtype).requires_grad_()
    out = f(x)
    go = torch.randn((4,) + out.shape, generator=torch.Generator().manual_seed(2)).to(dev, dtype)
    (batched,) = torch.autograd.grad(out, x, go, is_grads_batched=True, retain_graph=True)
    loop = torch.stack([torch.autograd.grad(out, x, g, retain_graph=True)[0] for g in go])
    torch.testing.assert_close(batched, loop)
    jac = torch.autograd.functional.jacobian(f, x, vectorize=True)
    jac_loop = torch.autograd.functional.jacobian(f, x, vectorize=False)
    torch.testing.assert_close(jac, jac_loop)
