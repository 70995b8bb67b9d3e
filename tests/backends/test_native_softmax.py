"""The native softmax kernel reproduces the eager backend; inplace_grad; the saved-buffer backward."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import focalkit as fk
from focalkit.backends import native

D = torch.float64
TOL = {D: dict(rtol=1e-11, atol=1e-14), torch.float32: dict(rtol=5e-5, atol=1e-6),
       torch.float16: dict(rtol=1e-2, atol=1e-3), torch.bfloat16: dict(rtol=3e-2, atol=1e-2)}


def _run(x, t, backend, go=None, **kw):
    xx = x.clone().requires_grad_()
    out = fk.softmax_focal_loss(xx, t, backend=backend, **kw)
    out.backward(torch.ones_like(out) if go is None else go)
    return out.detach(), xx.grad


def _assert_same(x, t, go=None, dtype=None, **kw):
    (o1, g1), (o2, g2) = (_run(x, t, b, go, **kw) for b in ("native", "eager"))
    tol = TOL[dtype or x.dtype]
    torch.testing.assert_close(o1, o2, **tol)
    torch.testing.assert_close(g1, g2, **tol)
    return o1, g1


def _data(shape, dtype, seed=0, ignore=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=D) * 5).to(dtype)
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    if ignore and t.numel() > 2:
        t.view(-1)[1] = -100
    q = torch.softmax(torch.randn(*shape, generator=g, dtype=D) * 2, 1).to(dtype)
    return x, t, q


@pytest.mark.parametrize(
    "dtype,shape,target,eps,weight,reduction",
    list(itertools.product([D, torch.float32], [(37, 5), (3, 7, 4, 5), (2, 3, 130)], ["index", "prob"],
                           [0.0, 0.1], [False, True], ["none", "mean", "sum"])),
)
def test_equals_eager(dtype, shape, target, eps, weight, reduction):
    x, t, q = _data(shape, dtype)
    w = torch.rand(shape[1], dtype=dtype) + 0.1 if weight else None
    go = torch.rand(shape[:1] + shape[2:], dtype=dtype) if reduction == "none" else None
    _assert_same(x, t if target == "index" else q, go, gamma=1.5, weight=w, label_smoothing=eps, reduction=reduction)


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.5, 2.0, 5.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (257, 3), (300, 1000), (64, 19, 65), (4, 2, 3, 3, 2)])
def test_gammas_and_sizes_including_threaded(gamma, shape):
    x, t, _ = _data(shape, torch.float32)
    _assert_same(x, t, gamma=gamma, normalizer=7.0)
    _assert_same(x, t, gamma=gamma, label_smoothing=0.2)


def test_gamma_zero_is_cross_entropy_on_the_native_kernel():
    x, t, _ = _data((50, 9, 3), D)
    w = torch.rand(9, dtype=D)
    for eps in (0.0, 0.3):
        xx = x.clone().requires_grad_()
        fk.softmax_focal_loss(xx, t, gamma=0.0, weight=w, label_smoothing=eps, backend="native").backward()
        xr = x.clone().requires_grad_()
        F.cross_entropy(xr, t, weight=w, label_smoothing=eps).backward()
        torch.testing.assert_close(xx.grad, xr.grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, D])
def test_extremes_half_and_nan(dtype):
    x = torch.tensor([[1e4, -1e4, 0.0], [88.0, -100.0, 87.0], [0.0, 0.0, 0.0], [30.0, -30.0, -30.0]], dtype=dtype)
    t = torch.tensor([1, 0, 2, 0])
    for gamma, eps in itertools.product((0.0, 0.1, 0.5, 2.0), (0.0, 0.1)):
        o, g = _assert_same(x, t, gamma=gamma, label_smoothing=eps, reduction="none")
        assert o.dtype == dtype and g.dtype == dtype
        assert torch.isfinite(o).all() and torch.isfinite(g).all()
    xn = x.clone()
    xn[1, 2] = float("nan")
    for eps in (0.0, 0.1):
        o, g = _run(xn, t, "native", label_smoothing=eps, reduction="none")
        assert torch.isnan(o[1]) and torch.isnan(g[1]).all()
        assert torch.isfinite(o[[0, 2, 3]]).all() and torch.isfinite(g[[0, 2, 3]]).all()
        assert torch.isnan(fk.softmax_focal_loss(xn, t, label_smoothing=eps, backend="native"))


def test_infinite_logits_match_eager():
    x = torch.tensor([[float("inf"), 0.0, 1.0], [float("-inf"), 0.0, 1.0], [float("-inf"), 2.0, 1.0]], dtype=D)
    t = torch.tensor([1, 0, 1])
    for eps in (0.0, 0.1):
        (o1, g1), (o2, g2) = (_run(x, t, b, label_smoothing=eps, reduction="none") for b in ("native", "eager"))
        torch.testing.assert_close(o1, o2, equal_nan=True)
        torch.testing.assert_close(g1, g2, equal_nan=True)


@pytest.mark.parametrize("shape", [(37, 5), (9, 64), (5, 100), (3, 7, 20)])
def test_dense_targets_ignore_positions_whatever_their_logits(shape):
    """Label smoothing (dense coefficients) on every path (2-D rows of at most 64 classes in blocks of
    rows, wider rows one at a time, (N, C, S) positions): an ignored position whose logits hold NaN,
    +inf or -inf has loss 0 and gradient exactly 0; every other position is eager's."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    where = [(1, 0), (3, 1), (4, None)] if len(shape) == 2 else [((0, 5), 2), ((1, 7), 0), ((2, 3), None)]
    for pos, k in where:
        n, rest = (pos, ()) if len(shape) == 2 else (pos[0], pos[1:])
        if k is None:
            x[(n, slice(None)) + rest] = float("-inf")
        else:
            x[(n, k) + rest] = float("nan") if k == 0 else float("inf")
        t[(n,) + rest] = -100
    for gamma in (0.0, 0.5, 2.0):
        o, gr = _assert_same(x, t, gamma=gamma, label_smoothing=0.1, reduction="none")
        for pos, _ in where:
            n, rest = (pos, ()) if len(shape) == 2 else (pos[0], pos[1:])
            assert o[(n,) + rest].item() == 0.0 and not gr[(n, slice(None)) + rest].any()
        assert torch.isfinite(o).all() and torch.isfinite(gr).all()


