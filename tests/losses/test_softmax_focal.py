import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference as ref
from conftest import TOL
from focalkit import SoftmaxFocalLoss, softmax_focal_loss

D = torch.float64
GAMMAS = [0.0, 0.5, 1.0, 2.0, 5.0]


def _data(n=6, c=4, extra=(), seed=0, ignore=False, soft=False, dtype=D):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, *extra, generator=g, dtype=D) * 3
    if soft:
        t = torch.softmax(torch.randn(n, c, *extra, generator=g, dtype=D) * 2, 1)
    else:
        t = torch.randint(0, c, (n, *extra), generator=g)
        if ignore:
            t[torch.rand(t.shape, generator=g) < 0.3] = -100
    return z.to(dtype), t


def _weight(c):
    return torch.linspace(0.5, 2.0, c, dtype=D)


# ---------- reference values (float64, 1e-12 relative) ----------

@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["index", "index-ignore", "index-nd", "probs", "probs-nd"])
def test_values_match_mpmath(gamma, weighted, label_smoothing, kind):
    extra = (3, 2) if kind.endswith("nd") else ()
    z, t = _data(extra=extra, ignore=kind == "index-ignore", soft=kind.startswith("probs"))
    w = _weight(4) if weighted else None
    got = softmax_focal_loss(z, t, gamma=gamma, weight=w, label_smoothing=label_smoothing, reduction="none")
    want, den = ref.mp_softmax_focal(z.numpy(), t.numpy(), gamma, None if w is None else w.numpy(),
                                     label_smoothing=label_smoothing)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-300)
    mean = softmax_focal_loss(z, t, gamma=gamma, weight=w, label_smoothing=label_smoothing)
    np.testing.assert_allclose(mean.item(), want.sum() / den, rtol=1e-12)


# ---------- gamma = 0 contract: exactly F.cross_entropy, every combination ----------

@pytest.mark.parametrize(
    "reduction,weighted,label_smoothing,kind",
    list(itertools.product(["none", "mean", "sum"], [False, True], [0.0, 0.2],
                           ["index", "index-ignore", "index-nd", "index-nd-ignore", "probs", "probs-nd"])),
)
def test_gamma0_equals_cross_entropy(reduction, weighted, label_smoothing, kind):
    extra = (3, 5) if "nd" in kind else ()
    z, t = _data(n=7, c=5, extra=extra, ignore="ignore" in kind, soft=kind.startswith("probs"))
    w = _weight(5) if weighted else None
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = softmax_focal_loss(z1, t, gamma=0.0, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    want = F.cross_entropy(z2, t, weight=w, label_smoothing=label_smoothing, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    go = torch.randn_like(got)
    got.backward(go)
    want.backward(go)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("ignore_index", [-100, 2, -1])
def test_gamma0_custom_ignore_index(ignore_index):
    z, t = _data(n=9, c=4)
    t[::3] = ignore_index
    torch.testing.assert_close(
        softmax_focal_loss(z, t, gamma=0.0, ignore_index=ignore_index, weight=_weight(4)),
        F.cross_entropy(z, t, ignore_index=ignore_index, weight=_weight(4)), rtol=1e-13, atol=0)


def test_unbatched_input_like_cross_entropy():
    z = torch.randn(5, dtype=D)
    t = torch.tensor(3)
    torch.testing.assert_close(softmax_focal_loss(z, t, gamma=0.0), F.cross_entropy(z, t))
    torch.testing.assert_close(softmax_focal_loss(z, t, gamma=0.0, reduction="none"),
                               F.cross_entropy(z, t, reduction="none"))


# ---------- ignore / empty ----------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_all_ignored_gives_zero_with_graph(reduction):
    z = torch.randn(4, 3, dtype=D, requires_grad=True)
    t = torch.full((4,), -100)
    out = softmax_focal_loss(z, t, reduction=reduction, weight=torch.ones(3, dtype=D))
    assert out.item() == 0.0 and out.grad_fn is not None
    out.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))
    assert torch.isnan(F.cross_entropy(z, t))  # the documented difference


