"""Autograd corners: second derivatives (gradgradcheck in float64) of every loss on every backend,
gradients of targets and weights where torch's own losses give them, and the clear errors where a
path cannot give one (inplace_grad, the bare custom ops)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import focalkit as fk
from device import DEVICE
from focalkit.backends import native, triton

D = torch.float64
KERNELS = ["eager"] + (["native"] if native.available() else [])
HAS_TRITON = triton.unsupported(torch.zeros(1, device=DEVICE)) is None
torch.manual_seed(0)
X = (torch.randn(6, 4, dtype=D) * 2).requires_grad_()
Y = torch.rand(6, 4, dtype=D)
YH = (Y > 0.5).to(D)
CW = torch.tensor([0.5, 1.0, 2.0, 0.25], dtype=D)
T = torch.tensor([0, 1, 2, 3, -100, 1])
L = torch.tensor([0, 4, 2, 4, 1, 3])  # sparse sigmoid labels, 4 = background
BOX_P = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0], [0.5, 0.2, 2.5, 1.9]], dtype=D)
BOX_T = torch.tensor([[0.2, 0.1, 2.1, 2.4], [1.5, 0.5, 3.5, 3.0], [0.0, 0.0, 2.0, 2.0]], dtype=D)


def _sigmoid_cases(backend, to=None):
    """``to``: where the constant tensors go (the Triton test's device and float32)."""
    YH, Y, T, CW, L = (g if to is None else to(g) for g in (globals()["YH"], globals()["Y"], globals()["T"],
                                                            globals()["CW"], globals()["L"]))
    D = torch.float64 if to is None else torch.float32
    return {
        "pt-hard": lambda x: fk.sigmoid_focal_loss(x, YH, gamma=1.5, alpha=0.3, backend=backend),
        "pt-soft": lambda x: fk.sigmoid_focal_loss(x, Y, gamma=0.5, backend=backend, reduction="sum"),
        "linear": lambda x: fk.sigmoid_focal_loss(x, Y, gamma=2.0, soft_target="linear", backend=backend,
                                                  pos_weight=torch.full((4,), 2.0, dtype=D, device=YH.device)),
        "signed": lambda x: fk.sigmoid_focal_loss(x, Y, gamma=1.5, soft_target="signed", backend=backend),
        "bce": lambda x: fk.sigmoid_focal_loss(x, Y, gamma=0.5, soft_target="bce", backend=backend, reduction="sum"),
        "quality": lambda x: fk.sigmoid_focal_loss(x, Y, gamma=2.0, alpha=0.3, soft_target="quality", backend=backend),
        "sparse": lambda x: fk.sigmoid_focal_loss(x, L, gamma=2.0, backend=backend, normalizer="positives"),
        "weighted-none": lambda x: fk.sigmoid_focal_loss(x, Y, weight=Y + 0.5, reduction="none", backend=backend),
        "softmax": lambda x: fk.softmax_focal_loss(x, T, gamma=0.5, weight=CW, backend=backend),
        "softmax-smooth": lambda x: fk.softmax_focal_loss(x, T, gamma=2.0, label_smoothing=0.1, backend=backend),
        "softmax-probs": lambda x: fk.softmax_focal_loss(x, torch.softmax(Y, 1), gamma=2.0, backend=backend),
        "softmax-none": lambda x: fk.softmax_focal_loss(x, T, gamma=2.0, reduction="none", backend=backend),
    }


OTHER_CASES = {
    "flsd53": lambda x: fk.softmax_focal_loss(x, T.clamp(min=0), gamma=fk.flsd53_gamma),
    "focal-star": lambda x: fk.focal_loss_star(x, Y, gamma=2.0, beta=1.0, alpha=0.25),
    "qfl": lambda x: fk.quality_focal_loss(x, Y, beta=2.0),
    "qfl-pairs": lambda x: fk.quality_focal_loss(x, (L, Y[:, 1]), beta=2.0),
    "vfl": lambda x: fk.varifocal_loss(x, Y * (Y > 0.4)),
    "dfl": lambda x: fk.distribution_focal_loss(x, Y[:, 0] * 2.9),
    "asl": lambda x: fk.asymmetric_loss(x, YH),
    "poly1-ce": lambda x: fk.poly1_cross_entropy(x, T.clamp(min=0)),
    "poly1-fl": lambda x: fk.poly1_focal_loss(x, YH),
    "yolo-focal": lambda x: fk.FocalLoss(torch.nn.BCEWithLogitsLoss())(x, Y),
    "yolo-qfocal": lambda x: fk.QFocalLoss(torch.nn.BCEWithLogitsLoss())(x, Y),
}
BOX_CASES = {name: (lambda fn: lambda p: fn(p, BOX_T))(getattr(fk, name)) for name in
             ("iou_loss", "giou_loss", "diou_loss", "eiou_loss")}
BOX_CASES["focal_l1_loss"] = lambda p: fk.focal_l1_loss(p, BOX_T)


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("name", list(_sigmoid_cases("eager")))
def test_gradgradcheck_closed_form_losses(backend, name):
    fn = _sigmoid_cases(backend)[name]
    x = X.detach().clone().requires_grad_()
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


@pytest.mark.parametrize("name", list(OTHER_CASES))
def test_gradgradcheck_other_losses(name):
    x = X.detach().clone().requires_grad_()
    assert gradgradcheck(OTHER_CASES[name], (x,))


@pytest.mark.parametrize("name", list(BOX_CASES))
def test_gradgradcheck_box_losses(name):
    p = BOX_P.clone().requires_grad_()
    assert gradgradcheck(BOX_CASES[name], (p,))


def _hvp(fn, p, v):
    p = p.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(p), p, create_graph=True)
    return torch.autograd.grad((g * v).sum(), p)[0]


