"""focalkit.compat.kornia against the installed kornia: values and gradients over a grid of arguments,
shapes and dtypes; the preset does not import kornia."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

kornia = pytest.importorskip("kornia")

from focalkit.compat import kornia as fkk  # noqa: E402

SHAPES = [(6, 4), (2, 3, 5, 4)]


def _both(fn_ours, fn_theirs, x, *args, **kw):
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = fn_ours(x1, *args, **kw), fn_theirs(x2, *args, **kw)
    torch.testing.assert_close(a, b)
    (a.sum() if a.dim() else a).backward()
    (b.sum() if b.dim() else b).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_equals_kornia(shape, dtype, alpha, gamma, reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype) * 2
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    t.view(-1)[::5] = -100
    w = torch.rand(shape[1], generator=g, dtype=dtype) + 0.5
    for weight in (None, w):
        _both(fkk.focal_loss, kornia.losses.focal_loss, x, t, alpha, gamma, reduction, weight)
    ours = fkk.FocalLoss(alpha, gamma, reduction)(x, t)
    torch.testing.assert_close(ours, kornia.losses.FocalLoss(alpha, gamma, reduction)(x, t))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_binary_focal_loss_equals_kornia(shape, dtype, alpha, gamma, reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=dtype) * 2
    t = torch.rand(shape, generator=g, dtype=dtype)
    t = torch.where(t > 0.5, (t > 0.7).to(dtype), t)  # hard and soft targets
    t.view(-1)[::7] = -100
    pw = torch.rand(shape[1], generator=g, dtype=dtype) + 0.5
    w = torch.rand(shape[1], generator=g, dtype=dtype) + 0.5
    for pos_weight, weight in ((None, None), (pw, None), (pw, w)):
        _both(fkk.binary_focal_loss_with_logits, kornia.losses.binary_focal_loss_with_logits, x, t, alpha, gamma,
              reduction, pos_weight, weight)
    ours = fkk.BinaryFocalLossWithLogits(alpha, gamma, reduction, pw, w)(x, t)
    torch.testing.assert_close(ours, kornia.losses.BinaryFocalLossWithLogits(alpha, gamma, reduction, pw, w)(x, t))


def test_errors_where_kornia_raises():
    x = torch.randn(2, 3)
    with pytest.raises(Exception):
        kornia.losses.focal_loss(x, torch.tensor([0, 1, 2]), 0.25)
    with pytest.raises(ValueError, match="targets"):
        fkk.focal_loss(x, torch.tensor([0, 1, 2]), 0.25)
    with pytest.raises(ValueError, match="targets"):
        fkk.binary_focal_loss_with_logits(x, torch.rand(2, 2))
    with pytest.raises(ValueError, match="pos_weight"):
        fkk.binary_focal_loss_with_logits(x, torch.rand(2, 3), pos_weight=torch.ones(2))


def test_the_preset_does_not_import_kornia():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.kornia; "
                        "assert 'kornia' not in sys.modules; print('OK')"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


@pytest.mark.parametrize("shape", [(5,), (5, 1), (5, 1, 1)])
def test_binary_per_class_vectors_in_kornias_channels_first_layouts(shape):
    """kornia takes pos_weight / weight of any shape holding C values along its first dim, e.g. (C, 1)
    for (N, C, L) logits (issue 19, item 9; 12 of kornia's own tests)."""
    import kornia.losses as kl

    from focalkit.compat import kornia as ck
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 5, 7, generator=g)
    target = (torch.rand(2, 5, 7, generator=g) < 0.3).float()
    pw = torch.rand(shape, generator=g) + 0.5
    w = torch.rand(shape, generator=g) + 0.5
    for red in ("none", "mean", "sum"):
        ours = ck.binary_focal_loss_with_logits(pred, target, alpha=0.25, reduction=red, pos_weight=pw, weight=w)
        theirs = kl.binary_focal_loss_with_logits(pred, target, alpha=0.25, reduction=red, pos_weight=pw, weight=w)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pos_weight"):
        ck.binary_focal_loss_with_logits(pred, target, pos_weight=torch.ones(1, 5))
