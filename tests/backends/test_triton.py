"""The Triton kernels reproduce the eager backend. On a machine without a GPU they run in Triton's
interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by the root conftest); with a GPU and
``TRITON_INTERPRET=0`` the same tests run on CUDA tensors."""

import itertools

import pytest
import torch

import focalkit as fk
from focalkit.backends import triton as tb
from device import DEVICE as DEV, cpu_reference, to_cpu

pytest.importorskip("triton")  # a test extra on Linux x86-64; elsewhere the backend is simply absent

D = torch.float64
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-6), torch.float16: dict(rtol=1e-2, atol=1e-3),
       torch.bfloat16: dict(rtol=3e-2, atol=1e-2)}


def _on(value):
    """Every tensor (keyword arguments included) on the test device."""
    if isinstance(value, torch.Tensor):
        return value.to(DEV)
    if isinstance(value, dict):
        return {k: _on(v) for k, v in value.items()}
    return value


def _run(fn, x, t, backend, go=None, **kw):
    xx = x.clone().requires_grad_()
    out = fn(xx, t, backend=backend, **kw)
    out.backward(torch.ones_like(out) if go is None else go)
    return out.detach(), xx.grad


def _same(fn, x, t, go=None, **kw):
    """Triton on the test device against eager in float64 on the CPU (from CPU copies of every tensor
    argument), compared in the input dtype."""
    o1, g1 = _run(fn, _on(x), _on(t), "triton", _on(go), **_on(kw))
    o2, g2 = cpu_reference(lambda x_, t_, go_, **k: _run(fn, x_, t_, "eager", go_, **k), x, t, go, **kw)
    reduced = kw.get("reduction", "mean") != "none" or kw.get("normalizer") is not None
    half = x.dtype in (torch.float16, torch.bfloat16)  # docs/api.md, "Mixed precision": reduced -> float32
    assert o1.dtype == (torch.float32 if reduced and half else x.dtype) and g1.dtype == x.dtype
    torch.testing.assert_close(o1.cpu(), o2.to(x.dtype).to(o1.dtype), **TOL[x.dtype])
    torch.testing.assert_close(g1.cpu(), g2.to(x.dtype), **TOL[x.dtype])
    return o1.cpu(), g1.cpu()


def _sig_data(shape, dtype, soft, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=D) * 5).to(dtype)
    y = torch.rand(*shape, generator=g, dtype=D) if soft else (torch.rand(*shape, generator=g) < 0.3).to(D)
    return x, y.to(dtype)


@pytest.mark.parametrize(
    "dtype,form,alpha,pos_weight,weight,reduction",
    list(itertools.product([torch.float32], ["pt", "linear", "signed", "bce", "quality"], [None, 0.25, "per-class"], [False, True],
                           [None, "elem"], ["none", "mean", "sum"]))
    + [(dt, "pt", 0.25, False, None, r) for dt in (torch.float16, torch.bfloat16) for r in ("none", "mean")],
)
def test_sigmoid_equals_eager(dtype, form, alpha, pos_weight, weight, reduction):
    x, y = _sig_data((37, 5), dtype, soft=True)
    y[:10] = y[:10].round()  # hard and soft targets together
    a = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=dtype) if alpha == "per-class" else alpha
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=dtype) if pos_weight else None
    w = torch.rand(37, 5, dtype=dtype) if weight else None
    go = torch.rand(37, 5, dtype=dtype) if reduction == "none" else None
    kw = dict(alpha=a, gamma=1.5, pos_weight=pw, weight=w, reduction=reduction, soft_target=form)
    _same(fk.sigmoid_focal_loss, x, y, go, **{k: (v.to(DEV) if isinstance(v, torch.Tensor) else v)
                                              for k, v in kw.items()})


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_extremes_odd_sizes_nan_and_normalizer(gamma):
    x = torch.tensor([[1e4, -1e4, 17.0, -17.0, 37.0, -37.0, 88.0, -100.0, 0.0]]).repeat(3, 1)
    y = torch.tensor([1.0, 0.0, 0.3]).unsqueeze(1).expand(3, 9).contiguous()
    o, g = _same(fk.sigmoid_focal_loss, x, y, gamma=gamma, reduction="none")
    assert torch.isfinite(o).all() and torch.isfinite(g).all()
    _same(fk.sigmoid_focal_loss, *_sig_data((1031,), torch.float32, soft=False), gamma=gamma, normalizer=7.0)
    xn = x.clone()
    xn[0, 3] = float("nan")
    o, g = _run(fk.sigmoid_focal_loss, xn.to(DEV), y.to(DEV), "triton", reduction="none")
    assert torch.isnan(o[0, 3]) and torch.isnan(g[0, 3]) and torch.isfinite(o[1]).all()
    x2, y2 = _sig_data((40, 12), torch.float32, soft=True)
    _same(fk.sigmoid_focal_loss, x2.t(), y2.t(), gamma=gamma)  # non-contiguous


