"""focalkit.compat.ultralytics against the installed ultralytics (FocalLoss, VarifocalLoss, DFLoss): values,
gradients, dtypes, shapes. ultralytics needs torchvision, so this runs in the benchmark venv:
``.bench/bin/python -m pytest -o addopts= tests/compat/test_ultralytics.py`` (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

uloss = pytest.importorskip("ultralytics.utils.loss")

from focalkit.compat import ultralytics as fku  # noqa: E402

DTYPES = [torch.float32, torch.float64]
SHAPES = [(8, 5), (2, 7, 5)]


def _both(theirs, ours, x, *args):
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = theirs(x1, *[t.clone() for t in args]), ours(x2, *args)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-6)


def _soft(shape, dtype, g):
    t = torch.rand(shape, generator=g, dtype=dtype)
    t[0] = (t[0] > 0.5).to(dtype)
    return t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma,alpha", list(itertools.product([0.0, 1.5, 2.0], [0.25, 0.0, [0.1, 0.2, 0.3, 0.4, 0.5]])))
def test_focal_loss_equals_ultralytics(dtype, shape, gamma, alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3
    _both(uloss.FocalLoss(gamma, alpha), fku.FocalLoss(gamma, alpha), x, _soft(shape, dtype, g))


@pytest.mark.parametrize("dtype", DTYPES + [torch.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma,alpha", [(0.0, 0.75), (2.0, 0.75), (2.0, 0.5)])
def test_varifocal_loss_equals_ultralytics(dtype, shape, gamma, alpha):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    label = (torch.rand(shape, generator=g) > 0.6).to(dtype)
    q = torch.rand(shape, generator=g, dtype=dtype) * label
    if dtype == torch.float16:  # ultralytics forms its weight in half precision: compare to rounding
        a = uloss.VarifocalLoss(gamma, alpha)(x, q, label)
        b = fku.VarifocalLoss(gamma, alpha)(x, q, label)
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=2e-3, atol=1e-4)
        return
    _both(uloss.VarifocalLoss(gamma, alpha), fku.VarifocalLoss(gamma, alpha), x, q, label)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg_max", [16, 8])
def test_dfloss_equals_ultralytics_and_leaves_target_alone(dtype, reg_max):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6 * 4, reg_max, generator=g, dtype=dtype) * 2
    target = torch.rand(6, 4, generator=g) * (reg_max + 1) - 0.5  # some outside [0, reg_max - 1.01]
    kept = target.clone()
    _both(uloss.DFLoss(reg_max), fku.DFLoss(reg_max), x, target)
    assert torch.equal(target, kept)  # ultralytics clamps its argument in place; the preset does not


def test_finite_where_ultralytics_gives_nan_and_errors():
    x = torch.tensor([[20.0, -30.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0]])
    uloss.FocalLoss(0.5)(x, t).backward()
    assert torch.isnan(x.grad).any()
    x2 = x.detach().clone().requires_grad_()
    fku.FocalLoss(0.5)(x2, t).backward()
    assert torch.isfinite(x2.grad).all()
    with pytest.raises(IndexError):
        uloss.FocalLoss()(torch.randn(4), torch.rand(4))
    with pytest.raises(IndexError):
        fku.FocalLoss()(torch.randn(4), torch.rand(4))


def test_the_preset_does_not_import_ultralytics():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.ultralytics; "
                        "assert 'ultralytics' not in sys.modules; print('OK')"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
