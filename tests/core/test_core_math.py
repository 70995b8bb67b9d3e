"""core's closed-form gradients and Hessians equal torch.func autodiff of the naive references."""

import itertools

import pytest
import torch
from torch.func import grad, vmap

import reference as ref
from focalkit.core import (
    focal_star,
    quality_focal,
    sigmoid_focal_linear,
    sigmoid_focal_pt,
    sigmoid_focal_signed,
    sigmoid_focal_bce,
    softmax_focal_dense,
    softmax_focal_hard,
)

D = torch.float64
X = torch.linspace(-12, 12, 49, dtype=D)
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _elementwise_derivs(f, x, y):
    """First and second derivative of a scalar f(x, y) at every element, by autodiff."""
    g = vmap(grad(f))(x, y)
    h = vmap(grad(grad(f)))(x, y)
    return g, h


@pytest.mark.parametrize("form", ["pt", "linear", "signed", "bce"])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("pos_weight", [None, 3.0])
@pytest.mark.parametrize("y_value", [0.0, 1.0, 0.3, 0.8])
def test_sigmoid_grad_hess_equal_autodiff(form, gamma, alpha, pos_weight, y_value):
    x = X
    y = torch.full_like(x, y_value)
    pw = None if pos_weight is None else torch.full_like(x, pos_weight)
    forms = {"pt": sigmoid_focal_pt, "signed": sigmoid_focal_signed, "bce": sigmoid_focal_bce}
    core = forms.get(form, sigmoid_focal_linear)
    terms = core(x, y, gamma, alpha, pw, hessian=True)

    def f(xi, yi):
        return ref.torch_sigmoid_focal(xi, yi, gamma, alpha, pos_weight, form)

    g, h = _elementwise_derivs(f, x, y)
    # the naive "bce" form's 1 - exp(log p_t) loses digits at |x| ~ 11 (1e-12): its loss is held to mpmath
    loose = 100.0 if form == "bce" else 1.0
    torch.testing.assert_close(terms.loss, vmap(f)(x, y), rtol=1e-12 * loose, atol=1e-14)
    torch.testing.assert_close(terms.grad, g, rtol=1e-10 * loose, atol=1e-13)
    torch.testing.assert_close(terms.hess, h, rtol=1e-9 * loose, atol=1e-12)
    if form == "bce":
        exact = ref.mp_sigmoid_focal(x.numpy(), y.numpy(), gamma, alpha, pos_weight, form)
        torch.testing.assert_close(terms.loss, torch.from_numpy(exact), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("pos_weight", [None, 2.0])
def test_sigmoid_hard_labels_forms_agree(gamma, alpha, pos_weight):
    y = (torch.arange(X.numel()) % 2).to(D)
    pw = None if pos_weight is None else torch.full_like(X, pos_weight)
    a = sigmoid_focal_pt(X, y, gamma, alpha, pw, hessian=True)
    b = sigmoid_focal_linear(X, y, gamma, alpha, pw, hessian=True)
    for other in (sigmoid_focal_signed, sigmoid_focal_bce):
        for u, v in zip(other(X, y, gamma, alpha, pw, hessian=True), b):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("xt", [20.0, 40.0, 80.0])
def test_sigmoid_easy_example_asymptote(gamma, xt):
    """As p_t -> 1: dL/dx ~ -t (1+g) q^(1+g) and d2L/dx2 ~ (1+g)^2 q^(1+g) (spec 1.3)."""
    x = torch.tensor([xt, -xt], dtype=D)
    y = torch.tensor([1.0, 0.0], dtype=D)
    q = torch.sigmoid(-torch.tensor(xt, dtype=D))
    t = torch.tensor([1.0, -1.0], dtype=D)
    terms = sigmoid_focal_linear(x, y, gamma, hessian=True)
    torch.testing.assert_close(terms.grad, -t * (1 + gamma) * q ** (1 + gamma), rtol=1e-8, atol=0)
    torch.testing.assert_close(terms.hess, (1 + gamma) ** 2 * q ** (1 + gamma) * torch.ones(2, dtype=D),
                               rtol=1e-8, atol=0)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 4.0])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