def _smx_data(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*shape, generator=g, dtype=D) * 5).to(dtype)
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    if t.numel() > 2:
        t.view(-1)[1] = -100
    q = torch.softmax(torch.randn(*shape, generator=g, dtype=D) * 2, 1).to(dtype)
    return x, t, q


@pytest.mark.parametrize(
    "shape,target,eps,weight,reduction",
    list(itertools.product([(37, 5), (3, 7, 4, 5), (4, 300)], ["index", "prob"], [0.0, 0.1], [False, True],
                           ["none", "mean", "sum"])),
)
def test_softmax_equals_eager(shape, target, eps, weight, reduction):
    x, t, q = _smx_data(shape, torch.float32)
    w = torch.rand(shape[1]) + 0.1 if weight else None
    go = torch.rand(shape[:1] + shape[2:]) if reduction == "none" else None
    _same(fk.softmax_focal_loss, x, t if target == "index" else q, go, gamma=1.5,
          weight=None if w is None else w.to(DEV), label_smoothing=eps, reduction=reduction)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_half_extremes_nan_ignored(dtype, gamma):
    x = torch.tensor([[1e4, -1e4, 0.0], [88.0, -100.0, 87.0], [0.0, 0.0, 0.0], [30.0, -30.0, -30.0]], dtype=dtype)
    t = torch.tensor([1, 0, 2, 0])
    for eps in (0.0, 0.1):
        o, g = _same(fk.softmax_focal_loss, x, t, gamma=gamma, label_smoothing=eps, reduction="none")
        assert torch.isfinite(o).all() and torch.isfinite(g).all()
    xn = x.clone()
    xn[1, 2] = float("nan")
    o, g = _run(fk.softmax_focal_loss, xn.to(DEV), t.to(DEV), "triton", reduction="none")
    assert torch.isnan(o[1]) and torch.isnan(g[1]).all() and torch.isfinite(o[[0, 2, 3]]).all()
    o, g = _run(fk.softmax_focal_loss, xn.to(DEV), torch.tensor([1, -100, 2, 0], device=DEV), "triton")
    assert torch.isfinite(o) and torch.isfinite(g).all() and not g[1].any()  # ignored NaN row: exactly 0
    o, g = _same(fk.softmax_focal_loss, x, torch.full_like(t, -100))  # all ignored: 0, not NaN
    assert o.item() == 0.0 and not g.any()


def test_softmax_non_contiguous_and_grad_output():
    x, t, q = _smx_data((6, 300, 3), torch.float32)
    _same(fk.softmax_focal_loss, x.transpose(1, 2).contiguous().transpose(1, 2), t)  # channels-last storage
    _same(fk.softmax_focal_loss, x[:, ::3], t % 100, reduction="none", go=torch.rand(6, 3))  # strided view
    _same(fk.softmax_focal_loss, x, q, normalizer=torch.tensor(5.0).to(DEV))


def test_softmax_many_classes_loop_and_inplace_grad():
    x, t, _ = _smx_data((3, 700, 2), torch.float32)  # more classes than one block: the chunk loops
    _same(fk.softmax_focal_loss, x, t, label_smoothing=0.05)
    _, want = _run(fk.softmax_focal_loss, x.to(D), t, "eager")
    z = x.to(DEV).requires_grad_()
    zz = z * 1.0
    out = fk.softmax_focal_loss(zz, t.to(DEV), inplace_grad=True, backend="triton")
    torch.testing.assert_close(zz.detach().cpu(), want.float(), **TOL[torch.float32])
    out.backward()
    torch.testing.assert_close(z.grad.cpu(), want.float(), **TOL[torch.float32])