def test_second_order_of_stop_gradient_box_losses():
    """CIoU's alpha (torchvision) and Focal-EIoU's IoU^gamma weight (the paper) are stop-gradients by
    definition, so their gradient is not the derivative of the loss and gradgradcheck cannot apply.
    Their second derivatives are those of the loss with the factor held at its value."""
    from focalkit.core import box as geo
    v = torch.randn_like(BOX_P)
    with torch.no_grad():
        g0 = geo.geometry(BOX_P, BOX_T)
        iou0 = geo.iou(g0, 1e-7)
        v0 = geo.ciou_v(g0)
        a0 = v0 / (1 - iou0 + v0 + 1e-7)
    frozen_ciou = lambda p: (fk.diou_loss(p, BOX_T, reduction="none") + a0 * geo.ciou_v(geo.geometry(p, BOX_T))).mean()
    torch.testing.assert_close(_hvp(BOX_CASES_SG["ciou_loss"], BOX_P, v), _hvp(frozen_ciou, BOX_P, v))
    frozen_feiou = lambda p: (iou0 ** 0.5 * fk.eiou_loss(p, BOX_T, reduction="none")).mean()
    torch.testing.assert_close(_hvp(BOX_CASES_SG["focal_eiou_loss"], BOX_P, v), _hvp(frozen_feiou, BOX_P, v))