def test_half_inputs_in_several_blocks(monkeypatch):
    monkeypatch.setattr(native, "_HALF_BLOCK", 64)
    x, t, q = _data((40, 7, 3), torch.bfloat16)
    _assert_same(x, t, label_smoothing=0.1, reduction="none", go=torch.rand(40, 3, dtype=torch.bfloat16))
    _assert_same(x, q, reduction="sum")


def test_non_contiguous_ignored_all_ignored_empty_and_deterministic():
    x, t, q = _data((64, 300), torch.float32)
    _assert_same(x.t().contiguous().t(), t)                       # column-major storage
    _assert_same(x[:, ::2], t % 150)                              # strided view
    _assert_same(x.unsqueeze(2).expand(64, 300, 3), t.unsqueeze(1).expand(64, 3))  # zero stride
    o, g = _assert_same(x, torch.full_like(t, -100))             # every row ignored: 0, not NaN
    assert o.item() == 0.0 and not g.any()
    o, g = _assert_same(x, torch.full_like(t, 7), ignore_index=7, label_smoothing=0.2, reduction="none")
    assert not o.any() and not g.any()
    a = fk.softmax_focal_loss(x, t, backend="native")
    assert torch.equal(a, fk.softmax_focal_loss(x, t, backend="native"))
    for shape in ((0, 3), (2, 3, 0)):
        e = torch.zeros(*shape, requires_grad=True)
        out = fk.softmax_focal_loss(e, torch.zeros(shape[:1] + shape[2:], dtype=torch.long), backend="native")
        assert out.item() == 0.0
        out.backward()


def test_out_of_range_index_raises_from_the_kernel_too():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        native.softmax_focal(x, torch.tensor([0, 4, 1]), gamma=2.0, weight=None, ignore_index=-100,
                             label_smoothing=0.0, reduction="mean", normalizer=None)
    t = torch.zeros(2, 70, dtype=torch.long)  # the dense (N, C, S) loop, vectorised over positions
    t[1, 66] = -5
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        native.softmax_focal(torch.randn(2, 4, 70), t, gamma=2.0, weight=None, ignore_index=-100,
                             label_smoothing=0.0, reduction="mean", normalizer=None)


