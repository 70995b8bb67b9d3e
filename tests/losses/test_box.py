import math

import numpy as np
import pytest
import torch

import reference as ref
import focalkit as fk

D = torch.float64
KINDS = ["iou", "giou", "diou", "ciou", "eiou"]
FN = {k: getattr(fk, f"{k}_loss") for k in KINDS}
MODULE = {"iou": fk.IoULoss, "giou": fk.GIoULoss, "diou": fk.DIoULoss, "ciou": fk.CIoULoss, "eiou": fk.EIoULoss}


def _boxes(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=D) * 10
    wh = torch.rand(n, 2, generator=g, dtype=D) * 5 + 0.1
    a = torch.cat([xy, xy + wh], 1)
    xy2 = xy + torch.randn(n, 2, generator=g, dtype=D) * 2
    wh2 = torch.rand(n, 2, generator=g, dtype=D) * 5 + 0.1
    b = torch.cat([xy2, xy2 + wh2], 1)
    b[:8] = a[:8] + 0.25          # overlapping, shifted
    b[8:12] = a[8:12] + 20.0      # disjoint
    b[12:16] = torch.cat([a[12:16, :2] + 0.1, a[12:16, 2:] - 0.1], 1)  # nested
    return a, b


@pytest.mark.parametrize("kind", KINDS + ["focal_eiou"])
@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_values_match_reference(kind, eps):
    a, b = _boxes()
    fn = fk.focal_eiou_loss if kind == "focal_eiou" else FN[kind]
    got = fn(a, b, eps=eps, reduction="none")
    want = [ref.ref_box_loss(kind, u.tolist(), v.tolist(), eps) for u, v in zip(a, b)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS + ["focal_eiou"])
def test_identical_boxes_give_zero(kind):
    a, _ = _boxes()
    fn = fk.focal_eiou_loss if kind == "focal_eiou" else FN[kind]
    torch.testing.assert_close(fn(a, a.clone(), eps=0.0, reduction="none"), torch.zeros(64, dtype=D),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    # Focal-EIoU is left out by design: finite differences move its detached weight. Its gradient is
    # checked below against IoU^gamma times the (gradchecked) EIoU gradient.
    a, b = _boxes(12)
    fn = FN[kind]
    w = torch.rand(12, dtype=D)
    assert torch.autograd.gradcheck(lambda p: fn(p, b, reduction="sum", weight=w), (a.clone().requires_grad_(),))


def test_focal_eiou_weight_is_detached_and_normalisations():
    a, b = _boxes(16)
    pa = a.clone().requires_grad_()
    fk.focal_eiou_loss(pa, b, gamma=0.5, reduction="none").backward(torch.ones(16, dtype=D))
    pe = a.clone().requires_grad_()
    iou = 1 - fk.iou_loss(a, b, reduction="none")
    (fk.eiou_loss(pe, b, reduction="none") * iou ** 0.5).sum().backward()
    torch.testing.assert_close(pa.grad, pe.grad)
    per = fk.focal_eiou_loss(a, b, reduction="none")
    torch.testing.assert_close(fk.focal_eiou_loss(a, b), per.mean())
    torch.testing.assert_close(fk.focal_eiou_loss(a, b, normalize="weight_sum"), per.sum() / (iou ** 0.5).sum())


def test_focal_l1_values_gradient_and_continuity():
    x = torch.tensor([0.0, 1e-6, 0.1, 1 / math.e, 0.5, 1.0, 1.0 + 1e-9, 2.0, 10.0], dtype=D)
    for alpha, beta in [(1.0, 1 / math.e), (math.e * 0.6, 0.6), (2.0, 1.0)]:
        got = fk.focal_l1_loss(x, torch.zeros_like(x), alpha=alpha, beta=beta, reduction="none")
        np.testing.assert_allclose(got.numpy(), [ref.ref_focal_l1(v, alpha, beta) for v in x.tolist()],
                                   rtol=1e-12, atol=1e-15)
        xr = x.clone().requires_grad_()
        fk.focal_l1_loss(xr, torch.zeros_like(x), alpha=alpha, beta=beta, reduction="sum").backward()
        want = [0.0 if v == 0 else (-alpha * v * math.log(beta * v) if v <= 1 else -alpha * math.log(beta))
                for v in x.tolist()]
        np.testing.assert_allclose(xr.grad.numpy(), want, rtol=1e-9, atol=1e-12)
        assert abs(ref.ref_focal_l1(1.0, alpha, beta) - ref.ref_focal_l1(1.0 + 1e-12, alpha, beta)) < 1e-10
    # symmetric in the sign of the error
    e = torch.tensor([-0.3, 0.3, -2.0, 2.0], dtype=D)
    out = fk.focal_l1_loss(e, torch.zeros_like(e), reduction="none")
    assert out[0] == out[1] and out[2] == out[3]


@pytest.mark.parametrize("kind", KINDS + ["focal_eiou"])
def test_degenerate_boxes_finite(kind):
    fn = fk.focal_eiou_loss if kind == "focal_eiou" else FN[kind]
    a = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 3.0], [2.0, 2.0, 1.0, 1.0], [0.0, 0.0, 2.0, 0.0],
                      [0.0, 0.0, 1.0, 1.0]], dtype=D, requires_grad=True)
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0],
                      [1.0, 1.0, 1.0, 1.0]], dtype=D)
    out = fn(a, b, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("kind", KINDS)
def test_integer_half_and_empty(kind):
    fn = FN[kind]
    a, b = _boxes(8)
    ai, bi = (a * 10).round().long(), (b * 10).round().long()
    out = fn(ai, bi)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out, fn(ai.float(), bi.float()))
    for dt in (torch.float16, torch.bfloat16):
        ah = a.to(dt).requires_grad_()
        o = fn(ah, b.to(dt))
        o.backward()
        # a reduced loss of half inputs is float32 (docs/api.md, "Mixed precision"); elementwise: the input's
        assert o.dtype == torch.float32 and torch.isfinite(o) and ah.grad.dtype == dt and torch.isfinite(ah.grad).all()
        assert fn(ah, b.to(dt), reduction="none").dtype == dt
        torch.testing.assert_close(o.double(), fn(a.to(dt).double(), b.to(dt).double()), rtol=1e-2, atol=1e-2)
    e = torch.zeros(0, 4, requires_grad=True)
    out = fn(e, torch.zeros(0, 4))
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()