BOX_CASES_SG = {"ciou_loss": lambda p: fk.ciou_loss(p, BOX_T), "focal_eiou_loss": lambda p: fk.focal_eiou_loss(p, BOX_T)}


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton (the interpreter runs on the CPU)")
@pytest.mark.parametrize("name", list(_sigmoid_cases("eager")))
def test_triton_second_order_equals_eager(name):
    """Triton computes in float32 (no gradgradcheck there): its Hessian-vector product equals eager's."""
    v = torch.randn(6, 4).to(DEVICE)
    out = []
    to = lambda t: t.to(DEVICE, torch.float32) if t.is_floating_point() else t.to(DEVICE)
    for backend in ("eager", "triton"):
        x = X.detach().float().clone().to(DEVICE).requires_grad_()
        fn = _sigmoid_cases(backend, to)[name]
        loss = fn(x)
        loss = loss.sum() if loss.dim() else loss
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        assert g.requires_grad, backend
        (hv,) = torch.autograd.grad((g * v).sum(), x)
        out.append(hv)
    torch.testing.assert_close(out[1], out[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", KERNELS)
def test_gradient_penalty_reaches_the_logits(backend):
    """loss + |dL/dx|^2 backpropagates the penalty (it silently did not before)."""
    x = X.detach().clone().requires_grad_()
    loss = fk.sigmoid_focal_loss(x, YH, gamma=2.0, backend=backend)
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (loss + (g ** 2).sum()).backward()
    # the same with the naive formula, differentiated twice by autograd
    x2 = X.detach().clone().requires_grad_()
    p = torch.sigmoid(x2)
    pt = p * YH + (1 - p) * (1 - YH)
    a_t = 0.25 * YH + 0.75 * (1 - YH)
    naive = (-a_t * (1 - pt) ** 2 * torch.log(pt)).mean()
    (g2,) = torch.autograd.grad(naive, x2, create_graph=True)
    (naive + (g2 ** 2).sum()).backward()
    torch.testing.assert_close(x.grad, x2.grad)


# ---- gradients of targets and weights ------------------------------------------------------------

@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("soft", ["pt", "linear", "signed", "bce", "quality"])
def test_target_and_weight_gradients_at_gamma_0_equal_bce(backend, soft):
    y1, y2 = Y.clone().requires_grad_(), Y.clone().requires_grad_()
    w1, w2 = (Y + 0.5).requires_grad_(), (Y + 0.5).requires_grad_()
    pw1, pw2 = torch.rand(4, dtype=D).add(0.5).requires_grad_(), None
    pw2 = pw1.detach().clone().requires_grad_()
    x1, x2 = X.detach().clone().requires_grad_(), X.detach().clone().requires_grad_()
    fk.sigmoid_focal_loss(x1, y1, gamma=0.0, alpha=None, weight=w1, pos_weight=pw1, soft_target=soft,
                          backend=backend).backward()
    # torch's BCE gives target gradients only (weight and pos_weight "not differentiable"): focalkit's
    # gradients of those are checked numerically
    F.binary_cross_entropy_with_logits(x2, y2, weight=w2.detach(), pos_weight=pw2.detach()).backward()
    for a, b in ((x1, x2), (y1, y2)):
        torch.testing.assert_close(a.grad, b.grad)
    fn = lambda w, pw: fk.sigmoid_focal_loss(X.detach(), Y, gamma=0.0, alpha=None, weight=w, pos_weight=pw,
                                             soft_target=soft, backend=backend)
    assert gradcheck(fn, (w1.detach().clone().requires_grad_(), pw1.detach().clone().requires_grad_()))


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("soft", ["pt", "linear", "signed", "bce", "quality"])
def test_target_gradients_gradcheck(backend, soft):
    fn = lambda x, y, a: fk.sigmoid_focal_loss(x, y, gamma=1.5, alpha=a, soft_target=soft, backend=backend)
    a = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=D, requires_grad=True)
    assert gradcheck(fn, (X.detach().clone().requires_grad_(), Y.clone().clamp(0.05, 0.95).requires_grad_(), a))


@pytest.mark.parametrize("soft", ["pt", "linear", "signed", "bce", "quality"])
def test_target_gradients_are_finite_and_right_at_hard_labels(soft):
    """At y in {0, 1} the gradient is one-sided there; it equals the derivative from inside (0, 1)."""
    y = YH.clone().requires_grad_()
    fk.sigmoid_focal_loss(X.detach(), y, gamma=1.5, soft_target=soft, reduction="sum").backward()
    assert torch.isfinite(y.grad).all()
    h = 1e-7
    inside = torch.where(YH > 0, YH - h, YH + h)
    step = torch.where(YH > 0, -h, h)
    for i in range(YH.numel()):
        yp = YH.clone().reshape(-1)
        yp[i] = inside.reshape(-1)[i]
        num = (fk.sigmoid_focal_loss(X.detach(), yp.view_as(YH), gamma=1.5, soft_target=soft, reduction="sum")
               - fk.sigmoid_focal_loss(X.detach(), YH, gamma=1.5, soft_target=soft, reduction="sum")) / step.reshape(-1)[i]
        torch.testing.assert_close(y.grad.reshape(-1)[i], num, rtol=1e-5, atol=1e-6)


def test_quality_focal_target_gradients_including_hard_labels():
    y = torch.cat([Y[:3], YH[3:]]).clamp(max=1.0)
    y1 = y.clone().requires_grad_()
    fk.quality_focal_loss(X.detach(), y1, beta=2.0, reduction="sum").backward()
    h = 1e-7
    for i in range(y.numel()):
        yp = y.clone().reshape(-1)
        s = -h if yp[i] > 0.5 else h
        yp[i] += s
        num = (fk.quality_focal_loss(X.detach(), yp.view_as(y), beta=2.0, reduction="sum")
               - fk.quality_focal_loss(X.detach(), y, beta=2.0, reduction="sum")) / s
        torch.testing.assert_close(y1.grad.reshape(-1)[i], num, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", KERNELS)
def test_softmax_probability_target_and_weight_gradients_equal_cross_entropy(backend):
    q1 = torch.softmax(Y, 1).requires_grad_()
    q2 = q1.detach().clone().requires_grad_()
    w1, w2 = torch.rand(4, dtype=D).requires_grad_(), None
    w2 = w1.detach().clone().requires_grad_()
    x1, x2 = X.detach().clone().requires_grad_(), X.detach().clone().requires_grad_()
    fk.softmax_focal_loss(x1, q1, gamma=0.0, weight=w1, label_smoothing=0.1, backend=backend).backward()
    F.cross_entropy(x2, q2, weight=w2, label_smoothing=0.1).backward()
    for a, b in ((x1, x2), (q1, q2), (w1, w2)):
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("backend", KERNELS)
def test_softmax_class_weight_gradient_with_class_indices(backend):
    """F.cross_entropy refuses a weight gradient with class indices; focalkit gives the right one."""
    w = torch.rand(4, dtype=D).add(0.1).requires_grad_()
    fn = lambda x, w: fk.softmax_focal_loss(x, T, gamma=2.0, weight=w, backend=backend)
    assert gradcheck(fn, (X.detach().clone().requires_grad_(), w))


@pytest.mark.parametrize("backend", KERNELS)
def test_normalizer_tensor_gradient(backend):
    n = torch.tensor(3.0, dtype=D, requires_grad=True)
    fn = lambda x, n: fk.sigmoid_focal_loss(x, YH, normalizer=n, backend=backend)
    assert gradcheck(fn, (X.detach().clone().requires_grad_(), n))


def test_detached_targets_keep_the_fast_path():
    """No recompute without a need: the saved closed-form gradient is what backward returns."""
    x = X.detach().clone().requires_grad_()
    loss = fk.sigmoid_focal_loss(x, Y)
    saved = loss.grad_fn.saved_tensors[0].data_ptr()
    (g,) = torch.autograd.grad(loss, x)
    assert g.data_ptr() == saved


# ---- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", KERNELS)
def test_inplace_grad_refusals(backend):
    base = torch.randn(10, 4)
    leaf = base.clone().requires_grad_()
    with pytest.raises(ValueError, match="inplace_grad.*leaf"):
        fk.sigmoid_focal_loss(leaf, torch.ones(10, 4), inplace_grad=True, backend=backend)
    with pytest.raises(ValueError, match="inplace_grad.*leaf"):
        fk.softmax_focal_loss(leaf, torch.zeros(10, dtype=torch.long), inplace_grad=True, backend=backend)
    with pytest.raises(ValueError, match="inplace_grad.*view of one"):
        fk.sigmoid_focal_loss(leaf[::2], torch.ones(5, 4), inplace_grad=True, backend=backend)
    b = torch.randn(12, requires_grad=True)
    over = (b * 1).unfold(0, 5, 1)  # rows share memory
    with pytest.raises(ValueError, match="inplace_grad.*share memory"):
        fk.sigmoid_focal_loss(over, torch.ones_like(over), inplace_grad=True, backend=backend)
    with pytest.raises(ValueError, match="inplace_grad.*share memory"):
        fk.softmax_focal_loss(over, torch.zeros(8, dtype=torch.long), inplace_grad=True, backend=backend)
    e = (torch.randn(1, 4, requires_grad=True) * 1).expand(10, 4)
    with pytest.raises(ValueError, match="inplace_grad.*share memory"):
        fk.sigmoid_focal_loss(e, torch.ones(10, 4), inplace_grad=True, backend=backend)
    x = leaf * 1
    y = torch.rand(10, 4, requires_grad=True)
    with pytest.raises(ValueError, match="inplace_grad.*targets or weights require grad"):
        fk.sigmoid_focal_loss(x, y, inplace_grad=True, backend=backend)
    loss = fk.sigmoid_focal_loss(x, y.detach(), inplace_grad=True, backend=backend)
    with pytest.raises(RuntimeError, match="inplace_grad=True overwrote the logits"):
        torch.autograd.grad(loss, leaf, create_graph=True)


def test_inplace_grad_on_a_strided_non_overlapping_view_is_right():
    src = torch.randn(12, 4)
    y = (torch.rand(6, 4) > 0.5).float()
    want_leaf = src[::2].clone().requires_grad_()
    fk.sigmoid_focal_loss(want_leaf, y).backward()
    leaf = src.clone().requires_grad_()
    x = (leaf * 1)[::2]
    fk.sigmoid_focal_loss(x, y, inplace_grad=True).backward()
    torch.testing.assert_close(leaf.grad[::2], want_leaf.grad)
    assert (leaf.grad[1::2] == 0).all()


@pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")
def test_bare_op_refuses_second_order_and_target_gradients():
    from focalkit.backends import native as nb
    x = torch.randn(3, 2, requires_grad=True)
    y = torch.rand(3, 2)
    ones = torch.ones(2)
    loss, _ = nb.sigmoid_op(x, y, None, ones, ones, ones, False, False, 1, 2.0, "sum", None)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, x, create_graph=True)
    yg = y.clone().requires_grad_()
    loss, _ = nb.sigmoid_op(x, yg, None, ones, ones, ones, False, False, 1, 2.0, "sum", None)
    with pytest.raises(RuntimeError, match="logits only"):
        loss.backward()