@pytest.mark.parametrize("alpha", [None, 0.75])
@pytest.mark.parametrize("y_value", [0.0, 1.0, 0.4])
def test_focal_star_grad_hess_equal_autodiff(gamma, beta, alpha, y_value):
    y = torch.full_like(X, y_value)
    terms = focal_star(X, y, gamma, beta, alpha, hessian=True)

    def f(xi, yi):
        return ref.torch_focal_star(xi, yi, gamma, beta, alpha)

    g, h = _elementwise_derivs(f, X, y)
    torch.testing.assert_close(terms.loss, vmap(f)(X, y), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(terms.grad, g, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(terms.hess, h, rtol=1e-9, atol=1e-12)
    assert bool((terms.hess >= 0).all())  # FL* is convex


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("pos_weight", [None, 2.0])
@pytest.mark.parametrize("y_value", [0.0, 1.0, 0.3, 0.9])
def test_quality_grad_equals_autodiff(beta, alpha, pos_weight, y_value):
    # Avoid sigma(x) == y exactly, where |.|^beta is not differentiable.
    x = X + 0.0123
    y = torch.full_like(x, y_value)
    pw = None if pos_weight is None else torch.full_like(x, pos_weight)
    loss, g_cf = quality_focal(x, y, beta, alpha, pw)

    def f(xi, yi):
        return ref.torch_quality_focal(xi, yi, beta, alpha, pos_weight)

    torch.testing.assert_close(loss, vmap(f)(x, y), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_cf, vmap(grad(f))(x, y), rtol=1e-10, atol=1e-13)


def _rand_logits(*shape, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=D) * scale


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_hard_grad_equals_autodiff(gamma, weighted):
    z = _rand_logits(16, 5)
    y = torch.arange(16) % 5
    coef = torch.linspace(0.5, 2.0, 16, dtype=D) if weighted else 1.0
    loss, g_cf = softmax_focal_hard(z, y, gamma, coef)
    onehot = torch.nn.functional.one_hot(y, 5).to(D)
    c = onehot * (coef.unsqueeze(1) if weighted else 1.0)

    def f(zz):
        return ref.torch_softmax_focal(zz, c, gamma).sum()

    torch.testing.assert_close(loss, ref.torch_softmax_focal(z, c, gamma), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_cf, grad(f)(z), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_dense_grad_equals_autodiff(gamma):
    z = _rand_logits(8, 4, 3)  # N-D: (N, C, d)
    g = torch.Generator().manual_seed(1)
    coef = torch.rand(8, 4, 3, generator=g, dtype=D)
    loss, g_cf = softmax_focal_dense(z, coef, gamma)

    def f(zz):
        return ref.torch_softmax_focal(zz, coef, gamma).sum()

    torch.testing.assert_close(loss, ref.torch_softmax_focal(z, coef, gamma), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_cf, grad(f)(z), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma", [0.1, 0.5, 2.0])
def test_softmax_saturated_rows_are_finite(gamma):
    """Spec 3: z = (60, 0, -3, 1), gamma = 0.5 gives NaN with the naive closed form."""
    for dtype in (torch.float32, torch.float64):
        z = torch.tensor([[60.0, 0.0, -3.0, 1.0], [1e4, -1e4, 0.0, 0.0], [-1e4, 1e4, 0.0, 0.0]], dtype=dtype)
        y = torch.tensor([0, 0, 0])
        loss, g = softmax_focal_hard(z, y, gamma, 1.0)
        assert torch.isfinite(loss).all() and torch.isfinite(g).all()
        coef = torch.full_like(z, 0.25)
        loss, g = softmax_focal_dense(z, coef, gamma)
        assert torch.isfinite(loss).all() and torch.isfinite(g).all()
    # The gradient of a confidently wrong row has CE's magnitude: sum |g| = 2 (1 - p_y).
    z = torch.tensor([[-30.0, 30.0]], dtype=D)
    _, g = softmax_focal_hard(z, torch.tensor([0]), gamma, 1.0)
    torch.testing.assert_close(g, torch.tensor([[-1.0, 1.0]], dtype=D), rtol=1e-12, atol=0)


def test_softmax_precise_log1mp_near_one():
    """log(1 - p_y) and -log p_y for p_y ~ 1 - 1e-26 agree with mpmath, not with 1 - p rounding."""
    z = torch.tensor([[60.0, 0.0]], dtype=D)
    loss, _ = softmax_focal_hard(z, torch.tensor([0]), 0.5, 1.0)
    want, _ = ref.mp_softmax_focal(z.numpy(), [0], 0.5)
    torch.testing.assert_close(loss, torch.from_numpy(want), rtol=1e-12, atol=0)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_softmax_hess_diag_equals_autodiff(gamma):
    from torch.func import hessian

    from focalkit.core import softmax_focal_hard_hess_diag

    z = _rand_logits(6, 4, scale=2.5)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    w = torch.linspace(0.5, 2.0, 6, dtype=D)
    got = softmax_focal_hard_hess_diag(z, y, gamma, w)
    for i in range(6):
        c = torch.nn.functional.one_hot(y[i], 4).to(D) * w[i]
        h = hessian(lambda row: ref.torch_softmax_focal(row.unsqueeze(0), c.unsqueeze(0), gamma).sum())(z[i])
        torch.testing.assert_close(got[i], torch.diagonal(h), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_hard_form_equals_soft_forms_on_hard_labels(gamma, alpha):
    from focalkit.core import sigmoid_focal_hard

    y = (torch.arange(X.numel()) % 3 == 0).to(D)
    a = sigmoid_focal_hard(X, y, gamma, alpha, hessian=True)
    b = sigmoid_focal_linear(X, y, gamma, alpha, hessian=True)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-15)
    for xt in (17.0, 40.0, 1e4):  # finite at saturation, both signs
        xs = torch.tensor([xt, -xt, xt, -xt], dtype=torch.float32)
        ys = torch.tensor([1.0, 1.0, 0.0, 0.0])
        assert all(torch.isfinite(v).all() for v in sigmoid_focal_hard(xs, ys, 0.5, alpha, hessian=True))
