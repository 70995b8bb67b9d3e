"""QFL, DFL, VFL, ASL, Poly-1, FLSD-53, sparse sigmoid targets, the positives normaliser."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference as ref
import focalkit as fk

D = torch.float64


def _xy(shape=(6, 5), seed=0, soft=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=D) * 3
    y = torch.rand(*shape, generator=g, dtype=D) if soft else (torch.rand(*shape, generator=g) < 0.3).to(D)
    return x, y


def _grad(fn, x, go=None):
    x = x.clone().requires_grad_()
    out = fn(x)
    out.backward(torch.ones_like(out) if go is None else go)
    return out.detach(), x.grad


EXTREME = torch.tensor([[1e4, -1e4, 17.0, -17.0, 37.0, -37.0, 0.0]], dtype=D).repeat(2, 1)
EXTREME_Y = torch.tensor([[1.0] * 7, [0.0] * 7], dtype=D)


# ---------- QFL ----------

def test_qfl_beta0_is_bce_and_values():
    x, y = _xy()
    torch.testing.assert_close(fk.quality_focal_loss(x, y, beta=0.0), F.binary_cross_entropy_with_logits(x, y))
    for beta in (1.0, 2.0, 2.5):
        got, g = _grad(lambda t: fk.quality_focal_loss(t, y, beta=beta, reduction="none"), x)
        want, gw = _grad(lambda t: ref.torch_quality_focal(t, y, beta), x)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, gw, rtol=1e-10, atol=1e-13)


def test_qfl_label_score_pair_equals_dense_and_mmdet():
    x, _ = _xy((6, 4))
    labels, scores = torch.tensor([0, 4, 2, 4, 3, 1]), torch.tensor([0.9, 0.0, 0.5, 0.3, 0.7, 0.2], dtype=D)
    dense = torch.zeros(6, 4, dtype=D)
    for i, (lab, s) in enumerate(zip(labels.tolist(), scores.tolist())):
        if lab < 4:
            dense[i, lab] = s
    torch.testing.assert_close(fk.quality_focal_loss(x, (labels, scores), reduction="sum"),
                               fk.quality_focal_loss(x, dense, reduction="sum"))
    # mmdet's quality_focal_loss, re-typed: negatives BCE(x, 0) * sigma^beta, positives BCE(x, s) * |s - sigma|^beta
    sig = x.sigmoid()
    mm = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none") * sig.pow(2)
    pos = (labels < 4).nonzero().squeeze(1)
    pl = labels[pos]
    mm[pos, pl] = F.binary_cross_entropy_with_logits(x[pos, pl], scores[pos], reduction="none") * (
        scores[pos] - sig[pos, pl]).abs().pow(2)
    torch.testing.assert_close(fk.quality_focal_loss(x, (labels, scores), reduction="none"), mm, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_qfl_gradcheck_and_extremes(beta):
    x, y = _xy((3, 4))
    assert torch.autograd.gradcheck(lambda t: fk.quality_focal_loss(t, y + 0.013, beta=2.0), (x.requires_grad_(),))
    out, g = _grad(lambda t: fk.quality_focal_loss(t, EXTREME_Y, beta=beta, reduction="sum"), EXTREME)
    assert torch.isfinite(out).all() and torch.isfinite(g).all()


# ---------- DFL ----------

def test_dfl_values_gradient_and_clamping():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 17, generator=g, dtype=D)
    y = torch.tensor([0.0, 3.25, 7.9, 15.5, 15.99], dtype=D)
    logp = torch.log_softmax(z, 1)
    left = y.floor().long()
    mm = -((left + 1 - y) * logp[torch.arange(5), left] + (y - left) * logp[torch.arange(5), left + 1])  # mmdet
    got, grad = _grad(lambda t: fk.distribution_focal_loss(t, y, reduction="none"), z)
    torch.testing.assert_close(got, mm, rtol=1e-12, atol=1e-15)
    two_hot = torch.zeros(5, 17, dtype=D)
    two_hot[torch.arange(5), left] = left + 1 - y
    two_hot[torch.arange(5), left + 1] = y - left
    torch.testing.assert_close(grad, torch.softmax(z, 1) - two_hot, rtol=1e-12, atol=1e-14)
    # y = n puts everything on the last bin; beyond the range is clamped
    edge = fk.distribution_focal_loss(z[:3], torch.tensor([16.0, 20.0, -1.0], dtype=D), reduction="none")
    torch.testing.assert_close(edge, torch.stack([-logp[0, 16], -logp[1, 16], -logp[2, 0]]))
    assert torch.autograd.gradcheck(lambda t: fk.distribution_focal_loss(t, y), (z.clone().requires_grad_(),))


# ---------- VFL ----------

@pytest.mark.parametrize("iou_weighted", [True, False])
def test_vfl_equals_mmdet_definition(iou_weighted):
    x, y = _xy()
    q = torch.where(y > 0.6, y, torch.zeros_like(y))

    def mmdet(t):
        p = t.sigmoid()
        w = (q * (q > 0).to(D) if iou_weighted else (q > 0).to(D)) + 0.75 * (p - q).abs().pow(2) * (q <= 0).to(D)
        return F.binary_cross_entropy_with_logits(t, q, reduction="none") * w

    got, g = _grad(lambda t: fk.varifocal_loss(t, q, iou_weighted=iou_weighted, reduction="none"), x)
    want, gw = _grad(mmdet, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g, gw, rtol=1e-10, atol=1e-13)
    out, ge = _grad(lambda t: fk.varifocal_loss(t, EXTREME_Y * 0.8, gamma=0.5, reduction="sum"), EXTREME)
    assert torch.isfinite(out).all() and torch.isfinite(ge).all()


def test_activated_probabilities_equal_the_logit_path_and_mmdet_prob_form():
    """activated=True (mmdet): probabilities in; values equal BCE(p, q) |q - p|^beta on probabilities, the
    gradient flows to p; p = 0 and 1 stay finite."""
    x, y = _xy()
    p = x.sigmoid()
    got, gp = _grad(lambda t: fk.quality_focal_loss(t, y, activated=True, reduction="none"), p)
    want, gw = _grad(lambda t: F.binary_cross_entropy(t, y, reduction="none") * (y - t).abs().pow(2), p)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(gp, gw, rtol=1e-8, atol=1e-10)
    q = torch.where(y > 0.6, y, torch.zeros_like(y))
    torch.testing.assert_close(fk.varifocal_loss(p, q, activated=True), fk.varifocal_loss(x, q), rtol=1e-10, atol=0)
    edge = torch.tensor([[0.0, 1.0, 0.5]], dtype=D, requires_grad=True)
    out = fk.quality_focal_loss(edge, torch.tensor([[0.0, 1.0, 0.5]], dtype=D), activated=True, reduction="sum")
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(edge.grad).all() and float(out.detach()) < 1e-30
    with pytest.raises(ValueError, match="probabilities"):
        fk.quality_focal_loss(x, y, activated=True)
    assert fk.QualityFocalLoss(activated=True)(p, y).item() == pytest.approx(
        fk.quality_focal_loss(x, y).item(), rel=1e-10)


def test_vfl_labels_select_the_positives_as_ultralytics():
    """labels=: weight = alpha sigma^gamma (1 - label) + q label (ultralytics' VarifocalLoss), also where a
    label is 1 with a 0 score (mmdet's default rule would call it a negative)."""
    x, y = _xy()
    label = (y > 0.5).to(D)
    q = y * label
    q[0, 0], label[0, 0] = 0.0, 1.0
    want_fn = lambda t: F.binary_cross_entropy_with_logits(t, q, reduction="none") * (  # noqa: E731
        0.75 * t.sigmoid().pow(2) * (1 - label) + q * label)
    got, g = _grad(lambda t: fk.varifocal_loss(t, q, labels=label, reduction="none"), x)
    want, gw = _grad(want_fn, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g, gw, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(fk.varifocal_loss(x, q, labels=label.bool(), reduction="none"), got)
    with pytest.raises(ValueError, match="labels"):
        fk.varifocal_loss(x, q, labels=label[:2])


# ---------- ASL ----------

def _asl_official(x, y, gp, gn, clip, detach):
    """Alibaba-MIIL AsymmetricLoss re-typed (eps clamp omitted: values here are far from it)."""
    xs_pos = torch.sigmoid(x)
    xs_neg = (1 - xs_pos + clip).clamp(max=1) if clip > 0 else 1 - xs_pos
    los = y * torch.log(xs_pos) + (1 - y) * torch.log(xs_neg)
    pt = xs_pos * y + xs_neg * (1 - y)
    w = torch.pow(1 - pt, gp * y + gn * (1 - y))
    return -(los * (w.detach() if detach else w))


@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("gp,gn,clip", [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 2.0, 0.0), (1.0, 3.0, 0.1)])
def test_asl_equals_official(detach, gp, gn, clip):
    x, y = _xy(soft=False)
    x = x + 0.0071  # keep p off the margin exactly
    got, g = _grad(lambda t: fk.asymmetric_loss(t, y, gamma_pos=gp, gamma_neg=gn, clip=clip, detach_weight=detach,
                                                reduction="none"), x)
    want, gw = _grad(lambda t: _asl_official(t, y, gp, gn, clip, detach), x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(g, gw, rtol=1e-9, atol=1e-13)


def test_asl_identities_and_threshold():
    x, y = _xy(soft=False)
    torch.testing.assert_close(fk.asymmetric_loss(x, y, gamma_pos=0, gamma_neg=0, clip=0.0),
                               F.binary_cross_entropy_with_logits(x, y))
    # spec 6.2: negatives at x = -2.9 (p = 0.0521 > m) give 4.637e-14, at x = -3.5 (p < m) exactly 0
    xs = torch.tensor([-2.9, -3.5], dtype=D, requires_grad=True)
    out = fk.asymmetric_loss(xs, torch.zeros(2, dtype=D), reduction="none")
    assert abs(out[0].item() - 4.637e-14) < 1e-16 and out[1].item() == 0.0
    out.sum().backward()
    assert xs.grad[1].item() == 0.0
    for gn in (0.5, 4.0):
        o, g = _grad(lambda t: fk.asymmetric_loss(t, EXTREME_Y, gamma_pos=0.5, gamma_neg=gn, reduction="sum"), EXTREME)
        assert torch.isfinite(o).all() and torch.isfinite(g).all()
    assert torch.autograd.gradcheck(lambda t: fk.asymmetric_loss(t, y), ((x + 0.0071).requires_grad_(),))


# ---------- Poly-1 ----------

@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["index-ignore", "nd", "probs"])
def test_poly1_ce_eps0_is_cross_entropy(weighted, label_smoothing, kind):
    g = torch.Generator().manual_seed(0)
    extra = (3,) if kind == "nd" else ()
    z = torch.randn(6, 4, *extra, generator=g, dtype=D)
    if kind == "probs":
        t = torch.softmax(torch.randn(6, 4, generator=g, dtype=D), 1)
    else:
        t = torch.randint(0, 4, (6, *extra), generator=g)
        if kind == "index-ignore":
            t[::3] = -100
    w = torch.linspace(0.5, 2.0, 4, dtype=D) if weighted else None
    for red in ("none", "mean", "sum"):
        a, ga = _grad(lambda s: fk.poly1_cross_entropy(s, t, epsilon=0.0, weight=w, label_smoothing=label_smoothing,
                                                       reduction=red), z)
        b, gb = _grad(lambda s: F.cross_entropy(s, t, weight=w, label_smoothing=label_smoothing, reduction=red), z)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ga, gb, rtol=1e-11, atol=1e-14)


def test_poly1_ce_gradient_closed_form():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 4, generator=g, dtype=D)
    t = torch.tensor([0, 1, 2, 3, 0])
    eps = 2.0
    _, grad = _grad(lambda s: fk.poly1_cross_entropy(s, t, epsilon=eps, reduction="sum"), z)
    p = torch.softmax(z, 1)
    pt = p[torch.arange(5), t]
    want = (1 + eps * pt)[:, None] * (p - F.one_hot(t, 4).to(D))  # spec 6.3
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda s: fk.poly1_cross_entropy(s, t, epsilon=-0.5), (z.requires_grad_(),))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_poly1_focal(gamma):
    x, y = _xy(soft=False)
    torch.testing.assert_close(fk.poly1_focal_loss(x, y, epsilon=0.0, gamma=gamma), fk.sigmoid_focal_loss(x, y, gamma=gamma))
    eps, a = 1.5, 0.25
    _, g1 = _grad(lambda t: fk.poly1_focal_loss(t, y, epsilon=eps, alpha=a, gamma=gamma, reduction="sum"), x)
    _, g0 = _grad(lambda t: fk.sigmoid_focal_loss(t, y, alpha=a, gamma=gamma, reduction="sum"), x)
    tt = 2 * y - 1
    pt, qt = torch.sigmoid(tt * x), torch.sigmoid(-tt * x)
    a_t = a * y + (1 - a) * (1 - y)
    torch.testing.assert_close(g1 - g0, -eps * a_t * (gamma + 1) * tt * qt ** (gamma + 1) * pt, rtol=1e-10, atol=1e-14)
    o, ge = _grad(lambda t: fk.poly1_focal_loss(t, EXTREME_Y, gamma=gamma, reduction="sum"), EXTREME)
    assert torch.isfinite(o).all() and torch.isfinite(ge).all()
    assert torch.autograd.gradcheck(lambda t: fk.poly1_focal_loss(t, y, gamma=gamma), (x.requires_grad_(),))


