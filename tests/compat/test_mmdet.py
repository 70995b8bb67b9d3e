"""focalkit.compat.mmdet against mmdet 3's conventions, re-derived here from its formulas, so that they
run in CI (mmdet itself, beside mmcv-lite, runs in the benchmark venv: tests/compat/test_mmdet_peer.py).
Values, gradients, weight layouts, avg_factor, loss_weight, reduction_override, errors, and the
registry hook."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from focalkit.compat import mmdet as fkm

D = torch.float64
EPS = torch.finfo(torch.float32).eps


def _reduce(loss, weight, reduction, avg_factor):
    """mmdet's weight_reduce_loss."""
    if weight is not None:
        loss = loss * weight
    if avg_factor is None:
        return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss
    if reduction == "mean":
        return loss.sum() / (avg_factor + EPS)
    return loss


def _focal_ref(x, onehot, gamma, alpha):
    p = x.sigmoid()
    pt = (1 - p) * onehot + p * (1 - onehot)
    return F.binary_cross_entropy_with_logits(x, onehot, reduction="none") * (
        alpha * onehot + (1 - alpha) * (1 - onehot)) * pt.pow(gamma)


def _grad_pair(fn_a, fn_b, x):
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = fn_a(xa), fn_b(xb)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("reduction,avg_factor", [("mean", None), ("sum", None), ("none", None), ("mean", 3.5),
                                                  ("none", 2.0)])
@pytest.mark.parametrize("weight_kind", [None, "sample", "elem", "flat"])
def test_focal_loss(reduction, avg_factor, weight_kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 4, generator=g, dtype=D) * 3
    labels = torch.tensor([0, 4, 2, 1, 4, 3, 0])
    onehot = F.one_hot(labels, 5)[:, :4].to(D)
    w = {None: None, "sample": torch.rand(7, generator=g, dtype=D), "elem": torch.rand(7, 4, generator=g, dtype=D),
         "flat": torch.rand(28, generator=g, dtype=D)}[weight_kind]
    wv = None if w is None else (w.view(-1, 1) if weight_kind == "sample" else w.view(7, 4))
    loss = fkm.FocalLoss(gamma=1.5, alpha=0.3, reduction=reduction, loss_weight=2.0)
    for target in (labels, onehot):  # class indices (bg = C) and dense one-hot
        _grad_pair(lambda t: loss(t, target, w, avg_factor),
                   lambda t: 2.0 * _reduce(_focal_ref(t, onehot, 1.5, 0.3), wv, reduction, avg_factor), x)
    p = x.sigmoid()  # activated=True: probabilities in
    act = fkm.FocalLoss(activated=True, reduction=reduction)
    _grad_pair(lambda t: act(t, labels, w, avg_factor),
               lambda t: _reduce(F.binary_cross_entropy(t, onehot, reduction="none") * (
                   0.25 * onehot + 0.75 * (1 - onehot)) * ((1 - t) * onehot + t * (1 - onehot)).pow(2), wv, reduction,
                   avg_factor), p)


def test_reduction_override_avg_factor_sum_and_asserts():
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 3, 2])
    loss = fkm.FocalLoss(reduction="sum")
    assert loss(x, t, reduction_override="none").shape == (4, 3)
    with pytest.raises(ValueError, match="avg_factor"):
        loss(x, t, avg_factor=2.0)
    with pytest.raises(AssertionError):
        loss(x, t, reduction_override="avg")
    with pytest.raises(AssertionError):
        fkm.FocalLoss(use_sigmoid=False)
    with pytest.raises(ValueError):
        fkm.QualityFocalLoss(use_sigmoid=False)


@pytest.mark.parametrize("reduction,avg_factor", [("mean", None), ("sum", None), ("none", None), ("mean", 2.5)])
@pytest.mark.parametrize("activated", [False, True])
def test_quality_focal_loss(reduction, avg_factor, activated):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=D) * 2
    labels, scores = torch.tensor([0, 4, 2, 4, 3, 1]), torch.rand(6, generator=g, dtype=D)
    w = torch.rand(6, generator=g, dtype=D)
    dense = torch.zeros(6, 4, dtype=D)
    pos = labels < 4
    dense[pos, labels[pos]] = scores[pos]

    def ref(t):
        p = t if activated else t.sigmoid()
        bce = F.binary_cross_entropy(p, dense, reduction="none")
        return _reduce((bce * (dense - p).abs().pow(2)).sum(1), w, reduction, avg_factor)

    inp = x.sigmoid() if activated else x
    loss = fkm.QualityFocalLoss(activated=activated, reduction=reduction)
    _grad_pair(lambda t: loss(t, (labels, scores), w, avg_factor), ref, inp)
    _grad_pair(lambda t: loss(t, dense, w, avg_factor), ref, inp)


@pytest.mark.parametrize("iou_weighted", [True, False])
@pytest.mark.parametrize("reduction,avg_factor", [("mean", None), ("sum", None), ("mean", 4.0)])
def test_varifocal_and_dfl(iou_weighted, reduction, avg_factor):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g, dtype=D) * 2
    q = torch.rand(6, 4, generator=g, dtype=D) * (torch.rand(6, 4, generator=g) > 0.6)

    def ref(t):
        p = t.sigmoid()
        fw = (q * (q > 0) if iou_weighted else (q > 0).to(D)) + 0.75 * (p - q).abs().pow(2) * (q <= 0)
        return 3.0 * _reduce(F.binary_cross_entropy_with_logits(t, q, reduction="none") * fw, None, reduction,
                             avg_factor)

    _grad_pair(lambda t: fkm.VarifocalLoss(iou_weighted=iou_weighted, reduction=reduction, loss_weight=3.0)(
        t, q, avg_factor=avg_factor), ref, x)
    z = torch.randn(5, 8, generator=g, dtype=D)
    y = torch.rand(5, generator=g, dtype=D) * 6.9
    w = torch.rand(5, generator=g, dtype=D)

    def dfl_ref(t):
        left = y.long()
        wl, wr = left + 1 - y, y - left
        per = F.cross_entropy(t, left, reduction="none") * wl + F.cross_entropy(t, left + 1, reduction="none") * wr
        return _reduce(per, w, reduction, avg_factor)

    _grad_pair(lambda t: fkm.DistributionFocalLoss(reduction=reduction)(t, y, w, avg_factor), dfl_ref, z)


