"""The Triton kernels on their own device: a CUDA GPU where ``TRITON_INTERPRET=0`` (run by
``benchmarks/gpu_check.sh``), the CPU under Triton's interpreter in CI. Same code paths: layouts,
halves (with the GPU's own exp/log: tolerances below), ignore masks, ``inplace_grad``, second order,
and, on a GPU only, 64-bit offsets (a tensor of more than 2^31 elements)."""

from __future__ import annotations

import pytest
import torch

import focalkit as fk
from focalkit.backends import triton as tb

pytest.importorskip("triton")
DEV = "cpu" if tb.interpreting() else "cuda"
if DEV == "cuda" and not torch.cuda.is_available():  # pragma: no cover
    pytest.skip("TRITON_INTERPRET=0 and no CUDA device", allow_module_level=True)

# (rtol, atol) against float64 eager, the GPU's exp/log included
TOL = {torch.float32: (2e-5, 1e-6), torch.float16: (1e-2, 1e-3), torch.bfloat16: (4e-2, 4e-3)}
DTYPES = list(TOL)


def _compare(fn, x, dtype, **kw):
    xa = x.to(dtype).requires_grad_()
    out = fn(xa, backend="triton", **kw)
    out.sum().backward()
    xr = x.to(dtype).double().cpu().requires_grad_()
    ref = fn(xr, backend="eager", **{k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})
    ref.sum().backward()
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=rtol, atol=atol * max(1, out.numel() ** 0.5))
    torch.testing.assert_close(xa.grad.double().cpu(), xr.grad, rtol=rtol, atol=atol)


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
               dict(gamma=2.0, pos_weight=torch.full((33,), 2.0, device=DEV), reduction="none")):
        target = y.to(DEV) if kw.get("soft_target") != "linear" else (y * 0.8).to(DEV)
        _compare(lambda a, **k: fk.sigmoid_focal_loss(a, target.to(a.dtype if a.dtype != torch.float64 else
                                                                    torch.float64), **k), x, dtype, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(32, 7), (4, 19, 5, 3), (8, 5000)])
def test_softmax_on_device(dtype, shape):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 4).to(DEV)
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g).to(DEV)
    t.view(-1)[::5] = -100
    w = torch.rand(shape[1], generator=g).add(0.5).to(DEV)
    for kw in (dict(gamma=2.0), dict(gamma=0.5, weight=w, label_smoothing=0.1), dict(reduction="none")):
        _compare(lambda a, **k: fk.softmax_focal_loss(a, t, **k), x, dtype, **kw)


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


def test_bad_class_index_poisons_its_row():
    x = torch.randn(3, 4, device=DEV)
    t = torch.tensor([0, 7, 1], device=DEV)
    loss = fk.softmax_focal_loss(x, t, backend="triton", reduction="none") if DEV == "cuda" else \
        torch.ops.focalkit.triton_softmax_focal(x, t, None, 2.0, -100, 0.0, "none", None)[0]
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()


if DEV == "cuda":  # pragma: no cover - a GPU with over 4 GiB free; run by benchmarks/gpu_check.sh

    def test_64_bit_offsets_over_2_pow_31_elements():
        n = 2 ** 31 + 4096
        x = torch.zeros(n // 64, 64, device="cuda", dtype=torch.bfloat16)
        x[-1, -1] = 3.0
        y = torch.zeros_like(x)
        loss = fk.sigmoid_focal_loss(x, y, backend="triton", reduction="sum", alpha=None, gamma=0.0)
        # every zero logit gives log 2; the last one softplus(3)
        want = (x.numel() - 1) * 0.6931471805599453 + 3.048587351573742
        assert abs(float(loss) - want) / want < 1e-2
        xs = torch.zeros(n // 64, 64, device="cuda", dtype=torch.bfloat16)
        xs[-1, -1] = 50.0
        t = torch.zeros(n // 64, dtype=torch.long, device="cuda")
        g = fk.softmax_focal_loss(xs.requires_grad_(), t, backend="triton", reduction="sum", gamma=0.0)
        assert torch.isfinite(g)