@pytest.mark.parametrize("shape", [(40, 3), (40, 19), (6, 5000), (2, 300, 3, 2)])
def test_softmax_chunked_gradients_keep_float32_precision_at_large_logits(shape):
    """The loop over few classes and the chunked kernels keep (max, c_y K_y / s) for the backward, not the
    log-sum-exp, whose rounding (an ulp of the largest logit: 2e-6 relative at 30) would reach every
    gradient: each within 8 float32 ulps of float64 eager (CI's hypothesis run found [0, 30, 32])."""
    assert not tb.softmax_tile(shape[1], len(shape) > 2).one_tile
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(*shape, generator=g) * 3 + 30).float()
    t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    for gamma in (0.0, 2.0):
        z = x.clone().to(DEV).requires_grad_()
        fk.softmax_focal_loss(z, t.to(DEV), gamma=gamma, reduction="sum", backend="triton").backward()
        z64 = x.double().requires_grad_()
        fk.softmax_focal_loss(z64, t, gamma=gamma, reduction="sum", backend="eager").backward()
        err = (z.grad.cpu().double() - z64.grad).abs()
        assert (err <= 8 * torch.finfo(torch.float32).eps * z64.grad.abs() + 1e-30).all(), err.max()


@pytest.mark.parametrize("n_cls,loop", [(2, True), (16, False), (19, True), (31, True), (32, False),
                                         (33, False)])
def test_softmax_rows_of_few_classes(n_cls, loop):
    """2-D rows of at most 32 classes, a count not a multiple of 16, take the loop over classes (one row
    per thread, statistics recomputed in the backward, none kept); the others the tiles. Every target
    mode, weights, grad_output, half precision and the in-place gradient give the eager values."""
    x, t, q = _smx_data((45, n_cls), torch.float32, seed=n_cls)
    assert (tb.softmax_tile(n_cls, False) == tb.ROW_LOOP) is loop
    assert tb.softmax_tile(n_cls, True).spatial  # N-D positions never take the row loop
    w = torch.rand(n_cls, generator=torch.Generator().manual_seed(1)) + 0.1
    go = torch.rand(45)
    for target, eps in (("index", 0.0), ("index", 0.1), ("prob", 0.0)):
        tt = t if target == "index" else q
        _same(fk.softmax_focal_loss, x, tt, go, gamma=2.0, weight=w.to(DEV), label_smoothing=eps, reduction="none")
        _same(fk.softmax_focal_loss, x, tt, gamma=0.5, label_smoothing=eps)
    for dtype in (torch.float16, torch.bfloat16):
        _same(fk.softmax_focal_loss, x.to(dtype), t, gamma=2.0, label_smoothing=0.1)
    bad = t.clone()
    bad[3] = n_cls  # out of range (the kernels, past the host's check on CPU tensors): that row NaN
    for eps in (0.0, 0.1):
        a = tb._softmax_prepare(x.to(DEV), bad.to(DEV), None, 2.0, -100, eps)
        o, inv, kept = tb._softmax_forward(a, "none", None)
        g = tb._softmax_backward(a, inv, kept, None).cpu()
        assert torch.isnan(o[3]) and torch.isnan(g[3]).all() and torch.isfinite(g[4:]).all()
        kept = tb._softmax_forward(a, "mean", None)[2]
        assert (kept.numel() == 1) is (loop or a.tile.one_tile)  # the loop keeps no statistics
    _, want = _run(fk.softmax_focal_loss, x.to(D), t, "eager")
    z = x.to(DEV).requires_grad_()
    zz = z * 1.0
    fk.softmax_focal_loss(zz, t.to(DEV), inplace_grad=True, backend="triton").backward()
    torch.testing.assert_close(z.grad.cpu(), want.float(), **TOL[torch.float32])


def test_sigmoid_inplace_grad():
    x, y = _sig_data((40, 6), torch.float32, soft=True)
    _, want = _run(fk.sigmoid_focal_loss, x.to(D), y.to(D), "eager")
    z = x.to(DEV).requires_grad_()
    zz = z * 1.0
    out = fk.sigmoid_focal_loss(zz, y.to(DEV), inplace_grad=True, backend="triton")
    torch.testing.assert_close(zz.detach().cpu(), want.float(), **TOL[torch.float32])
    out.backward()
    torch.testing.assert_close(z.grad.cpu(), want.float(), **TOL[torch.float32])


