"""focalkit.compat.yolov5 against YOLOv5's own ``utils/loss.py`` (the ``yolov5`` package, benchmark venv:
``.bench/bin/python -m pytest -o addopts= tests/compat/test_yolov5.py``); what needs no YOLOv5 runs in CI."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch
from torch import nn

from focalkit.compat import yolov5 as fky


def _peer():
    return pytest.importorskip("yolov5.utils.loss")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("which", ["FocalLoss", "QFocalLoss"])
def test_equals_yolov5(dtype, shape, which):
    peer = _peer()
    g = torch.Generator().manual_seed(0)
    for reduction, pos_weight, weight, gamma in itertools.product(["mean", "sum", "none"], [False, True],
                                                                  [False, True], [0.0, 1.5, 2.0]):
        x = torch.randn(shape, generator=g, dtype=dtype) * 3
        t = torch.rand(shape, generator=g, dtype=dtype)
        t[0] = (t[0] > 0.5).to(dtype)
        kw = dict(reduction=reduction, pos_weight=torch.rand(shape[-1], generator=g, dtype=dtype) + 0.5 if pos_weight else None,
                  weight=torch.rand(shape[-1], generator=g, dtype=dtype) if weight else None)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        a = getattr(peer, which)(nn.BCEWithLogitsLoss(**kw), gamma, 0.25)(x1, t)
        b = getattr(fky, which)(nn.BCEWithLogitsLoss(**kw), gamma, 0.25)(x2, t)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 if dtype == torch.float32 else 1e-12)
        a.sum().backward()
        b.sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-6 if dtype == torch.float32 else 1e-12)


def test_reduction_is_kept_and_the_wrapped_loss_untouched():
    bce = nn.BCEWithLogitsLoss(reduction="sum")
    fl = fky.FocalLoss(bce, 1.5)
    assert fl.reduction == "sum" and bce.reduction == "sum"
    x, t = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    assert fl(x, t).dim() == 0
    fl.reduction = "none"  # YOLOv5 code may set it, as on its own class
    assert fl(x, t).shape == (4, 3)
    assert fky.QFocalLoss(nn.BCEWithLogitsLoss(reduction="none"))(x, t).shape == (4, 3)


def test_finite_for_small_gamma():
    x = torch.tensor([[20.0, -30.0]], requires_grad=True)
    fky.FocalLoss(nn.BCEWithLogitsLoss(), gamma=0.5)(x, torch.tensor([[1.0, 0.0]])).backward()
    assert torch.isfinite(x.grad).all()


def test_the_preset_does_not_import_yolov5():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.yolov5; "
                        "assert 'yolov5' not in sys.modules; print('OK')"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
