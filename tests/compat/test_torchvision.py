"""focalkit.compat.torchvision against torchvision.ops (runs where torchvision installs: here the
benchmark venv, torch 2.14.1 + torchvision 0.29.1; see benchmarks/RESULTS.md)."""

from __future__ import annotations

import pytest
import torch

tv_ops = pytest.importorskip("torchvision.ops")

from focalkit.compat import torchvision as fkt  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [-1.0, 0.25])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_loss_equals_torchvision(dtype, alpha, gamma, reduction, soft):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=dtype) * 3
    y = torch.rand(7, 5, generator=g, dtype=dtype)
    y = y if soft else (y > 0.6).to(dtype)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a = fkt.sigmoid_focal_loss(x1, y, alpha, gamma, reduction)
    b = tv_ops.sigmoid_focal_loss(x2, y, alpha, gamma, reduction)
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b)
    (a.sum() if a.dim() else a).backward()
    (b.sum() if b.dim() else b).backward()
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("name", ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_box_losses_equal_torchvision(name, dtype, reduction):
    g = torch.Generator().manual_seed(1)
    b1 = torch.rand(9, 2, generator=g) * 5
    b1 = torch.cat([b1, b1 + torch.rand(9, 2, generator=g) * 3 + 0.1], 1).to(dtype)
    b2 = torch.rand(9, 2, generator=g) * 5
    b2 = torch.cat([b2, b2 + torch.rand(9, 2, generator=g) * 3 + 0.1], 1).to(dtype)
    a = getattr(fkt, name)(b1, b2, reduction)
    b = getattr(tv_ops, name)(b1, b2, reduction)
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=1e-3 if dtype == torch.float16 else None,
                               atol=1e-3 if dtype == torch.float16 else None)


def test_scripted_preset_equals_torchvision_scripted():
    x, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    ours = torch.jit.script(fkt.sigmoid_focal_loss)(x, y, 0.25, 2.0, "mean")
    theirs = torch.jit.script(tv_ops.sigmoid_focal_loss)(x, y, 0.25, 2.0, "mean")
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("call", [
    lambda m, x, y, b1, b2: m.sigmoid_focal_loss(x, y, 0.25, 2, "xyz"),
    lambda m, x, y, b1, b2: m.sigmoid_focal_loss(x, y, alpha=1.5),
    lambda m, x, y, b1, b2: m.generalized_box_iou_loss(b1, b2, reduction="xyz"),
    lambda m, x, y, b1, b2: m.distance_box_iou_loss(b1, b2, reduction="xyz"),
    lambda m, x, y, b1, b2: m.complete_box_iou_loss(b1, b2, reduction="xyz"),
])
def test_errors_are_torchvisions(call):
    """A drop-in raises what the peer raises: type and message (issue 19, item 10)."""
    args = (torch.randn(4, 2), torch.ones(4, 2), torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([[0.5, 0.5, 1, 1]]))
    with pytest.raises(Exception) as theirs:
        call(tv_ops, *args)
    with pytest.raises(type(theirs.value)) as ours:
        call(fkt, *args)
    assert str(ours.value) == str(theirs.value)