# ---------- FLSD-53 ----------

def test_flsd53_schedule():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(40, 5, generator=g, dtype=D) * 2
    t = torch.randint(0, 5, (40,), generator=g)
    p_y = torch.softmax(z, 1)[torch.arange(40), t]
    assert (p_y < 0.2).any() and (p_y >= 0.2).any()
    got, g_got = _grad(lambda s: fk.softmax_focal_loss(s, t, gamma=fk.flsd53_gamma, reduction="none"), z)
    low, g_low = _grad(lambda s: fk.softmax_focal_loss(s, t, gamma=5.0, reduction="none"), z)
    high, g_high = _grad(lambda s: fk.softmax_focal_loss(s, t, gamma=3.0, reduction="none"), z)
    m = p_y < 0.2
    torch.testing.assert_close(got, torch.where(m, low, high))
    torch.testing.assert_close(g_got, torch.where(m[:, None], g_low, g_high))  # no gradient through the switch
    with pytest.raises(TypeError, match="gamma"):
        fk.softmax_focal_loss(z, torch.softmax(z, 1), gamma=fk.flsd53_gamma)


# ---------- sparse targets and the positives normaliser ----------

@pytest.mark.parametrize("alpha", [None, 0.25, "per-class"])
@pytest.mark.parametrize("pos_weight", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sparse_equals_dense(alpha, pos_weight, gamma):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 7, 4, generator=g, dtype=D) * 4  # (batch, anchors, classes)
    labels = torch.randint(0, 5, (2, 7), generator=g)  # 4 = background
    dense = F.one_hot(labels, 5)[..., :4].to(D)
    a = torch.tensor([0.1, 0.3, 0.5, 0.9], dtype=D) if alpha == "per-class" else alpha
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=D) if pos_weight else None
    w = torch.rand(2, 7, 1, generator=g, dtype=D)
    go = torch.rand(2, 7, 4, generator=g, dtype=D)
    s, gs = _grad(lambda t: fk.sigmoid_focal_loss(t, labels, alpha=a, gamma=gamma, pos_weight=pw, weight=w,
                                                  reduction="none"), x, go)
    d, gd = _grad(lambda t: fk.sigmoid_focal_loss(t, dense, alpha=a, gamma=gamma, pos_weight=pw, weight=w,
                                                  reduction="none"), x, go)
    torch.testing.assert_close(s, d, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(gs, gd, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="`targets`"):
        fk.sigmoid_focal_loss(x, torch.full((2, 7), 5))


def test_positives_normalizer():
    x, y = _xy(soft=False)
    want = fk.sigmoid_focal_loss(x, y, reduction="sum") / max(1.0, y.sum().item())
    torch.testing.assert_close(fk.sigmoid_focal_loss(x, y, normalizer="positives"), want)
    torch.testing.assert_close(fk.sigmoid_focal_loss(x, y, normalizer="positives", sync=True), want)  # no group
    zero = torch.zeros_like(y)
    torch.testing.assert_close(fk.sigmoid_focal_loss(x, zero, normalizer="positives"),
                               fk.sigmoid_focal_loss(x, zero, reduction="sum"))  # clamped at 1
    with pytest.raises(ValueError, match="`sync`"):
        fk.sigmoid_focal_loss(x, y, sync=True)
    with pytest.raises(ValueError, match="`normalizer`"):
        fk.sigmoid_focal_loss(x, y, normalizer="anchors")


# ---------- modules, half precision, bad inputs ----------

def test_modules_equal_functions():
    x, y = _xy()
    q = torch.where(y > 0.6, y, torch.zeros_like(y))
    torch.testing.assert_close(fk.QualityFocalLoss(beta=1.5, reduction="sum")(x, y),
                               fk.quality_focal_loss(x, y, beta=1.5, reduction="sum"))
    torch.testing.assert_close(fk.VarifocalLoss(alpha=0.5, gamma=1.0)(x, q), fk.varifocal_loss(x, q, alpha=0.5, gamma=1.0))
    z = torch.randn(4, 9, dtype=D)
    d = torch.tensor([0.5, 3.0, 7.9, 2.2], dtype=D)
    torch.testing.assert_close(fk.DistributionFocalLoss()(z, d), fk.distribution_focal_loss(z, d))
    torch.testing.assert_close(fk.AsymmetricLoss(gamma_pos=1.0, detach_weight=True)(x, y),
                               fk.asymmetric_loss(x, y, gamma_pos=1.0, detach_weight=True))
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    torch.testing.assert_close(fk.Poly1CrossEntropyLoss(epsilon=0.5)(x, t), fk.poly1_cross_entropy(x, t, epsilon=0.5))
    torch.testing.assert_close(fk.Poly1FocalLoss(epsilon=0.5)(x, y), fk.poly1_focal_loss(x, y, epsilon=0.5))
    torch.testing.assert_close(fk.SoftmaxFocalLoss(gamma=fk.flsd53_gamma)(x, t),
                               fk.softmax_focal_loss(x, t, gamma=fk.flsd53_gamma))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype):
    x, y = _xy()
    xh, yh = x.to(dtype), y.to(dtype)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    calls = [
        lambda a, b: fk.quality_focal_loss(a, b), lambda a, b: fk.varifocal_loss(a, b * (b > 0.6)),
        lambda a, b: fk.asymmetric_loss(a, (b > 0.5).to(b.dtype)), lambda a, b: fk.poly1_focal_loss(a, (b > 0.5).to(b.dtype)),
        lambda a, b: fk.poly1_cross_entropy(a, t),
    ]
    for call in calls:
        a = xh.clone().requires_grad_()
        out = call(a, yh)
        out.backward()
        # reduced (the default mean): float32; the gradient in the logits' dtype (docs/api.md, "Mixed precision")
        assert out.dtype == torch.float32 and a.grad.dtype == dtype and torch.isfinite(a.grad).all()
        torch.testing.assert_close(out.double(), call(xh.double(), yh.double()), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("call,name", [
    (lambda: fk.quality_focal_loss(torch.zeros(2, 3), torch.zeros(2, 4)), "targets"),
    (lambda: fk.quality_focal_loss(torch.zeros(2, 3), torch.zeros(2, 3), beta=-1), "beta"),
    (lambda: fk.quality_focal_loss(torch.zeros(2, 3), (torch.tensor([0, 4]), torch.ones(2))), "targets[0]"),
    (lambda: fk.varifocal_loss(torch.zeros(2, 3), torch.zeros(2, 3), alpha=-0.1), "alpha"),
    (lambda: fk.distribution_focal_loss(torch.zeros(2, 5), torch.zeros(3)), "targets"),
    (lambda: fk.asymmetric_loss(torch.zeros(2, 3), torch.zeros(2, 3), clip=1.0), "clip"),
    (lambda: fk.asymmetric_loss(torch.zeros(2, 3), torch.zeros(2, 3), gamma_neg=-1), "gamma_neg"),
    (lambda: fk.poly1_cross_entropy(torch.zeros(2, 3), torch.zeros(2).long(), epsilon=-2.0), "epsilon"),
    (lambda: fk.poly1_focal_loss(torch.zeros(2, 3), torch.zeros(2, 3), epsilon=-1.5), "epsilon"),
])
def test_bad_inputs(call, name):
    with pytest.raises((ValueError, TypeError), match=f"`{name.replace('[', '.').replace(']', '.')}`"):
        call()
