"""The Triton kernels on their own device (``tests/device.py``): a CUDA GPU where
``TRITON_INTERPRET=0`` (run by ``benchmarks/gpu_check.sh``), the CPU under Triton's interpreter in CI.
Same code paths: layouts, halves (with the GPU's own exp/log: tolerances below), ignore masks,
``inplace_grad``, second order, bad indices, and, on a GPU only, 64-bit offsets (a tensor of more than
2^31 elements). Every reference is built on the CPU from CPU copies of every tensor argument."""

from __future__ import annotations

import pytest
import torch

import focalkit as fk
from device import DEVICE as DEV, ON_GPU, cpu_reference

pytest.importorskip("triton")

# (rtol, atol) against float64 eager, the GPU's exp/log included
TOL = {torch.float32: (2e-5, 1e-6), torch.float16: (1e-2, 1e-3), torch.bfloat16: (4e-2, 4e-3)}
DTYPES = list(TOL)


def _fwd_bwd(fn, x, *args, **kw):
    x = x.detach().clone().requires_grad_()
    out = fn(x, *args, **kw)
    out.sum().backward()
    return out.detach(), x.grad


def _compare(fn, x, dtype, *args, **kw):
    """``fn(x, *args, backend=..., **kw)`` with Triton on the device against eager in float64 on the CPU."""
    xa = x.to(DEV, dtype)
    out, grad = _fwd_bwd(fn, xa, *args, backend="triton", **kw)
    ref, ref_grad = cpu_reference(lambda x_, *a, **k: _fwd_bwd(fn, x_, *a, backend="eager", **k),
                                  xa.double(), *args, **kw)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), ref, rtol=rtol, atol=atol * max(1, out.numel() ** 0.5))
    torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "neg"])
def test_sigmoid_on_device(dtype, layout):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 33, generator=g, dtype=torch.float64) * 4
    y = (torch.rand(64, 33, generator=g, dtype=torch.float64) > 0.7).double()
    x = x.to(DEV)
    if layout == "transposed":
        x = x.t().contiguous().t()
    elif layout == "sliced":
        x = torch.cat([x, x])[::2]
    elif layout == "neg":
        x = torch._neg_view(-x)
    for kw in (dict(gamma=2.0, alpha=0.25), dict(gamma=0.5, alpha=None, soft_target="linear"),
               dict(gamma=2.0, pos_weight=torch.full((33,), 2.0, device=DEV), reduction="none"),
               dict(gamma=2.0, weight=torch.rand(33, device=DEV), soft_target="bce"),
               dict(gamma=1.5, weight=torch.rand(64, 1, device=DEV), alpha=torch.rand(33, device=DEV))):
        target = (y if kw.get("soft_target") != "linear" else y * 0.8).to(DEV, dtype)
        _compare(fk.sigmoid_focal_loss, x, dtype, target, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(32, 7), (4, 19, 5, 3), (8, 5000), (3, 300, 17), (2, 1203)])
def test_softmax_on_device(dtype, shape):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 4).to(DEV)
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g).to(DEV)
    t.view(-1)[::5] = -100
    w = torch.rand(shape[1], generator=g).add(0.5).to(DEV)
    q = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1).to(DEV, dtype)
    for tg, kw in ((t, dict(gamma=2.0)), (t, dict(gamma=0.5, weight=w, label_smoothing=0.1)),
                   (t, dict(reduction="none")), (q, dict(gamma=2.0, weight=w))):
        _compare(fk.softmax_focal_loss, x, dtype, tg, **kw)


def test_uint8_mask_with_ignore_255_on_device():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 19, 8, 9, generator=g, dtype=torch.float64).to(DEV)
    t = torch.randint(0, 19, (2, 8, 9), generator=g, dtype=torch.uint8)
    t[:, :2] = 255
    _compare(fk.softmax_focal_loss, x, torch.float32, t.to(DEV), ignore_index=255)


def test_inplace_grad_and_second_order_on_device():
    x0 = torch.randn(16, 9, device=DEV)
    y = (torch.rand(16, 9, device=DEV) > 0.5).float()
    want_leaf = x0.clone().requires_grad_()
    fk.sigmoid_focal_loss(want_leaf, y, backend="triton").backward()
    leaf = x0.clone().requires_grad_()
    fk.sigmoid_focal_loss(leaf * 1, y, inplace_grad=True, backend="triton").backward()
    torch.testing.assert_close(leaf.grad, want_leaf.grad)
    x = x0.clone().requires_grad_()
    (gt,) = torch.autograd.grad(fk.sigmoid_focal_loss(x, y, backend="triton"), x, create_graph=True)
    (ht,) = torch.autograd.grad((gt ** 2).sum(), x)
    x = x0.clone().requires_grad_()
    (ge,) = torch.autograd.grad(fk.sigmoid_focal_loss(x, y, backend="eager"), x, create_graph=True)
    (he,) = torch.autograd.grad((ge ** 2).sum(), x)
    torch.testing.assert_close(ht, he, rtol=1e-4, atol=1e-7)


def test_grad_output_retain_graph_and_a_loss_used_twice():
    """The backward recomputes, so GradScaler's scale, retain_graph and a loss in two terms are exact."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(40, 7, generator=g).to(DEV)
    t = torch.randint(0, 7, (40,), generator=g).to(DEV)
    y = (torch.rand(40, 7, generator=g) < 0.3).float().to(DEV)
    for loss_fn, tg in ((fk.softmax_focal_loss, t), (fk.sigmoid_focal_loss, y)):
        x = x0.clone().requires_grad_()
        loss = loss_fn(x, tg, backend="triton")
        (loss * 1024.0).backward(retain_graph=True)          # GradScaler-like grad_output
        first = x.grad.clone()
        loss.backward()                                      # the same graph again
        twice = loss_fn(x, tg, backend="triton")
        (twice + 3 * twice).backward()                       # one loss used twice
        xe = x0.clone().requires_grad_()
        le = loss_fn(xe, tg, backend="eager")
        (le * 1024.0).backward()
        torch.testing.assert_close(first, xe.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.grad, xe.grad * (1 + 5 / 1024.0), rtol=1e-5, atol=1e-5)  # 1024 + 1 + 4


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="a CUDA GPU with over 8 GiB free")
def test_64_bit_offsets_over_2_pow_31_elements():
    n = 2 ** 31 + 4096
    x = torch.zeros(n // 64, 64, device="cuda", dtype=torch.bfloat16)
    x[-1, -1] = 3.0
    y = torch.zeros_like(x)
    loss = fk.sigmoid_focal_loss(x, y, backend="triton", reduction="sum", alpha=None, gamma=0.0)
    # every zero logit gives log 2; the last one softplus(3)
    want = (x.numel() - 1) * 0.6931471805599453 + 3.048587351573742
    assert abs(float(loss) - want) / want < 1e-2
    del x, y
    xs = torch.zeros(n // 64, 64, device="cuda", dtype=torch.bfloat16)
    xs[-1, -1] = 50.0
    t = torch.zeros(n // 64, dtype=torch.long, device="cuda")
    xs.requires_grad_()
    out = fk.softmax_focal_loss(xs, t, backend="triton", reduction="sum", gamma=0.0)
    out.backward()
    assert torch.isfinite(out) and float(xs.grad[-1, -1]) > 0.99