@pytest.mark.parametrize("dtype", [torch.float32, D])
def test_dense_class_indices_inplace_and_every_tile_size(dtype):
    """(N, C, S) class indices run vectorised across positions, the gradient written over the logits
    with inplace_grad: every partial tile, one class, ignored positions, weights."""
    for shape in ((2, 1, 3), (3, 5, 63), (2, 4, 64), (2, 3, 65), (1, 7, 129)):
        x, t, _ = _data(shape, dtype)
        w = torch.rand(shape[1], dtype=dtype) + 0.1
        _assert_same(x, t, gamma=0.5, weight=w, reduction="none", go=torch.rand(t.shape, dtype=dtype))
        want_loss, want_grad = _run(x, t, "eager", gamma=2.0, weight=w)
        z = x.clone().requires_grad_() * 1.0
        out = fk.softmax_focal_loss(z, t, gamma=2.0, weight=w, inplace_grad=True, backend="native")
        torch.testing.assert_close(out.detach(), want_loss, **TOL[dtype])
        torch.testing.assert_close(z.detach(), want_grad, **TOL[dtype])


def test_auto_selection_and_reasons(monkeypatch):
    x, t, _ = _data((6, 4), D)
    calls = []
    real = native.softmax_focal
    monkeypatch.setattr(native, "softmax_focal", lambda *a, **k: calls.append(1) or real(*a, **k))
    fk.softmax_focal_loss(x, t)
    assert calls == [1]
    fk.softmax_focal_loss(x, t, gamma=fk.flsd53_gamma)  # a schedule: eager
    assert calls == [1]
    with pytest.raises(ValueError, match="schedule"):
        fk.softmax_focal_loss(x, t, gamma=fk.flsd53_gamma, backend="native")
    monkeypatch.setattr(fk.backends, "FORCED", "eager")
    fk.softmax_focal_loss(x, t)
    assert calls == [1]
    assert fk.SoftmaxFocalLoss(backend="native").backend == "native"
    with pytest.raises(ValueError, match="`backend`"):
        fk.SoftmaxFocalLoss(backend="gpu")


@pytest.mark.parametrize("backend", ["native", "eager"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inplace_grad_writes_the_gradient_into_the_logits(backend, dtype):
    x, t, _ = _data((33, 6, 2), dtype)
    want_loss, want_grad = _run(x, t, "eager", label_smoothing=0.1)
    leaf = x.clone().requires_grad_()
    z = leaf * 1.0  # a non-leaf, as a model's output would be
    seen = []
    z.register_hook(lambda g: seen.append(g.data_ptr()))
    out = fk.softmax_focal_loss(z, t, label_smoothing=0.1, inplace_grad=True, backend=backend)
    torch.testing.assert_close(z.detach(), want_grad, **TOL[dtype])  # already there after forward
    torch.testing.assert_close(out.detach(), want_loss, **TOL[dtype])
    out.backward()
    torch.testing.assert_close(leaf.grad, want_grad, **TOL[dtype])
    assert seen == [z.data_ptr()]  # the gradient handed on is the logits' storage: no new buffer


def test_inplace_grad_refuses_to_feed_an_op_that_saved_the_logits():
    x, t, _ = _data((8, 5), torch.float32)
    leaf = x.clone().requires_grad_()
    z = leaf.exp()  # exp saves its output for backward
    out = fk.softmax_focal_loss(z, t, inplace_grad=True)
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.backward()
    with pytest.raises(TypeError, match="`inplace_grad`"):
        fk.softmax_focal_loss(x, t, inplace_grad=1)


@pytest.mark.parametrize("backend", ["native", "eager"])
def test_saved_buffer_returned_for_unit_grad_output_survives_retain_graph(backend):
    x, t, _ = _data((16, 5), D)
    _, want = _run(x, t, "eager")
    leaf = x.clone().requires_grad_()
    out = fk.softmax_focal_loss(leaf, t, backend=backend)
    out.backward(retain_graph=True)
    out.backward(retain_graph=True)
    torch.testing.assert_close(leaf.grad, 2 * want)
    (g,) = torch.autograd.grad(out, leaf, retain_graph=True)
    torch.testing.assert_close(g, want)
    (g,) = torch.autograd.grad(out, leaf, torch.tensor(3.0, dtype=D))
    torch.testing.assert_close(g, 3 * want)


def test_gradcheck_native_float64():
    x, t, q = _data((4, 5, 2), D)
    for tgt, eps in ((t, 0.0), (t, 0.2), (q, 0.1)):
        for red in ("mean", "none"):
            f = lambda z: fk.softmax_focal_loss(z, tgt, gamma=1.5, label_smoothing=eps, reduction=red,  # noqa: E731
                                                backend="native")
            assert torch.autograd.gradcheck(f, (x.clone().requires_grad_(),))
