import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference as ref
from conftest import TOL
from focalkit import SigmoidFocalLoss, sigmoid_focal_loss

D = torch.float64
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _data(shape=(6, 5), seed=0, soft=False, dtype=D):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=D) * 4
    y = torch.rand(*shape, generator=g, dtype=D) if soft else (torch.rand(*shape, generator=g) < 0.3).to(D)
    return x.to(dtype), y.to(dtype)


# ---------- reference values (float64, 1e-12 relative) ----------

@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25, "per-class"])
@pytest.mark.parametrize("targets", ["hard", "soft-pt", "soft-linear"])
@pytest.mark.parametrize("pos_weight", [False, True])
def test_values_match_mpmath(gamma, alpha, targets, pos_weight):
    soft = targets != "hard"
    mode = "linear" if targets == "soft-linear" else "pt"
    x, y = _data(soft=soft)
    a = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=D) if alpha == "per-class" else alpha
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0], dtype=D) if pos_weight else None
    got = sigmoid_focal_loss(x, y, alpha=a, gamma=gamma, pos_weight=pw, soft_target=mode, reduction="none")
    want = ref.mp_sigmoid_focal(x.numpy(), y.numpy(), gamma,
                                None if a is None else (a.numpy() if isinstance(a, torch.Tensor) else a),
                                None if pw is None else pw.numpy(), mode)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-300)
    # Reductions are the sum / mean of the same numbers.
    s = sigmoid_focal_loss(x, y, alpha=a, gamma=gamma, pos_weight=pw, soft_target=mode, reduction="sum")
    np.testing.assert_allclose(s.item(), want.sum(), rtol=1e-12)


def test_spec_soft_target_examples():
    """Both soft forms at y = 0.8 / 0.3 have the minimisers of spec 1.4 (gamma = 2)."""
    p = torch.linspace(1e-4, 1 - 1e-4, 200001, dtype=D)
    x = torch.log(p) - torch.log1p(-p)
    for y_value, mode, alpha, want in [(0.8, "pt", 0.25, 0.95304), (0.3, "pt", 0.25, 0.12235),
                                       (0.8, "linear", 0.5, 0.62661), (0.3, "linear", 0.5, 0.42152),
                                       (0.8, "linear", 0.25, 0.52685), (0.3, "linear", 0.25, 0.32600)]:
        y = torch.full_like(x, y_value)
        loss = sigmoid_focal_loss(x, y, alpha=alpha, gamma=2.0, soft_target=mode, reduction="none")
        assert abs(p[loss.argmin()].item() - want) < 2e-5, (y_value, mode, alpha)


# ---------- gamma = 0 contract: exactly BCEWithLogits, every combination ----------

@pytest.mark.parametrize(
    "reduction,weight,pos_weight,soft,mode",
    list(itertools.product(["none", "mean", "sum"], [None, "elem", "bcast"], [None, "class"], [False, True],
                           ["pt", "linear"])),
)
def test_gamma0_equals_bce_with_logits(reduction, weight, pos_weight, soft, mode):
    x, y = _data((4, 3, 5), soft=soft)
    g = torch.Generator().manual_seed(3)
    w = {None: None, "elem": torch.rand(4, 3, 5, generator=g, dtype=D),
         "bcast": torch.rand(3, 1, generator=g, dtype=D)}[weight]
    pw = None if pos_weight is None else torch.rand(5, generator=g, dtype=D) * 3
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    got = sigmoid_focal_loss(x1, y, alpha=None, gamma=0.0, weight=w, pos_weight=pw, reduction=reduction,
                             soft_target=mode)
    want = F.binary_cross_entropy_with_logits(x2, y, weight=w, pos_weight=pw, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    go = torch.randn_like(got)
    got.backward(go)
    want.backward(go)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-13, atol=1e-15)