def test_selection_and_reasons(monkeypatch):
    x, t, _ = _smx_data((6, 4), torch.float32)
    with pytest.raises(ValueError, match="float64 runs on eager"):
        fk.softmax_focal_loss(x.to(D).to(DEV), t.to(DEV), backend="triton")
    with pytest.raises(ValueError, match="schedule"):
        fk.softmax_focal_loss(x.to(DEV), t.to(DEV), gamma=fk.flsd53_gamma, backend="triton")
    with pytest.raises(ValueError, match="pos_weight"):
        fk.sigmoid_focal_loss(x.to(DEV), t.clamp(min=0).to(DEV), pos_weight=torch.ones(6, 4, device=DEV),
                              backend="triton")
    calls = []
    real = tb.softmax_focal
    monkeypatch.setattr(tb, "softmax_focal", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(fk.backends, "FORCED", "triton")
    fk.softmax_focal_loss(x.to(DEV), t.to(DEV))
    assert calls == [1]
    monkeypatch.setattr(tb, "AVAILABLE", False)
    with pytest.raises(RuntimeError, match="triton package is not installed"):
        fk.softmax_focal_loss(x, t)


@pytest.mark.parametrize("form", ["pt", "linear", "quality"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(37, 5), (4, 6, 9)])
def test_sparse_class_indices_equal_eager(form, dtype, shape):
    """Class indices (C = background) in the Triton kernels: no one-hot tensor, the eager values."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(shape, generator=g, dtype=D) * 4).to(dtype)
    lab = torch.randint(0, shape[-1] + 1, shape[:-1], generator=g)
    go = torch.rand(shape, generator=g).to(dtype)
    for kw in (dict(alpha=0.25), dict(alpha=torch.rand(shape[-1], generator=g).to(dtype), reduction="none"),
               dict(pos_weight=torch.rand(shape[-1], generator=g).add(0.5).to(dtype), normalizer="positives",
                    reduction="sum")):
        _same(fk.sigmoid_focal_loss, x, lab, go if kw.get("reduction") == "none" else None, soft_target=form,
              gamma=1.5, **kw)


_EMPTY = {  # (loss, logits, targets) with no element: no rows, no classes, no positions
    "sigmoid": (fk.sigmoid_focal_loss, (0, 5), lambda s: torch.zeros(s)),
    "sigmoid, no class": (fk.sigmoid_focal_loss, (3, 0), lambda s: torch.zeros(s)),
    "sigmoid, class indices, no row": (fk.sigmoid_focal_loss, (0, 5), lambda s: torch.zeros(s[:-1], dtype=torch.long)),
    "sigmoid, class indices, no class": (fk.sigmoid_focal_loss, (3, 0), lambda s: torch.zeros(s[:-1], dtype=torch.long)),
    "softmax": (fk.softmax_focal_loss, (0, 5), lambda s: torch.zeros(s[:1], dtype=torch.long)),
    "softmax, no position": (fk.softmax_focal_loss, (2, 5, 0, 3), lambda s: torch.zeros((2, 0, 3), dtype=torch.long)),
    "varifocal": (fk.varifocal_loss, (0, 5), lambda s: torch.zeros(s)),
    "dfl": (fk.distribution_focal_loss, (0, 16), lambda s: torch.zeros(s[:1])),
}


@pytest.mark.parametrize("case", sorted(_EMPTY))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("seed", ["sum", "ones"])
def test_empty_inputs_on_every_kernel(case, reduction, seed):
    """An empty batch gives eager's loss (0, or an empty tensor) and an empty gradient. ``loss.sum().backward()``
    hands ``reduction="none"`` a ``grad_output`` expanded from one value, with no memory: the elementwise
    backward read it before its loop, a segfault in the interpreter and a fault on a GPU."""
    fn, shape, targets = _EMPTY[case]
    out = {}
    for backend in ("triton", "eager"):
        dev = DEV if backend == "triton" else "cpu"
        x = torch.randn(shape, device=dev, requires_grad=True)
        loss = fn(x, targets(shape).to(dev), reduction=reduction, backend=backend)
        (loss.sum() if seed == "sum" else loss).backward(None if seed == "sum" else torch.ones_like(loss))
        out[backend] = (loss.detach().cpu(), x.grad.cpu())
    (o1, g1), (o2, g2) = out["triton"], out["eager"]
    assert o1.shape == o2.shape and g1.shape == g2.shape == shape
    torch.testing.assert_close(o1, o2)


@pytest.mark.parametrize("shape", [(3, 2, 37), (2, 19, 5, 7), (2, 31, 600), (1, 32, 3, 3)])
def test_softmax_positions_of_few_classes_in_the_spatial_loop(monkeypatch, shape):
    """``SPATIAL_LOOP`` (off by default; bench_gpu.py times it against the tiles on a GPU): N-D positions
    of at most ``SPATIAL_LOOP_MAX_C`` classes, one per thread with a loop over the classes. Every target
    mode, weights, grad_output, ignored and bad indices, half precision, the in-place gradient and the
    last program's finish give the eager values."""
    monkeypatch.setattr(tb, "SPATIAL_LOOP_MAX_C", 32)
    n_cls = shape[1]
    assert tb.softmax_tile(n_cls, True) == tb.SPATIAL_LOOP and tb.softmax_tile(33, True) != tb.SPATIAL_LOOP
    x, t, q = _smx_data(shape, torch.float32, seed=n_cls)
    t.view(-1)[::7] = -100
    w = torch.rand(n_cls, generator=torch.Generator().manual_seed(1)) + 0.1
    go = torch.rand(t.shape)
    for target, eps in (("index", 0.0), ("index", 0.1), ("prob", 0.0)):
        tt = t if target == "index" else q
        _same(fk.softmax_focal_loss, x, tt, go, gamma=2.0, weight=w.to(DEV), label_smoothing=eps, reduction="none")
        _same(fk.softmax_focal_loss, x, tt, gamma=0.5, label_smoothing=eps)
    monkeypatch.setattr(tb, "LAST_PROGRAM_FINISH", True)
    _same(fk.softmax_focal_loss, x, t, gamma=2.0, weight=w.to(DEV))
    for dtype in (torch.float16, torch.bfloat16):
        _same(fk.softmax_focal_loss, x.to(dtype), t, gamma=2.0, label_smoothing=0.1)
    bad = t.clone()
    bad.view(-1)[3] = n_cls  # out of range (the kernels, past the host's check on CPU tensors): that position NaN
    a = tb._softmax_prepare(x.to(DEV), bad.to(DEV), None, 2.0, -100, 0.0)
    assert a.tile == tb.SPATIAL_LOOP
    o, inv, kept = tb._softmax_forward(a, "none", None)
    g = tb._softmax_backward(a, inv, kept, None).cpu()
    assert torch.isnan(o.view(-1)[3]) and torch.isnan(g.movedim(1, -1).reshape(-1, n_cls)[3]).all()
    assert kept.numel() == 1  # the loop keeps no statistics: the backward recomputes them
    _, want = _run(fk.softmax_focal_loss, x.to(D), t, "eager")
    z = x.to(DEV).requires_grad_()
    zz = z * 1.0
    fk.softmax_focal_loss(zz, t.to(DEV), inplace_grad=True, backend="triton").backward()
    torch.testing.assert_close(z.grad.cpu(), want.float(), **TOL[torch.float32])


def _finishing_case(case: str, rows: int, seed: int) -> tuple:
    """(loss, logits, targets, keyword arguments) of a reduction test: ``rows`` rows of 7 classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 7, generator=g) * 3
    if case.startswith("sigmoid"):
        y = (torch.rand(rows, 7, generator=g) < 0.3).float()
        kw = {"sigmoid mean": {}, "sigmoid sum": dict(reduction="sum"), "sigmoid normalizer": dict(normalizer=3.5),
              "sigmoid normalizer tensor": dict(normalizer=torch.tensor(6.0))}[case]
        return fk.sigmoid_focal_loss, x, y, kw
    if case == "softmax N-D":  # a 2-D grid: 5 tiles of 64 positions x 2 images
        x, y = torch.randn(2, 7, 300, generator=g), torch.randint(0, 7, (2, 300), generator=g)
        return fk.softmax_focal_loss, x, y, dict(weight=torch.rand(7, generator=g) + 0.5)
    if case == "softmax probabilities":
        return fk.softmax_focal_loss, x, torch.softmax(torch.randn(rows, 7, generator=g), 1), dict(gamma=1.5)
    if case.startswith("softmax"):
        y = torch.randint(0, 7, (rows,), generator=g)
        y[::3] = -100
        if case == "softmax all ignored":
            y[:] = -100
        return fk.softmax_focal_loss, x, y, dict(weight=torch.rand(7, generator=g) + 0.5)
    if case == "varifocal":
        return fk.varifocal_loss, x, torch.rand(rows, 7, generator=g) * (torch.rand(rows, 7, generator=g) < 0.3), {}
    return fk.distribution_focal_loss, x, torch.rand(rows, generator=g) * 5.9, {}


@pytest.mark.parametrize("case", ["sigmoid mean", "sigmoid sum", "sigmoid normalizer", "sigmoid normalizer tensor",
                                  "softmax mean, weights and ignored", "softmax probabilities", "varifocal", "dfl",
                                  "softmax all ignored"])
def test_one_program_forward_finishes_as_the_finishing_kernel(monkeypatch, case):
    """A forward whose grid is one program (small inputs) finishes the reduction itself, one launch
    fewer; its loss and gradient are the bits of the forward + ``finish_kernel`` pair, for every
    denominator: none (sum), a number, a tensor, the kernel's weighted count (0 when all is ignored)."""
    fn, x, y, kw = _finishing_case(case, 40, 3)
    got = _run(fn, _on(x), _on(y), "triton", **_on(kw))
    monkeypatch.setattr(tb, "ONE_PROGRAM_FINISH", False)
    want = _run(fn, _on(x), _on(y), "triton", **_on(kw))
    assert got[0].dtype == want[0].dtype == torch.float32 and got[0].shape == want[0].shape == ()
    for a, b in zip(got, want):
        assert torch.equal(a.cpu(), b.cpu()), (a, b)


@pytest.mark.parametrize("case", ["sigmoid mean", "sigmoid normalizer tensor", "softmax mean, weights and ignored",
                                  "softmax probabilities", "softmax N-D", "softmax all ignored", "varifocal", "dfl"])
def test_last_program_of_several_finishes_as_the_finishing_kernel(monkeypatch, case):
    """``LAST_PROGRAM_FINISH``: over several programs the forward's last program (an atomic ticket) sums
    the partials in ``finish_kernel``'s order and finishes, one launch fewer. Loss and gradient equal the
    forward + ``finish_kernel`` pair's: the same bits in the interpreter (programs run in turn there), and
    on a GPU within a few float32 ulp (the last program's float64 sum is the same sum in another kernel's
    layout), every run the same (no program reads a partial before it is stored)."""
    fn, x, y, kw = _finishing_case(case, 600, 4)  # several programs: 3 of the row loop, 4 of the sigmoid grid
    launches = []
    real = tb._launch
    monkeypatch.setattr(tb, "_launch", lambda fn_, *a: (launches.append(fn_), real(fn_, *a)))
    want = _run(fn, _on(x), _on(y), "triton", **_on(kw))
    names = lambda: [getattr(k, "__name__", "") for k in launches]
    assert names().count("finish_kernel") == 1  # several programs: the finishing kernel ran
    monkeypatch.setattr(tb, "LAST_PROGRAM_FINISH", True)
    launches.clear()
    runs = [_run(fn, _on(x), _on(y), "triton", **_on(kw)) for _ in range(1 if DEV == "cpu" else 5)]
    assert len(launches) == 2 * len(runs) and "finish_kernel" not in names(), names()
    for got in runs:
        assert got[0].dtype == want[0].dtype == torch.float32 and got[0].shape == want[0].shape == ()
        for a, b in zip(got, want):
            if DEV == "cpu":
                assert torch.equal(a.cpu(), b.cpu()), (a, b)
            else:
                torch.testing.assert_close(a.cpu(), b.cpu(), rtol=2 ** -21, atol=0)
        for a, b in zip(got, runs[0]):
            assert torch.equal(a.cpu(), b.cpu())


import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from focalkit.backends._triton import common as _common  # noqa: E402


@triton.jit
def one_partial_each(val_ptr, cnt_ptr, out_ptr, scr_ptr, den_ptr, inv_ptr, nprog, den_value, den_mode):
    """A test's kernel: program ``pid`` finishes a reduction of one partial, ``val[pid]`` (count ``cnt[pid]``),
    as a forward's last program of several does."""
    pid = tl.program_id(0)
    _common.reduce_finish(tl.load(val_ptr + pid), tl.load(cnt_ptr + pid), pid, nprog, out_ptr, scr_ptr, den_ptr,
                          den_value, den_mode, inv_ptr, LAST=True)


@pytest.mark.parametrize("den_mode", [0, 1, 2, 3])
def test_the_partials_sum_over_several_chunks(den_mode):
    """More partials than one chunk of ``common.FINISH_BLOCK`` (2,500: three chunks, the last one part
    full), in both finishes: ``finish_kernel`` over stored partials, and the last of 2,500 programs that
    each store one (the ticket; counts at ``scr[nprog + pid]``). Each gives the float64 sum of the
    partials (and of the counts, for ``den_mode`` 3) over the denominator, rounded once to float32, and
    ``1 / denominator``; the two give the same bits in the interpreter."""
    import math

    n = 2500
    assert n > 2 * _common.FINISH_BLOCK.value
    g = torch.Generator().manual_seed(11)
    vals = (torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 4)).float()
    cnts = (torch.rand(n, generator=g) * 3).float()
    den_t = torch.tensor([7.25])
    want_den = {0: 1.0, 1: 2.5, 2: 7.25, 3: math.fsum(cnts.double().tolist())}[den_mode]
    want = math.fsum(vals.double().tolist()) / want_den
    v, c, d = _on(vals), _on(cnts), _on(den_t)
    out, inv = torch.empty((), device=v.device), torch.empty(1, device=v.device)
    _common.finish_kernel[(1,)](v, c, d, out, inv, n, 2.5, den_mode, num_warps=4)
    out2, inv2 = torch.empty((), device=v.device), torch.empty(1, device=v.device)
    scr = torch.zeros(2 * n + 1, device=v.device)
    one_partial_each[(n,)](v, c, out2, scr, d, inv2, n, 2.5, den_mode, num_warps=4)
    for o, i in ((out, inv), (out2, inv2)):
        assert math.isclose(o.item(), want, rel_tol=2 ** -23, abs_tol=0), (o.item(), want)
        assert i.item() == torch.tensor(1.0 / want_den).float().item()
    assert scr[2 * n].item() == n  # every program took a ticket
    if DEV == "cpu":
        assert torch.equal(out.cpu(), out2.cpu()) and torch.equal(inv.cpu(), inv2.cpu())


