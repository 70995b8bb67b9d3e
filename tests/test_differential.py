"""Differential suite: every closed-form loss on every available backend, over the layouts a user can
pass (contiguous, transposed, expanded, sliced with an offset, channels_last, neg-view), every float
dtype, every integer target dtype and the broadcast shapes of each tensor argument, against a float64
reference of the naive formula (moderate logits, where the naive formula is exact enough)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import focalkit as fk
from focalkit.backends import native, triton
from conftest import TOL
from reference import torch_focal_star, torch_quality_focal, torch_sigmoid_focal, torch_softmax_focal

BACKENDS = ["eager"] + (["native"] if native.available() else []) + \
    (["triton"] if triton.unsupported(torch.zeros(1)) is None else [])
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
N, C, H, W = 6, 5, 3, 2



def _loss_dtype(dtype, reduction):
    """docs/api.md, "Mixed precision": a reduced loss of float16 / bfloat16 logits is float32."""
    return torch.float32 if reduction != "none" and dtype in (torch.float16, torch.bfloat16) else dtype

def _layout(base: torch.Tensor, kind: str) -> torch.Tensor:
    """A tensor with ``base``'s values (``expanded``: row 0 repeated) in the given memory layout."""
    if kind == "contiguous":
        return base.clone()
    if kind == "transposed":
        return base.transpose(0, -1).contiguous().transpose(0, -1)
    if kind == "expanded":
        return base[:1].expand_as(base)
    if kind == "sliced":  # an offset into a larger buffer, with a step
        big = torch.zeros((2 * base.shape[0] + 1,) + base.shape[1:], dtype=base.dtype)
        big[1::2] = base
        return big[1::2]
    if kind == "channels_last":
        return base.contiguous(memory_format=torch.channels_last) if base.dim() == 4 else base.clone()
    if kind == "neg":
        return torch._neg_view(-base)
    raise AssertionError(kind)


LAYOUTS = ["contiguous", "transposed", "expanded", "sliced", "channels_last", "neg"]


def _values(t: torch.Tensor) -> torch.Tensor:
    return torch.resolve_neg(t).clone()


def _close(got, want, dtype, scale=1.0):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol * scale)


# ---- sigmoid focal loss -------------------------------------------------------------------------

def _sigmoid_ref(x, y, gamma, alpha, weight, pos_weight, soft, reduction):
    a = alpha.double() if isinstance(alpha, torch.Tensor) else alpha
    pw = None if pos_weight is None else pos_weight.double()
    loss = torch_sigmoid_focal(x, y, gamma, a, pw, soft)
    if weight is not None:
        loss = loss * weight.double()
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


SIGMOID_ARGS = [
    dict(),
    dict(alpha=None, gamma=0.5, reduction="sum"),
    dict(alpha="vec", gamma=1.5, soft_target="linear"),
    dict(pos_weight=(), weight=(N, 1)),
    dict(pos_weight=(C,), weight=(C,), reduction="none"),
    dict(pos_weight=(1, C), weight=()),
    dict(pos_weight=(N, 1), weight=(1, C)),  # per-row pos_weight: eager on every backend under auto
    dict(pos_weight=(N, C), weight=(N, C), soft_target="linear"),
    dict(alpha=0.3, gamma=0.5, pos_weight=(C,), soft_target="signed", reduction="sum"),
    dict(alpha="vec", gamma=2.0, weight=(N, C), soft_target="signed", reduction="none"),
    dict(alpha=0.25, gamma=0.5, soft_target="bce", reduction="none"),
    dict(alpha=None, gamma=2.0, pos_weight=(C,), weight=(N, 1), soft_target="bce"),
    dict(alpha=0.25, gamma=1.5, pos_weight=(), soft_target="quality", reduction="none"),
    dict(alpha="vec", gamma=0.5, weight=(N, C), soft_target="quality", reduction="sum"),
]