def test_gamma0_is_exact_where_pytorch_bce_loses_precision():
    """At large margins F.binary_cross_entropy_with_logits drops log1p; focalkit stays exact."""
    x = torch.tensor([-17.0, -30.0, 30.0], dtype=D)
    y = torch.tensor([0.0, 0.0, 1.0], dtype=D)
    got = sigmoid_focal_loss(x, y, alpha=None, gamma=0.0, reduction="none")
    want = ref.mp_sigmoid_focal(x.numpy(), y.numpy(), 0.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)
    torch_bce = F.binary_cross_entropy_with_logits(x, y, reduction="none").numpy()
    assert abs(torch_bce[1] / want[1] - 1) > 1e-3  # documented in docs/math.md


# ---------- gradients ----------

@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("mode", ["pt", "linear"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gradcheck(gamma, mode, reduction):
    x, y = _data((3, 4), soft=True)
    w = torch.rand(3, 4, dtype=D)
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=D)
    a = torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=D)

    def f(inp):
        return sigmoid_focal_loss(inp, y, alpha=a, gamma=gamma, weight=w, pos_weight=pw, soft_target=mode,
                                  reduction=reduction)

    assert torch.autograd.gradcheck(f, (x.clone().requires_grad_(),))


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("mode", ["pt", "linear"])
def test_grad_output_not_one_matches_autodiff_of_reference(gamma, mode):
    x, y = _data((5, 7), soft=True)
    go = torch.randn(5, 7, dtype=D)
    xr = x.clone().requires_grad_()
    (ref.torch_sigmoid_focal(xr, y, gamma, 0.3, None, mode) * go).sum().backward()
    xg = x.clone().requires_grad_()
    sigmoid_focal_loss(xg, y, alpha=0.3, gamma=gamma, soft_target=mode, reduction="none").backward(go)
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-10, atol=1e-13)


def test_normalizer_divides_sum():
    x, y = _data()
    n = y.sum()
    got = sigmoid_focal_loss(x, y, normalizer=n)
    torch.testing.assert_close(got, sigmoid_focal_loss(x, y, reduction="sum") / n)
    xr = x.clone().requires_grad_()
    sigmoid_focal_loss(xr, y, normalizer=4).backward()
    xs = x.clone().requires_grad_()
    (sigmoid_focal_loss(xs, y, reduction="sum") / 4).backward()
    torch.testing.assert_close(xr.grad, xs.grad)


# ---------- stability ----------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("mode", ["pt", "linear"])
def test_finite_at_extreme_logits(dtype, gamma, mode):
    vals = [1e4, -1e4, 17.0, -17.0, 37.0, -37.0, 16.7, -16.7, 0.0, 100.0, -100.0]
    x = torch.tensor(vals, dtype=dtype).repeat(2)
    y = torch.cat([torch.ones(len(vals)), torch.zeros(len(vals))]).to(dtype)
    x.requires_grad_()
    loss = sigmoid_focal_loss(x, y, alpha=0.25, gamma=gamma, soft_target=mode, reduction="none")
    loss.sum().backward()
    assert loss.dtype == dtype and x.grad.dtype == dtype
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
    # Confidently wrong examples keep CE's gradient magnitude alpha_t (no vanishing, no clipping).
    wrong = torch.tensor([v < 0 for v in vals] + [v > 0 for v in vals]) & (x.detach().abs() >= 100)
    a_t = torch.where(y > 0.5, 0.25, 0.75).to(dtype)
    torch.testing.assert_close(x.grad[wrong].abs(), a_t[wrong], rtol=1e-2, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_matches_float64(dtype):
    x, y = _data((8, 9), soft=True)
    xl = x.to(dtype)
    got = sigmoid_focal_loss(xl, y.to(dtype), gamma=0.5, reduction="none")
    want = sigmoid_focal_loss(xl.to(D), y.to(dtype).to(D), gamma=0.5, reduction="none")
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.to(D), want, rtol=rtol, atol=atol)


def test_nan_propagates():
    x = torch.tensor([0.5, float("nan"), -1.0], requires_grad=True)
    y = torch.tensor([1.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(x, y, reduction="none")
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()
    assert torch.isnan(sigmoid_focal_loss(x, y))
    sigmoid_focal_loss(x, y, reduction="sum").backward()
    assert torch.isnan(x.grad[1]) and torch.isfinite(x.grad[[0, 2]]).all()
    assert torch.isnan(sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, float("nan")])))


