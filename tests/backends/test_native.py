"""The native CPU kernel reproduces the eager backend; selection, fallback and errors."""

import itertools
import warnings

import pytest
import torch

import focalkit as fk
from focalkit import backends
from focalkit.backends import native

D = torch.float64


def test_native_kernel_is_built_here():
    # The package build compiles it wherever gcc is present (CI included): a silent fallback here
    # would leave every test below comparing eager with itself.
    assert native.available(), native.why_unavailable()


def _data(shape, dtype, soft, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=D) * 6).to(dtype)
    y = torch.rand(*shape, generator=g, dtype=D) if soft else (torch.rand(*shape, generator=g) < 0.3).to(D)
    return x, y.to(dtype)


def _both(x, y, go=None, **kw):
    out = []
    for b in ("native", "eager"):
        xx = x.clone().requires_grad_()
        o = fk.sigmoid_focal_loss(xx, y, backend=b, **kw)
        o.backward(torch.ones_like(o) if go is None else go)
        out.append((o.detach(), xx.grad))
    return out


TOL = {D: dict(rtol=1e-12, atol=1e-15), torch.float32: dict(rtol=2e-5, atol=1e-7),
       torch.float16: dict(rtol=1e-2, atol=1e-3), torch.bfloat16: dict(rtol=2e-2, atol=1e-2)}


@pytest.mark.parametrize(
    "dtype,form,alpha,pos_weight,weight,reduction",
    list(itertools.product([D, torch.float32], ["pt-hard", "linear-soft", "linear-hard"], [None, 0.25, "per-class"],
                           [False, True], [None, "elem", "bcast"], ["none", "mean", "sum"])),
)
def test_equals_eager(dtype, form, alpha, pos_weight, weight, reduction):
    x, y = _data((37, 5), dtype, soft=form.endswith("soft"))
    a = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=dtype) if alpha == "per-class" else alpha
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=dtype) if pos_weight else None
    w = {None: None, "elem": torch.rand(37, 5, dtype=dtype), "bcast": torch.rand(37, 1, dtype=dtype)}[weight]
    go = torch.rand(37, 5, dtype=dtype) if reduction == "none" else None
    (o1, g1), (o2, g2) = _both(x, y, go, alpha=a, gamma=1.5, pos_weight=pw, weight=w, reduction=reduction,
                               soft_target=form.split("-")[0])
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    torch.testing.assert_close(g1, g2, **TOL[dtype])


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("shape", [(1,), (3, 1), (257, 3), (300, 80), (1000, 70), (40, 3, 401)])
def test_gammas_and_sizes_including_threaded(gamma, shape):
    x, y = _data(shape, torch.float32, soft=False)
    (o1, g1), (o2, g2) = _both(x, y, gamma=gamma, alpha=torch.rand(shape[-1]), normalizer=7.0)
    torch.testing.assert_close(o1, o2, **TOL[torch.float32])
    torch.testing.assert_close(g1, g2, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, D])
def test_extremes_half_and_nan(dtype):
    x = torch.tensor([[1e4, -1e4, 17.0, -17.0, 37.0, -37.0, 88.0, -100.0, 0.0]], dtype=dtype).repeat(2, 1)
    y = torch.cat([torch.ones(1, 9), torch.zeros(1, 9)]).to(dtype)
    for gamma in (0.1, 0.5, 2.0):
        (o1, g1), (o2, g2) = _both(x, y, gamma=gamma, reduction="none")
        assert o1.dtype == dtype and g1.dtype == dtype
        assert torch.isfinite(o1).all() and torch.isfinite(g1).all()
        torch.testing.assert_close(o1, o2, **TOL[dtype])
        torch.testing.assert_close(g1, g2, **TOL[dtype])
    xn = x.clone()
    xn[0, 3] = float("nan")
    (o1, g1), _ = _both(xn, y, reduction="none")
    assert torch.isnan(o1[0, 3]) and torch.isnan(g1[0, 3]) and torch.isfinite(o1[1]).all()
    assert torch.isnan(fk.sigmoid_focal_loss(xn, y, backend="native"))