def test_empty_input():
    z = torch.zeros(0, 3, requires_grad=True)
    out = softmax_focal_loss(z, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()
    assert softmax_focal_loss(z, torch.zeros(0, dtype=torch.long), reduction="none").shape == (0,)


def test_ignored_rows_are_exactly_zero_even_with_nan_logits():
    z = torch.randn(3, 4, dtype=D)
    z[1] = float("nan")
    z.requires_grad_()
    t = torch.tensor([0, -100, 2])
    out = softmax_focal_loss(z, t, reduction="none")
    assert out[1].item() == 0.0 and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.equal(z.grad[1], torch.zeros(4, dtype=D))


@pytest.mark.parametrize("backend", ["eager", "native"])
@pytest.mark.parametrize("dtype", [D, torch.float32])
def test_ignored_positions_of_nd_logits_are_exactly_zero_even_with_nan_logits(backend, dtype):
    """(N, C, H, W) logits and 2-D rows of few classes (both vectorised across positions in the C
    kernel): an ignored position's loss and gradient are exactly 0 whatever its logits hold."""
    g = torch.Generator().manual_seed(0)
    for shape, t in (((2, 5, 3, 70), torch.randint(0, 5, (2, 3, 70), generator=g)),
                     ((130, 7), torch.randint(0, 7, (130,), generator=g))):
        z = torch.randn(shape, generator=g, dtype=dtype)
        ignored = torch.rand(t.shape, generator=g) < 0.3
        t = torch.where(ignored, -100, t)
        z.movedim(1, -1)[ignored] = float("nan")
        z.requires_grad_()
        out = softmax_focal_loss(z, t, reduction="none", backend=backend)
        assert torch.equal(out[ignored], torch.zeros_like(out[ignored])) and torch.isfinite(out).all()
        out.sum().backward()
        assert torch.equal(z.grad.movedim(1, -1)[ignored], torch.zeros_like(z.grad.movedim(1, -1)[ignored]))
        assert torch.isfinite(z.grad).all()


def test_nan_propagates():
    z = torch.randn(3, 4)
    z[1, 2] = float("nan")
    z.requires_grad_()
    t = torch.tensor([0, 1, 2])
    out = softmax_focal_loss(z, t, reduction="none")
    assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    out.sum().backward()
    assert torch.isnan(z.grad[1]).all() and torch.isfinite(z.grad[[0, 2]]).all()


# ---------- gradients ----------

@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("kind", ["index-ignore", "index-nd", "probs"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradcheck(gamma, label_smoothing, kind, reduction):
    extra = (2,) if "nd" in kind else ()
    z, t = _data(n=4, c=3, extra=extra, ignore="ignore" in kind, soft=kind == "probs")
    w = _weight(3)

    def f(inp):
        return softmax_focal_loss(inp, t, gamma=gamma, weight=w, label_smoothing=label_smoothing,
                                  reduction=reduction)

    assert torch.autograd.gradcheck(f, (z.clone().requires_grad_(),))


@pytest.mark.parametrize("gamma", GAMMAS)
def test_grad_output_not_one_matches_autodiff_of_reference(gamma):
    z, t = _data(n=5, c=4, extra=(3,))
    go = torch.randn(5, 3, dtype=D)
    w = _weight(4)
    coef = F.one_hot(t, 4).movedim(-1, 1).to(D) * w.view(1, 4, 1)
    zr = z.clone().requires_grad_()
    (ref.torch_softmax_focal(zr, coef, gamma) * go).sum().backward()
    zg = z.clone().requires_grad_()
    softmax_focal_loss(zg, t, gamma=gamma, weight=w, reduction="none").backward(go)
    torch.testing.assert_close(zg.grad, zr.grad, rtol=1e-10, atol=1e-13)


def test_normalizer():
    z, t = _data()
    got = softmax_focal_loss(z, t, normalizer=torch.tensor(2.5, dtype=D))
    torch.testing.assert_close(got, softmax_focal_loss(z, t, reduction="sum") / 2.5)


# ---------- stability ----------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_finite_at_extreme_logits(dtype, gamma, label_smoothing):
    rows = [[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [17.0, -17.0, 0.0], [37.0, 0.0, -37.0], [100.0, 0.0, 0.0],
            [0.0, 100.0, 0.0], [60.0, 0.0, -3.0]]
    z = torch.tensor(rows, dtype=dtype, requires_grad=True)
    t = torch.zeros(len(rows), dtype=torch.long)
    out = softmax_focal_loss(z, t, gamma=gamma, label_smoothing=label_smoothing, reduction="none")
    out.sum().backward()
    assert out.dtype == dtype and z.grad.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    if label_smoothing == 0:
        # Confidently wrong rows keep CE's gradient: -1 on the target, +1 on the winner.
        torch.testing.assert_close(z.grad[1].float(), torch.tensor([-1.0, 1.0, 0.0]), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_matches_float64(dtype):
    z, t = _data(n=8, c=5)
    zl = z.to(dtype)
    got = softmax_focal_loss(zl, t, gamma=0.5, reduction="none")
    want = softmax_focal_loss(zl.to(D), t, gamma=0.5, reduction="none")
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.to(D), want, rtol=rtol, atol=atol)


# ---------- shapes and layouts ----------

def test_module_equals_function():
    z, t = _data(extra=(2,), ignore=True)
    w = _weight(4)
    m = SoftmaxFocalLoss(gamma=1.5, weight=w, label_smoothing=0.05, reduction="sum")
    torch.testing.assert_close(m(z, t), softmax_focal_loss(z, t, gamma=1.5, weight=w, label_smoothing=0.05,
                                                           reduction="sum"))
    torch.testing.assert_close(m(z, t, normalizer=2), softmax_focal_loss(
        z, t, gamma=1.5, weight=w, label_smoothing=0.05, normalizer=2))
    assert "weight" in dict(m.named_buffers())


def test_non_contiguous_and_channels_last():
    z, t = _data(n=3, c=4, extra=(5, 6))
    zc = z.contiguous(memory_format=torch.channels_last).requires_grad_()
    zn = z.clone().requires_grad_()
    a = softmax_focal_loss(zc, t, reduction="none")
    b = softmax_focal_loss(zn, t, reduction="none")
    go = torch.randn_like(a)
    a.backward(go)
    b.backward(go)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(zc.grad, zn.grad)
    zt = torch.randn(4, 7, dtype=D).t()  # (7, 4), non-contiguous
    tt = torch.arange(7) % 4
    torch.testing.assert_close(softmax_focal_loss(zt, tt), softmax_focal_loss(zt.contiguous(), tt))


@pytest.mark.parametrize("n,c", [(1, 1), (1, 2), (13, 7), (41, 101)])
def test_odd_sizes(n, c):
    z, t = _data(n=n, c=c)
    torch.testing.assert_close(softmax_focal_loss(z, t, gamma=0.0), F.cross_entropy(z, t))
    out = softmax_focal_loss(z, t, gamma=2.0, reduction="none")
    want, _ = ref.mp_softmax_focal(z.numpy()[:5], t.numpy()[:5], 2.0)
    np.testing.assert_allclose(out.numpy()[:5], want, rtol=1e-12, atol=1e-300)


def test_int32_targets_accepted():
    z, t = _data()
    torch.testing.assert_close(softmax_focal_loss(z, t.int()), softmax_focal_loss(z, t))


@pytest.mark.parametrize("backend", ["eager", "native", "auto"])
@pytest.mark.parametrize("probs", [False, True])
def test_zero_classes_are_refused_clearly_on_every_backend(backend, probs):
    """(N, 0) logits: the eager reference raised an obscure IndexError where the native kernel ran
    (issue 19, item 20); now every backend refuses with the same ValueError."""
    x = torch.zeros(4, 0, requires_grad=True)
    t = torch.zeros(4, 0) if probs else torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="at least one class"):
        softmax_focal_loss(x, t, backend=backend)


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_alpha_as_list_tuple_or_tensor_is_the_same(default):
    """A list of plain floats takes one conversion (not a check per class); any other sequence the check
    per value. The same values, gradients and errors either way, in the default dtype's precision."""
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    values = [0.1, 0.25, 1.0 / 3.0, 2.0]
    prev = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        out = []
        for a in (values, tuple(values), [v for v in values[:3]] + [2], torch.tensor(values, dtype=default)):
            z = x.clone().requires_grad_()
            loss = softmax_focal_loss(z, t, alpha=a)
            loss.backward()
            out.append((loss.detach(), z.grad))
        for loss, grad in out[1:]:
            torch.testing.assert_close(loss, out[0][0], rtol=0, atol=0)
            torch.testing.assert_close(grad, out[0][1], rtol=0, atol=0)
        for bad, exc, what in (([0.1, float("nan"), 0.2, 0.3], ValueError, "finite"),
                               ([0.1, -1.0, 0.2, 0.3], ValueError, ">= 0"),
                               ([0.1, float("inf"), 0.2, 0.3], ValueError, "finite"),
                               ([0.1, True, 0.2, 0.3], TypeError, "real number"),
                               ([0.1, "a", 0.2, 0.3], TypeError, "real number")):
            with pytest.raises(exc, match=what):
                softmax_focal_loss(x, t, alpha=bad)
    finally:
        torch.set_default_dtype(prev)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gamma_schedule_returning_a_number_is_that_constant_gamma(dtype):
    """A schedule that returns a host number is the constant gamma, in the logits' dtype (float64 keeps
    every digit: 1.1 is not rounded through float32)."""
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(6, 4, generator=g, dtype=dtype), torch.randint(0, 4, (6,), generator=g)
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    got = softmax_focal_loss(a, y, gamma=lambda p: 1.1, backend="eager")
    want = softmax_focal_loss(b, y, gamma=1.1, backend="eager")
    got.backward(), want.backward()
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
