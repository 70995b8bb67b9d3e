"""focalkit.compat.mmdet against the installed mmdet 3.3: values and gradients of every preset over its
arguments (weights, avg_factor, reduction_override, loss_weight, activated, modes).

mmdet imports mmcv's compiled ops at import time; they do not build here, so this runs where mmdet
is installed beside ``mmcv-lite`` (the benchmark venv: ``.bench/bin/pip install --no-deps mmdet==3.3.0
mmcv-lite==2.1.0 mmengine`` and their pure-Python dependencies), with ``mmcv._ext`` stood in by a
module whose functions raise: the losses compared here are mmdet's PyTorch code, which on the CPU never
calls a compiled op (a call would raise, not pass)."""

from __future__ import annotations

import itertools
import sys
import types

import pytest
import torch


class _NoCompiledOps(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise RuntimeError(f"mmcv's compiled op {name} is not built here")
        return missing


def _mmdet_losses():
    pytest.importorskip("mmcv")
    pytest.importorskip("mmengine")
    sys.modules.setdefault("mmcv._ext", _NoCompiledOps("mmcv._ext"))
    return pytest.importorskip("mmdet.models.losses")


mm = _mmdet_losses()

from focalkit.compat import mmdet as fkm  # noqa: E402

D = torch.float64


def _pair(theirs, ours, x, *args, **kw):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = theirs(xa, *args, **kw), ours(xb, *args, **kw)
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-9)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-6, atol=1e-9)


REDUCTIONS = [(None, None), ("sum", None), ("none", None), ("mean", 3.5), ("none", 2.0)]


@pytest.mark.parametrize("override,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("activated", [False, True])
def test_focal_loss(override, avg_factor, activated):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g, dtype=D) * 3
    if activated:
        x = x.sigmoid()
    labels = torch.tensor([0, 4, 2, 1, 4, 3, 0, 2, 4])
    dense = torch.nn.functional.one_hot(labels, 5)[:, :4].to(D)
    for target, weight in itertools.product((labels, dense) if not activated else (labels,),
                                            (None, torch.rand(9, generator=g, dtype=D),
                                             torch.rand(9, 4, generator=g, dtype=D))):
        kw = dict(gamma=1.5, alpha=0.3, loss_weight=2.0, activated=activated)
        _pair(mm.FocalLoss(**kw), fkm.FocalLoss(**kw), x, target, weight, avg_factor=avg_factor,
              reduction_override=override)


@pytest.mark.parametrize("override,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("activated", [False, True])
def test_quality_focal_loss(override, avg_factor, activated):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g, dtype=D) * 2
    if activated:
        x = x.sigmoid()
    labels, scores = torch.tensor([0, 4, 2, 4, 3, 1, 4, 0]), torch.rand(8, generator=g, dtype=D)
    w = torch.rand(8, generator=g, dtype=D)
    for weight in (None, w):
        kw = dict(beta=2.0, loss_weight=1.5, activated=activated)
        _pair(mm.QualityFocalLoss(**kw), fkm.QualityFocalLoss(**kw), x, (labels, scores), weight,
              avg_factor=avg_factor, reduction_override=override)


@pytest.mark.parametrize("override,avg_factor", REDUCTIONS)
@pytest.mark.parametrize("iou_weighted", [True, False])
def test_varifocal_and_distribution_focal_loss(override, avg_factor, iou_weighted):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 4, generator=g, dtype=D) * 2
    q = torch.rand(8, 4, generator=g, dtype=D) * (torch.rand(8, 4, generator=g) > 0.6)
    for weight in (None, torch.rand(8, 4, generator=g, dtype=D)):
        kw = dict(alpha=0.75, gamma=2.0, iou_weighted=iou_weighted, loss_weight=0.5)
        _pair(mm.VarifocalLoss(**kw), fkm.VarifocalLoss(**kw), x, q, weight, avg_factor=avg_factor,
              reduction_override=override)
    z = torch.randn(7, 8, generator=g, dtype=D)
    y = torch.rand(7, generator=g, dtype=D) * 6.9  # mmdet indexes past the last bin at y = n
    for weight in (None, torch.rand(7, generator=g, dtype=D)):
        _pair(mm.DistributionFocalLoss(loss_weight=0.25), fkm.DistributionFocalLoss(loss_weight=0.25), z, y, weight,
              avg_factor=avg_factor, reduction_override=override)


@pytest.mark.parametrize("cls", ["IoULoss", "GIoULoss", "DIoULoss", "CIoULoss"])
@pytest.mark.parametrize("override,avg_factor", REDUCTIONS[:4])
def test_box_losses(cls, override, avg_factor):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(16, 2, generator=g, dtype=D) * 20
    target = torch.cat([xy, xy + torch.rand(16, 2, generator=g, dtype=D) * 10 + 1], 1)
    pred = target + torch.randn(16, 4, generator=g, dtype=D) * 1.5  # IoU above and below 0.5
    pred[:, 2:] = torch.max(pred[:, 2:], pred[:, :2] + 0.5)
    modes = ["log", "linear", "square"] if cls == "IoULoss" else [None]
    for mode, weight in itertools.product(modes, (None, torch.rand(16, generator=g, dtype=D),
                                                  torch.rand(16, 4, generator=g, dtype=D))):
        kw = dict(loss_weight=1.5) if mode is None else dict(loss_weight=1.5, mode=mode)
        theirs, ours = getattr(mm, cls)(**kw), getattr(fkm, cls)(**kw)
        a = pred.clone().requires_grad_()
        b = pred.clone().requires_grad_()
        want = theirs(a, target, weight, avg_factor=avg_factor, reduction_override=override)
        got = ours(b, target, weight, avg_factor=avg_factor, reduction_override=override)
        # documented: eps added to the union (mmdet: max(union, eps)); IoU clamped at eps in the log mode
        # only (mmdet: in every mode): equal to 1e-6 per disjoint box, to rounding otherwise
        torch.testing.assert_close(got, want, rtol=1e-6, atol=2e-5 if mode in ("linear", "square") else 1e-8)
        want.sum().backward()
        got.sum().backward()
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-8)