# ---------- shapes and layouts ----------

def test_module_equals_function():
    x, y = _data((4, 5), soft=True)
    a = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=D)
    pw = torch.full((5,), 2.0, dtype=D)
    m = SigmoidFocalLoss(alpha=a, gamma=1.5, pos_weight=pw, soft_target="linear", reduction="sum")
    torch.testing.assert_close(m(x, y), sigmoid_focal_loss(x, y, alpha=a, gamma=1.5, pos_weight=pw,
                                                           soft_target="linear", reduction="sum"))
    torch.testing.assert_close(m(x, y, normalizer=3.0), sigmoid_focal_loss(
        x, y, alpha=a, gamma=1.5, pos_weight=pw, soft_target="linear", normalizer=3.0))
    assert "alpha" in dict(m.named_buffers()) and "pos_weight" in dict(m.named_buffers())
    assert "gamma=1.5" in repr(m)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 7), (2, 3, 4, 5), (41, 13)])
def test_nd_and_odd_shapes(shape):
    x, y = _data(shape, soft=True)
    got = sigmoid_focal_loss(x, y, gamma=2.0, reduction="none")
    assert got.shape == x.shape
    want = ref.mp_sigmoid_focal(x.numpy().ravel()[:50], y.numpy().ravel()[:50], 2.0, 0.25)
    np.testing.assert_allclose(got.numpy().ravel()[:50], want, rtol=1e-12)


def test_non_contiguous_inputs():
    x, y = _data((6, 8), soft=True)
    xt, yt = x.t(), y.t()
    assert not xt.is_contiguous()
    xs = x[:, ::2]
    for a, b in [(xt, yt), (xs, y[:, ::2])]:
        a = a.detach().requires_grad_()
        assert not a.is_contiguous()
        out = sigmoid_focal_loss(a, b, reduction="none")
        out.backward(torch.ones_like(out) * 2)
        c = a.detach().contiguous().requires_grad_()
        out2 = sigmoid_focal_loss(c, b.contiguous(), reduction="none")
        out2.backward(torch.ones_like(out2) * 2)
        torch.testing.assert_close(out, out2)
        torch.testing.assert_close(a.grad, c.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_input(reduction):
    x = torch.zeros(0, 4, requires_grad=True)
    out = sigmoid_focal_loss(x, torch.zeros(0, 4), reduction=reduction)
    if reduction != "none":
        assert out.item() == 0.0 and out.grad_fn is not None
        out.backward()
        assert x.grad.shape == x.shape
    else:
        assert out.shape == (0, 4)


@pytest.mark.parametrize("backend", ["auto", "eager", "native"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(3, 0), (2, 3, 0), (0, 0)])
def test_class_indices_with_no_class(backend, reduction, shape):
    """Logits with no class take class indices that are all background (0 = C): an empty loss, 0 reduced,
    on every backend (eager could not reshape them, the native op's check refused them). Any other index is
    outside [0, 0] and refused."""
    x = torch.zeros(shape, requires_grad=True)
    out = sigmoid_focal_loss(x, torch.zeros(shape[:-1], dtype=torch.long), reduction=reduction, backend=backend)
    assert out.shape == (shape if reduction == "none" else ())
    assert reduction == "none" or out.item() == 0.0
    out.sum().backward()
    assert x.grad.shape == shape
    if shape[0]:
        with pytest.raises(ValueError, match=r"targets.*\[0, 0\]"):
            sigmoid_focal_loss(x, torch.ones(shape[:-1], dtype=torch.long), backend=backend)


def test_integer_and_bool_targets_accepted():
    x, y = _data((3, 3))
    want = sigmoid_focal_loss(x, y)
    torch.testing.assert_close(sigmoid_focal_loss(x, y.long()), want)
    torch.testing.assert_close(sigmoid_focal_loss(x, y.bool()), want)