def test_a_tuning_file_replaces_the_tables_and_the_finishing_switch(tmp_path):
    """``FOCALKIT_TRITON_TUNING`` (read at import, for a GPU run's sweep): the tables, the loops' limits and
    ``last_program_finish`` come from the file; without it, the defaults of ``backends/triton.py`` (both
    switches off)."""
    import json
    import os
    import subprocess
    import sys

    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"sigmoid": [2048, 4, 16], "row_loop": [128, 2, 24], "spatial_loop": [512, 8, 20],
                                "last_program_finish": True}))
    code = ("from focalkit.backends import triton as tb; "
            "print(tb.SIGMOID_BLOCK, tb.SIGMOID_WARPS, tb.PROGRAMS_PER_SM, tb.ROW_LOOP.block_p, tb.ROW_LOOP.num_warps, "
            "tb.ROW_LOOP_MAX_C, tb.SPATIAL_LOOP.block_p, tb.SPATIAL_LOOP.num_warps, tb.SPATIAL_LOOP.spatial, "
            "tb.SPATIAL_LOOP_MAX_C, tb.LAST_PROGRAM_FINISH)")
    for env, want in (({"FOCALKIT_TRITON_TUNING": str(path)}, "2048 4 16 128 2 24 512 8 True 20 True"),
                      ({}, f"{tb.SIGMOID_BLOCK} {tb.SIGMOID_WARPS} {tb.PROGRAMS_PER_SM} {tb.ROW_LOOP.block_p} "
                           f"{tb.ROW_LOOP.num_warps} {tb.ROW_LOOP_MAX_C} {tb.SPATIAL_LOOP.block_p} "
                           f"{tb.SPATIAL_LOOP.num_warps} True 0 False")):
        full = {k: v for k, v in os.environ.items() if k != "FOCALKIT_TRITON_TUNING"} | env
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)
        assert r.stdout.split("\n")[-2] == want, r.stdout + r.stderr[-2000:]