def _make(shape, seed, lo=0.1, hi=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo


BACKEND_DTYPES = [(b, d) for b in BACKENDS for d in DTYPES if not (b == "triton" and d == torch.float64)]


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_layouts_dtypes_and_argument_shapes(backend, dtype, layout, soft):
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(N, C, generator=g, dtype=torch.float64) * 3).to(dtype)
    y64 = torch.rand(N, C, generator=g, dtype=torch.float64)
    y64 = y64 if soft else (y64 > 0.6).double()
    for i, spec in enumerate(SIGMOID_ARGS):
        kw = dict(spec)
        for name in ("pos_weight", "weight"):
            if name in kw:
                kw[name] = _layout(_make(kw[name] or (1,), i).to(dtype if dtype.is_floating_point else dtype),
                                   layout if len(kw[name]) > 1 else "contiguous")
                if spec[name] == ():
                    kw[name] = kw[name].reshape(())
        if kw.get("alpha") == "vec":
            kw["alpha"] = torch.linspace(0.1, 0.9, C, dtype=dtype)
        x = _layout(base, layout).requires_grad_()
        y = _layout(y64.to(dtype), layout)
        explicit_ok = not (backend in ("native", "triton") and kw.get("pos_weight") is not None
                           and not (kw["pos_weight"].numel() == 1 or kw["pos_weight"].shape[-1:] == (C,)
                                    and kw["pos_weight"].numel() == C))
        run = backend if explicit_ok else "auto"
        if not explicit_ok:
            with pytest.raises(ValueError, match="pos_weight"):
                fk.sigmoid_focal_loss(x, y, backend=backend, **kw)
        out = fk.sigmoid_focal_loss(x, y, backend=run, **kw)
        assert out.dtype == _loss_dtype(dtype, kw.get("reduction", "mean"))
        go = torch.rand(out.shape, dtype=dtype) if out.dim() else None
        out.backward(go)
        x64 = _values(x.detach()).double().requires_grad_()
        ref_kw = dict(gamma=kw.get("gamma", 2.0), alpha=kw.get("alpha", 0.25), weight=kw.get("weight"),
                      pos_weight=kw.get("pos_weight"), soft=kw.get("soft_target", "pt"),
                      reduction=kw.get("reduction", "mean"))
        ref = _sigmoid_ref(x64, _values(y).double(), **ref_kw)
        ref.backward(None if go is None else go.double())
        _close(out, ref.detach(), dtype, scale=10 if out.dim() == 0 else 1)
        _close(x.grad, x64.grad, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tdtype", INT_DTYPES + [torch.bool])
def test_sigmoid_integer_and_bool_dense_targets_equal_float(backend, tdtype):
    x = torch.randn(N, C)
    y = (torch.rand(N, C) > 0.5)
    want = fk.sigmoid_focal_loss(x, y.float(), backend=backend)
    torch.testing.assert_close(fk.sigmoid_focal_loss(x, y.to(tdtype), backend=backend), want)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "triton"])
@pytest.mark.parametrize("tdtype", INT_DTYPES)
def test_sigmoid_sparse_targets_of_every_integer_dtype(backend, tdtype):
    x = torch.randn(N, C, dtype=torch.float64)
    labels = torch.tensor([0, 4, 5, 2, 5, 1])
    dense = F.one_hot(labels, C + 1)[:, :C].double()
    want = fk.sigmoid_focal_loss(x, dense, backend="eager", reduction="none")
    got = fk.sigmoid_focal_loss(x, labels.to(tdtype), backend=backend, reduction="none")
    torch.testing.assert_close(got, want)


def test_sigmoid_one_class_integer_targets_of_the_batch_shape_are_refused():
    x = torch.randn(7, 1)
    with pytest.raises(ValueError, match=r"unsqueeze\(-1\)"):
        fk.sigmoid_focal_loss(x, torch.randint(0, 2, (7,)))
    # the unambiguous spelling works, and equals float targets
    y = torch.randint(0, 2, (7, 1))
    torch.testing.assert_close(fk.sigmoid_focal_loss(x, y), fk.sigmoid_focal_loss(x, y.float()))


@pytest.mark.parametrize("bad", [-1, 6, 100])
def test_sigmoid_sparse_labels_out_of_range_raise(bad):
    x = torch.randn(4, 5)
    labels = torch.tensor([0, 1, bad, 5])
    for backend in [b for b in BACKENDS if b != "triton"]:
        with pytest.raises(ValueError, match=r"\[0, 5\]"):
            fk.sigmoid_focal_loss(x, labels, backend=backend)