def test_non_contiguous_empty_and_deterministic():
    x, y = _data((200, 600), torch.float32, soft=True)
    xt, yt = x.t(), y.t()
    (o1, g1), (o2, g2) = _both(xt, yt, soft_target="linear")
    torch.testing.assert_close(o1, o2, **TOL[torch.float32])
    torch.testing.assert_close(g1, g2, **TOL[torch.float32])
    a = fk.sigmoid_focal_loss(x, y, soft_target="linear", backend="native")
    assert torch.equal(a, fk.sigmoid_focal_loss(x, y, soft_target="linear", backend="native"))
    e = torch.zeros(0, 3, requires_grad=True)
    out = fk.sigmoid_focal_loss(e, torch.zeros(0, 3), backend="native")
    assert out.item() == 0.0
    out.backward()


def test_auto_picks_native_on_cpu(monkeypatch):
    x, y = _data((4, 3), D, soft=False)
    calls = []
    real = native.sigmoid_focal
    monkeypatch.setattr(native, "sigmoid_focal", lambda *a, **k: calls.append(1) or real(*a, **k))
    fk.sigmoid_focal_loss(x, y)
    fk.sigmoid_focal_loss(x, torch.rand(4, 3, dtype=D))  # soft "pt" targets
    fk.sigmoid_focal_loss(x, torch.tensor([0, 3, 1, 2]))  # sparse
    assert calls == [1, 1, 1]
    fk.sigmoid_focal_loss(x, y, pos_weight=torch.ones(4, 3, dtype=D))  # elementwise pos_weight: eager
    assert calls == [1, 1, 1]
    monkeypatch.setattr(fk.backends, "FORCED", "eager")
    fk.sigmoid_focal_loss(x, y)
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [D, torch.float32])
def test_soft_pt_targets_mixed_with_hard_ones(gamma, dtype):
    x, y = _data((300, 257), dtype, soft=True)  # > 65536 elements: two threads
    y[:100] = y[:100].round()
    x[0, :9] = torch.tensor([1e4, -1e4, 17.0, -17.0, 37.0, -37.0, 88.0, -100.0, 0.0], dtype=dtype)
    for kw in (dict(), dict(alpha=0.25, pos_weight=torch.full((257,), 2.0, dtype=dtype)),
               dict(alpha=torch.rand(257, dtype=dtype), weight=torch.rand(300, 1, dtype=dtype), reduction="none")):
        go = torch.rand(300, 257, dtype=dtype) if kw.get("reduction") == "none" else None
        (o1, g1), (o2, g2) = _both(x, y, go, gamma=gamma, soft_target="pt", **kw)
        assert torch.isfinite(o1).all() and torch.isfinite(g1).all()
        torch.testing.assert_close(o1, o2, **TOL[dtype])
        torch.testing.assert_close(g1, g2, **TOL[dtype])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [D, torch.float32, torch.bfloat16])
def test_sparse_targets_equal_eager(gamma, dtype):
    x, _ = _data((2, 300, 81), dtype, soft=False)
    labels = torch.randint(0, 82, (2, 300))  # 81 = background
    for kw in (dict(), dict(alpha=0.25, normalizer="positives"),
               dict(alpha=torch.rand(81, dtype=dtype), pos_weight=torch.rand(81, dtype=dtype) + 0.5,
                    weight=torch.rand(2, 300, 1, dtype=dtype), reduction="none")):
        go = torch.rand(2, 300, 81, dtype=dtype) if kw.get("reduction") == "none" else None
        (o1, g1), (o2, g2) = _both(x, labels, go, gamma=gamma, **kw)
        torch.testing.assert_close(o1, o2, **TOL[dtype])
        torch.testing.assert_close(g1, g2, **TOL[dtype])