def _mm_boxes(pred, target, eps):
    """mmdet 3's aligned geometry: overlap, union (max with eps), enclosing box, centre distance."""
    lt, rb = torch.max(pred[:, :2], target[:, :2]), torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    a1 = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    a2 = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = a1 + a2 - overlap
    ewh = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).clamp(min=0)
    rho2 = (((target[:, 0] + target[:, 2]) - (pred[:, 0] + pred[:, 2])) ** 2
            + ((target[:, 1] + target[:, 3]) - (pred[:, 1] + pred[:, 3])) ** 2) / 4
    return overlap, union, ewh, rho2


def _mm_box_loss(kind, pred, target, eps, mode="log"):
    overlap, union, ewh, rho2 = _mm_boxes(pred, target, eps)
    if kind == "iou":
        iou = (overlap / union.clamp(min=eps)).clamp(min=eps)
        return {"linear": 1 - iou, "square": 1 - iou ** 2, "log": -iou.log()}[mode]
    if kind == "giou":
        iou = overlap / union.clamp(min=eps)
        area = (ewh[:, 0] * ewh[:, 1]).clamp(min=eps)
        return 1 - (iou - (area - union) / area)
    iou = overlap / (union + eps)
    c2 = ewh[:, 0] ** 2 + ewh[:, 1] ** 2 + eps
    if kind == "diou":
        return 1 - (iou - rho2 / c2)
    w1, h1 = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
    w2, h2 = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = (iou > 0.5).to(v.dtype) * v / (1 - iou + v)
    return 1 - (iou - (rho2 / c2 + alpha * v)).clamp(-1.0, 1.0)


@pytest.mark.parametrize("kind,mode", [("iou", "log"), ("iou", "linear"), ("iou", "square"), ("giou", None),
                                       ("diou", None), ("ciou", None)])
@pytest.mark.parametrize("reduction,avg_factor,weight_kind", list(itertools.product(["mean", "sum", "none"], [None],
                                                                                   [None, "box", "coord"]))
                         + [("mean", 5.0, "box")])
def test_box_losses(kind, mode, reduction, avg_factor, weight_kind):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(12, 2, generator=g, dtype=D) * 20
    target = torch.cat([xy, xy + torch.rand(12, 2, generator=g, dtype=D) * 10 + 1], 1)
    pred = target + torch.randn(12, 4, generator=g, dtype=D) * 1.5  # IoU above and below 0.5
    pred[:, 2:] = torch.max(pred[:, 2:], pred[:, :2] + 0.5)
    w = {None: None, "box": torch.rand(12, generator=g, dtype=D), "coord": torch.rand(12, 4, generator=g, dtype=D)}
    weight = w[weight_kind]
    wbox = None if weight is None else (weight.mean(-1) if weight.dim() > 1 else weight)
    cls = {"iou": fkm.IoULoss, "giou": fkm.GIoULoss, "diou": fkm.DIoULoss, "ciou": fkm.CIoULoss}[kind]
    loss = cls(mode=mode, reduction=reduction, loss_weight=1.5) if mode else cls(reduction=reduction, loss_weight=1.5)
    a = pred.clone().requires_grad_()
    b = pred.clone().requires_grad_()
    got = loss(a, target, weight, avg_factor)
    want = 1.5 * _reduce(_mm_box_loss(kind, b, target, 1e-6, mode), wbox, reduction, avg_factor)
    # focalkit adds eps to the union where mmdet takes max(union, eps): equal to ~eps / union; mmdet also
    # clamps the IoU at eps in the linear and square modes (a disjoint box: 1 - eps, focalkit 1)
    n_boxes = 1 if reduction != "mean" or avg_factor else 12
    atol = 1.5 * 1e-6 * 12 / n_boxes if mode in ("linear", "square") else 1e-8
    torch.testing.assert_close(got, want, rtol=1e-7, atol=atol)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-8)


def test_iou_linear_flag_and_zero_weights():
    with pytest.warns(UserWarning, match="deprecated"):
        assert fkm.IoULoss(linear=True).mode == "linear"
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    out = fkm.GIoULoss()(pred, torch.tensor([[1.0, 1.0, 3.0, 3.0]]), weight=torch.zeros(1))
    assert out.item() == 0.0 and out.requires_grad


def test_register_into_a_registry():
    class Registry:
        def __init__(self):
            self.modules = {}

        def register_module(self, name, module, force=False):
            self.modules[name] = module

    reg = Registry()
    names = fkm.register(reg)
    assert "FKFocalLoss" in names and reg.modules["FKCIoULoss"] is fkm.CIoULoss
    cfg = dict(type="FKFocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
    built = reg.modules[cfg.pop("type")](**cfg)
    assert isinstance(built, fkm.FocalLoss)


def test_the_preset_does_not_import_mmdet():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.mmdet; "
                        "assert 'mmdet' not in sys.modules and 'mmcv' not in sys.modules; print('OK')"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