def test_sigmoid_dense_targets_outside_unit_interval_raise():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fk.sigmoid_focal_loss(torch.randn(3, 2), torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fk.sigmoid_focal_loss(torch.randn(3), torch.tensor([0, -1, 1]))
    nan = fk.sigmoid_focal_loss(torch.randn(3), torch.tensor([0.0, float("nan"), 1.0]))
    assert torch.isnan(nan)  # NaN propagates, never hidden


# ---- softmax focal loss -------------------------------------------------------------------------

def _softmax_ref(z, t, gamma, weight, ignore_index, eps, reduction):
    n_cls = z.shape[1]
    w = torch.ones(n_cls, dtype=torch.float64) if weight is None else weight.double()
    shape = (1, n_cls) + (1,) * (z.dim() - 2)
    if t.is_floating_point():
        q = t.double() * (1 - eps) + eps / n_cls
        loss = torch_softmax_focal(z, q * w.view(shape), gamma)
        den = loss.numel()
    else:
        valid = t != ignore_index
        ts = torch.where(valid, t, 0).long()
        q = F.one_hot(ts, n_cls).movedim(-1, 1).double() * (1 - eps) + eps / n_cls
        loss = torch_softmax_focal(z, q * w.view(shape), gamma) * valid
        den = (w[ts] * valid).sum()
    if reduction == "none":
        return loss
    return loss.sum() / den if reduction == "mean" else loss.sum()


SOFTMAX_ARGS = [dict(), dict(gamma=0.5, weight=True), dict(label_smoothing=0.1, reduction="sum"),
                dict(ignore_index=2, weight=True, reduction="none"), dict(probs=True, gamma=1.0)]


@pytest.mark.parametrize("backend,dtype", BACKEND_DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dims", [2, 4])
def test_softmax_layouts_dtypes(backend, dtype, layout, dims):
    shape = (N, C) if dims == 2 else (N, C, H, W)
    g = torch.Generator().manual_seed(1)
    base = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    tshape = shape[:1] + shape[2:]
    labels = torch.randint(0, C, tshape, generator=g)
    labels.view(-1)[::4] = 2
    for spec in SOFTMAX_ARGS:
        kw = dict(spec)
        weight = torch.linspace(0.5, 2.0, C, dtype=dtype) if kw.pop("weight", False) else None
        if kw.pop("probs", False):
            t = _layout(torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), 1).to(dtype), layout)
        else:
            t = _layout(labels, layout if dims == 2 or layout != "channels_last" else "contiguous")
        x = _layout(base, layout).requires_grad_()
        out = fk.softmax_focal_loss(x, t, weight=weight, backend=backend, **kw)
        assert out.dtype == _loss_dtype(dtype, kw.get("reduction", "mean"))
        go = torch.rand(out.shape, dtype=dtype) if out.dim() else None
        out.backward(go)
        x64 = _values(x.detach()).double().requires_grad_()
        ref = _softmax_ref(x64, _values(t), kw.get("gamma", 2.0), weight, kw.get("ignore_index", -100),
                           kw.get("label_smoothing", 0.0), kw.get("reduction", "mean"))
        ref.backward(None if go is None else go.double())
        _close(out, ref.detach(), dtype, scale=10)
        _close(x.grad, x64.grad, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tdtype", INT_DTYPES)
def test_softmax_integer_targets_of_every_dtype_equal_int64(backend, tdtype):
    z = torch.randn(8, 3)
    t = torch.tensor([0, 1, 2, 1, 0, 2, 1, 1])
    w = torch.tensor([1.0, 2.0, 3.0])
    for kw in (dict(weight=w), dict(weight=w, ignore_index=1), dict(label_smoothing=0.2, ignore_index=0)):
        want = fk.softmax_focal_loss(z, t, backend="eager", **kw)
        torch.testing.assert_close(fk.softmax_focal_loss(z, t.to(tdtype), backend=backend, **kw), want)
    with pytest.raises(TypeError, match="integer class indices"):
        fk.softmax_focal_loss(z, t.bool(), backend=backend)


def test_uint8_mask_with_ignore_index_255():
    z = torch.randn(2, 3, 4, 4)
    t = torch.randint(0, 3, (2, 4, 4), dtype=torch.uint8)
    t[0, 0] = 255
    want = fk.softmax_focal_loss(z, t.long(), ignore_index=255, backend="eager")
    for backend in BACKENDS:
        torch.testing.assert_close(fk.softmax_focal_loss(z, t, ignore_index=255, backend=backend), want)


# ---- the other closed-form losses: layouts and dtypes -------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_focal_star_and_quality_layouts(dtype, layout):
    g = torch.Generator().manual_seed(2)
    base = (torch.randn(N, C, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = _layout(torch.rand(N, C, generator=g, dtype=torch.float64).to(dtype), layout)
    for fn, ref in ((lambda x: fk.focal_loss_star(x, y, gamma=2.0, beta=1.0),
                     lambda x: torch_focal_star(x, _values(y).double(), 2.0, 1.0).mean()),
                    (lambda x: fk.quality_focal_loss(x, y, beta=1.5),
                     lambda x: torch_quality_focal(x, _values(y).double(), 1.5).mean())):
        x = _layout(base, layout).requires_grad_()
        out = fn(x)
        out.backward()
        x64 = _values(x.detach()).double().requires_grad_()
        r = ref(x64)
        r.backward()
        _close(out, r.detach(), dtype, scale=10)
        _close(x.grad, x64.grad, dtype)


# ---- every finite logit: float32 on every backend against float64 eager (itself checked against
# mpmath in tests/core) -----------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

wide = st.floats(-1e4, 1e4, allow_nan=False, width=32)


def _ulps_close(got: torch.Tensor, want: torch.Tensor, ulps: float = 8.0, floor: float = 1e-30):
    """|got - want| within a few float32 ulps of want (plus an absolute floor near 0)."""
    tol = ulps * torch.finfo(torch.float32).eps * want.abs() + floor
    assert ((got.double() - want).abs() <= tol).all(), (got, want)


@settings(max_examples=60, deadline=None)
@given(x=st.lists(wide, min_size=4, max_size=4), seed=st.integers(0, 2**16),
       gamma=st.sampled_from([0.0, 0.5, 2.0]), soft=st.sampled_from(["pt", "linear", "signed", "bce", "quality"]))
def test_sigmoid_every_finite_logit_every_backend(x, seed, gamma, soft):
    x = torch.tensor(x, dtype=torch.float32).reshape(2, 2)
    y = (torch.rand(2, 2, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    want_l = fk.sigmoid_focal_loss(x.double(), y.double(), gamma=gamma, soft_target=soft, reduction="none",
                                   backend="eager")
    for backend in BACKENDS:
        xx = x.clone().requires_grad_()
        got = fk.sigmoid_focal_loss(xx, y, gamma=gamma, soft_target=soft, reduction="none", backend=backend)
        got.sum().backward()
        x64 = x.double().requires_grad_()
        fk.sigmoid_focal_loss(x64, y.double(), gamma=gamma, soft_target=soft, reduction="none",
                              backend="eager").sum().backward()
        _ulps_close(got, want_l)
        _ulps_close(xx.grad, x64.grad)


@settings(max_examples=60, deadline=None)
@given(z=st.lists(wide, min_size=6, max_size=6), t=st.lists(st.integers(0, 2), min_size=2, max_size=2),
       gamma=st.sampled_from([0.0, 0.5, 2.0]), ls=st.sampled_from([0.0, 0.1]))
def test_softmax_every_finite_logit_every_backend(z, t, gamma, ls):
    z = torch.tensor(z, dtype=torch.float32).reshape(2, 3)
    t = torch.tensor(t)
    want = fk.softmax_focal_loss(z.double(), t, gamma=gamma, label_smoothing=ls, reduction="none", backend="eager")
    z64 = z.double().requires_grad_()
    fk.softmax_focal_loss(z64, t, gamma=gamma, label_smoothing=ls, reduction="none", backend="eager").sum().backward()
    for backend in BACKENDS:
        zz = z.clone().requires_grad_()
        got = fk.softmax_focal_loss(zz, t, gamma=gamma, label_smoothing=ls, reduction="none", backend=backend)
        got.sum().backward()
        # the loss is a difference of logits: its error scales with the logits' own rounding
        scale = z.abs().amax(1).double() * torch.finfo(torch.float32).eps
        assert ((got.double() - want).abs() <= 8 * torch.finfo(torch.float32).eps * want.abs() + 4 * scale).all(), \
            (backend, got, want)
        _ulps_close(zz.grad, z64.grad, floor=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gamma_0_equals_bce_to_float32_rounding(backend):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(20000, generator=g) * 6
    y = (torch.rand(20000, generator=g) < 0.5).float()
    ours = fk.sigmoid_focal_loss(x, y, gamma=0.0, alpha=None, reduction="none", backend=backend)
    theirs = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    exact = F.binary_cross_entropy_with_logits(x.double(), y.double(), reduction="none")
    ulp = torch.finfo(torch.float32).eps * exact.abs().clamp(min=torch.finfo(torch.float32).tiny)
    err_ours = (ours.double() - exact).abs() / ulp
    err_torch = (theirs.double() - exact).abs() / ulp
    # within a few ulp of torch where torch is accurate; beyond, torch's log(1 + e^-|x|) loses digits
    # (1.3 % low at |x| = 30), while focalkit's log1p form stays within tens of ulp of float64
    assert ((ours.double() - theirs.double()).abs() / ulp)[x.abs() < 1].max() <= 4
    assert err_ours.max() <= 32 and err_ours.max() <= err_torch.max()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("soft", ["pt", "linear", "signed", "bce", "quality"])
def test_gamma_0_every_soft_form_is_bce_for_soft_targets(backend, soft):
    """At gamma = 0 every soft-target form is BCE-with-logits, soft targets included (the modulator is
    1): values and gradients, against torch's BCE and float64."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4000, generator=g) * 4
    y = torch.rand(4000, generator=g)
    y[:1000] = y[:1000].round()
    xa, xb = x.clone().requires_grad_(), x.double().requires_grad_()
    ours = fk.sigmoid_focal_loss(xa, y, gamma=0.0, alpha=None, soft_target=soft, reduction="sum", backend=backend)
    exact = F.binary_cross_entropy_with_logits(xb, y.double(), reduction="sum")
    ours.backward()
    exact.backward()
    torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=0)
    torch.testing.assert_close(xa.grad.double(), xb.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sigmoid_ignore_index_drops_positions_on_every_backend(backend, reduction):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 4, 4, generator=g)
    t = (torch.rand(2, 3, 4, 4, generator=g) > 0.7).float()
    t[:, :, 0] = 255.0  # a segmentation border
    keep = t != 255
    x1 = x.clone().requires_grad_()
    out = fk.sigmoid_focal_loss(x1, t, ignore_index=255, reduction=reduction, backend=backend)
    (out.sum() if out.dim() else out).backward()
    x2 = x.clone().requires_grad_()
    per = fk.sigmoid_focal_loss(x2, torch.where(keep, t, 0.0), reduction="none", backend="eager") * keep
    want = per.sum() / keep.sum() if reduction == "mean" else per.sum() if reduction == "sum" else per
    (want.sum() if want.dim() else want).backward()
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(x1.grad, x2.grad)
    assert (x1.grad[:, :, 0] == 0).all()
    # all ignored: mean 0, connected to the graph
    z = fk.sigmoid_focal_loss(x.clone().requires_grad_(), torch.full_like(t, 255.0), ignore_index=255)
    assert z.item() == 0 and z.requires_grad
    with pytest.raises(ValueError, match=r"\[0, 1\] or 255"):
        fk.sigmoid_focal_loss(x, torch.full_like(t, 7.0), ignore_index=255)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_alpha_is_a_loss_factor_not_a_reweighted_mean(backend):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(12, 4, 3, generator=g)
    t = torch.randint(0, 4, (12, 3), generator=g)
    t[0, 0] = -100
    a = torch.tensor([0.2, 1.0, 0.5, 2.0])
    w = torch.tensor([1.0, 3.0, 1.0, 0.5])
    per = F.cross_entropy(z, t, weight=a * w, reduction="none")  # gamma = 0: alpha and weight multiply
    got = fk.softmax_focal_loss(z, t, gamma=0.0, alpha=a, weight=w, reduction="none", backend=backend)
    torch.testing.assert_close(got, per)
    valid = t != -100
    den = (w[t.clamp(min=0)] * valid).sum()  # weight alone decides the mean's denominator
    torch.testing.assert_close(fk.softmax_focal_loss(z, t, gamma=0.0, alpha=a, weight=w, backend=backend),
                               per.sum() / den)
    torch.testing.assert_close(fk.softmax_focal_loss(z, t, gamma=2.0, alpha=0.25, backend=backend),
                               fk.softmax_focal_loss(z, t, gamma=2.0, alpha=[0.75, 0.25, 0.25, 0.25],
                                                     backend="eager"))
    q = torch.softmax(torch.randn(12, 4, 3, generator=g), 1)
    torch.testing.assert_close(fk.softmax_focal_loss(z, q, gamma=0.0, alpha=a, backend=backend),
                               F.cross_entropy(z, q * a.view(1, 4, 1), reduction="mean"))
    with pytest.raises(ValueError, match="alpha"):
        fk.softmax_focal_loss(z, t, alpha=[1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        fk.softmax_focal_loss(z, t, alpha=1.5)