def test_explicit_backend_that_cannot_run_raises_with_reason():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="pos_weight"):
        fk.sigmoid_focal_loss(x, torch.rand(4, 3), pos_weight=torch.ones(4, 3), backend="native")
    with pytest.raises((RuntimeError, ValueError), match="backend='triton' cannot run"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fk.backends.triton, "INTERPRET", False)  # CPU tensors without the interpreter
            fk.sigmoid_focal_loss(x, torch.rand(4, 3).round(), backend="triton")
    with pytest.raises(ValueError, match="`backend`"):
        fk.sigmoid_focal_loss(x, torch.rand(4, 3).round(), backend="cuda")


def test_fallback_when_extension_absent_warns_once(monkeypatch):
    monkeypatch.setattr(native, "_LIB", None)
    monkeypatch.setattr(native, "_ERROR", "the compiled extension focalkit._focal_native is not installed")
    monkeypatch.setattr(backends, "_warned", False)
    x, y = _data((5, 4), D, soft=False)
    want = fk.sigmoid_focal_loss(x, y, backend="eager")
    with pytest.warns(RuntimeWarning, match="eager backend"):
        got = fk.sigmoid_focal_loss(x, y)
    torch.testing.assert_close(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fk.sigmoid_focal_loss(x, y)  # only once
    with pytest.raises(RuntimeError, match="not installed"):
        fk.sigmoid_focal_loss(x, y, backend="native")
    t = torch.tensor([0, 3, 1, 2, 2])
    torch.testing.assert_close(fk.softmax_focal_loss(x, t), fk.softmax_focal_loss(x, t, backend="eager"))
    with pytest.raises(RuntimeError, match="not installed"):
        fk.softmax_focal_loss(x, t, backend="native")


def test_module_backend_argument():
    x, y = _data((6, 4), D, soft=False)
    torch.testing.assert_close(fk.SigmoidFocalLoss(backend="native")(x, y), fk.SigmoidFocalLoss(backend="eager")(x, y))
    with pytest.raises(ValueError, match="`backend`"):
        fk.SigmoidFocalLoss(backend="gpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_in_several_blocks(monkeypatch, dtype):
    monkeypatch.setattr(native, "_HALF_BLOCK", 40)  # 8 rows of 5 per block
    x, y = _data((37, 5), dtype, soft=True)
    for kw in (dict(reduction="none"), dict(soft_target="linear", weight=torch.rand(37, 1, dtype=dtype)),
               dict(alpha=torch.rand(5, dtype=dtype), normalizer=3.0)):
        (o1, g1), (o2, g2) = _both(x, y, **kw)
        torch.testing.assert_close(o1, o2, **TOL[dtype])
        torch.testing.assert_close(g1, g2, **TOL[dtype])
    (o1, g1), (o2, g2) = _both(x, torch.randint(0, 6, (37,)), reduction="sum")  # sparse
    torch.testing.assert_close(o1, o2, **TOL[dtype])
    torch.testing.assert_close(g1, g2, **TOL[dtype])


@pytest.mark.parametrize("backend", ["native", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("targets", ["dense", "sparse"])
def test_inplace_grad_writes_the_gradient_into_the_logits(backend, dtype, targets):
    x, y = _data((33, 7), dtype, soft=True)
    t = y if targets == "dense" else torch.randint(0, 8, (33,))
    want_loss, want_grad = _both(x, t, alpha=0.25)[1]  # eager, out of place
    leaf = x.clone().requires_grad_()
    z = leaf * 1.0
    seen = []
    z.register_hook(lambda g: seen.append(g.data_ptr()))
    out = fk.sigmoid_focal_loss(z, t, alpha=0.25, inplace_grad=True, backend=backend)
    torch.testing.assert_close(z.detach(), want_grad, **TOL[dtype])
    torch.testing.assert_close(out.detach(), want_loss, **TOL[dtype])
    out.backward()
    torch.testing.assert_close(leaf.grad, want_grad, **TOL[dtype])
    assert seen == [z.data_ptr()]
    with pytest.raises(RuntimeError, match="inplace operation"):
        fk.sigmoid_focal_loss(leaf.exp(), t, inplace_grad=True, backend=backend).backward()