@pytest.mark.parametrize("kind", KINDS)
def test_module_equals_function_and_nd(kind):
    a, b = _boxes(12)
    a, b = a.view(3, 4, 4), b.view(3, 4, 4)
    w = torch.rand(3, 4, dtype=D)
    m = MODULE[kind](eps=1e-6, reduction="sum")
    torch.testing.assert_close(m(a, b, weight=w), FN[kind](a, b, eps=1e-6, reduction="sum", weight=w))
    assert FN[kind](a, b, reduction="none").shape == (3, 4)
    torch.testing.assert_close(FN[kind](a, b, normalizer=4), FN[kind](a, b, reduction="sum") / 4)
    torch.testing.assert_close(fk.FocalEIoULoss(gamma=0.5)(a, b), fk.focal_eiou_loss(a, b))
    torch.testing.assert_close(fk.FocalL1Loss(beta=0.5, alpha=0.5 * math.e)(a, b),
                               fk.focal_l1_loss(a, b, beta=0.5, alpha=0.5 * math.e))


@pytest.mark.parametrize("call,name", [
    (lambda: fk.giou_loss(torch.zeros(2, 3), torch.zeros(2, 3)), "pred"),
    (lambda: fk.diou_loss(torch.zeros(2, 4), torch.zeros(3, 4)), "target"),
    (lambda: fk.ciou_loss(torch.zeros(2, 4), torch.zeros(2, 4), eps=-1.0), "eps"),
    (lambda: fk.eiou_loss(torch.zeros(2, 4), torch.zeros(2, 4), reduction="avg"), "reduction"),
    (lambda: fk.focal_eiou_loss(torch.zeros(2, 4), torch.zeros(2, 4), gamma=-0.5), "gamma"),
    (lambda: fk.focal_eiou_loss(torch.zeros(2, 4), torch.zeros(2, 4), normalize="sum"), "normalize"),
    (lambda: fk.focal_l1_loss(torch.zeros(2), torch.zeros(2), beta=0.2), "beta"),
    (lambda: fk.iou_loss(torch.zeros(2, 4), torch.zeros(2, 4), weight=torch.ones(3)), "weight"),
])
def test_bad_inputs(call, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


@pytest.mark.parametrize("kind,tv_name", [("giou", "generalized_box_iou_loss"), ("diou", "distance_box_iou_loss"),
                                          ("ciou", "complete_box_iou_loss")])
def test_equals_torchvision(kind, tv_name):
    """Optional: run where torchvision is installed (the benchmark venv)."""
    ops = pytest.importorskip("torchvision.ops")
    a, b = _boxes(256)
    torch.testing.assert_close(FN[kind](a, b, reduction="none"), getattr(ops, tv_name)(a, b, reduction="none"),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["linear", "square", "log"])
def test_iou_loss_modes(mode):
    from reference import ref_box_loss

    p = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[0.5, 0.2, 2.5, 1.9], [1.5, 0.5, 3.5, 3.0], [5.0, 5.0, 6.0, 6.0]], dtype=torch.float64)
    iou = torch.tensor([1 - ref_box_loss("iou", a.tolist(), b.tolist()) for a, b in zip(p, t)], dtype=torch.float64)
    want = {"linear": 1 - iou, "square": 1 - iou ** 2, "log": -torch.log(iou.clamp(min=1e-7))}[mode]
    got = fk.iou_loss(p, t, mode=mode, reduction="none")
    torch.testing.assert_close(got, want)
    assert torch.isfinite(got).all()  # the disjoint pair too
    torch.testing.assert_close(fk.IoULoss(mode=mode, reduction="none")(p, t), got)
    with pytest.raises(ValueError, match="mode"):
        fk.iou_loss(p, t, mode="cubic")
