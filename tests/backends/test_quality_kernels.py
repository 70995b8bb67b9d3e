"""Varifocal Loss and Distribution Focal Loss on their kernels: the C kernel (CPU) and the Triton
kernels (the test device: CUDA on a GPU, Triton's interpreter in CI) against the eager reference in
float64, which is itself checked against 50-digit mpmath; every option, layout and dtype, NaN
propagation, the gradients of targets, labels and weights, ``grad_output`` != 1, a second backward,
and the refusals."""

import os

import pytest
import torch

import focalkit as fk
from focalkit.backends import native, triton as tb
from focalkit.core import distribution_focal, varifocal
from device import DEVICE as DEV, cpu_reference
from reference import mp_dfl_row, mp_varifocal_one

D = torch.float64
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=2e-5, atol=1e-6),
       torch.float16: dict(rtol=1e-2, atol=2e-3), torch.bfloat16: dict(rtol=3e-2, atol=1e-2)}
KERNELS = ["native", "triton"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _dev(backend):
    return "cpu" if backend == "native" else DEV


def _needs(backend):
    if backend == "triton" and not tb.available():
        pytest.skip("triton is not installed")
    if backend == "native" and not native.available():
        if os.environ.get("CI"):  # CI builds it: missing there is a failure, not a skip
            pytest.fail(f"the native kernel is not built: {native.why_unavailable()}")
        pytest.skip("the native kernel is not built here (the GPU machine runs the source tree)")


def _run(fn, x, backend, go="ramp", **kw):
    """(loss, d loss / d logits) with a grad_output that is not all ones."""
    xx = x.clone().requires_grad_()
    out = fn(xx, backend=backend, **kw)
    g = torch.ones_like(out) if go is None else (torch.arange(out.numel(), device=out.device).reshape(out.shape) % 3
                                                 + 0.5).to(out.dtype)
    out.backward(g)
    return out.detach(), xx.grad


def _check(fn, x, backend, dtype, **kw):
    """The kernel (dtype) against eager in float64 on CPU copies of every tensor."""
    dev = _dev(backend)
    o1, g1 = _run(fn, x.to(dev, dtype), backend, **{k: v.to(dev) if isinstance(v, torch.Tensor) else v
                                                     for k, v in kw.items()})
    o0, g0 = cpu_reference(lambda xx, **k: _run(fn, xx, "eager", **k), x.to(dtype), **kw)  # the same rounded x
    assert o1.dtype == (torch.float32 if o1.dim() == 0 and dtype in (torch.float16, torch.bfloat16) else dtype)
    assert g1.dtype == dtype and g1.shape == x.shape
    torch.testing.assert_close(o1.cpu().to(D), o0, **TOL[dtype], equal_nan=True)
    torch.testing.assert_close(g1.cpu().to(D), g0, **TOL[dtype], equal_nan=True)


# ---- the closed forms against mpmath -----------------------------------------------------------

@pytest.mark.parametrize("labels", [None, "bool", "frac"])
@pytest.mark.parametrize("iou", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_varifocal_closed_form_equals_mpmath(labels, iou, gamma):
    x = torch.tensor([-60.0, -17.0, -3.0, -0.4, 0.0, 0.7, 4.0, 19.0, 60.0], dtype=D)
    q = torch.tensor([0.0, 0.9, 0.3, 0.0, 1.0, 0.0, 0.55, 0.0, 0.2], dtype=D)
    lab = {None: None, "bool": (q > 0.25), "frac": torch.linspace(0, 1, 9, dtype=D)}[labels]
    loss, grad = varifocal(x, q, 0.75, gamma, iou, None if lab is None else lab.to(D))
    for i in range(len(x)):
        want_l, want_g = mp_varifocal_one(x[i], q[i], 0.75, gamma, iou, None if lab is None else float(lab[i]))
        assert loss[i].item() == pytest.approx(want_l, rel=1e-13, abs=1e-300)
        assert grad[i].item() == pytest.approx(want_g, rel=1e-9, abs=1e-280)


def test_dfl_closed_form_equals_mpmath():
    z = torch.randn(6, 17, generator=_gen(), dtype=D) * 5
    z[0, 3] = 80.0  # a dominant bin
    y = torch.tensor([0.0, 3.25, 15.999, 16.0, 40.0, -2.0], dtype=D)
    loss, grad = distribution_focal(z, y)
    for i in range(6):
        want_l, want_g = mp_dfl_row(z[i].tolist(), y[i].item())
        assert loss[i].item() == pytest.approx(want_l, rel=1e-13, abs=1e-14)
        torch.testing.assert_close(grad[i], torch.tensor(want_g, dtype=D), rtol=1e-12, atol=1e-15)


# ---- the kernels against the reference ----------------------------------------------------------

def _vfl_case(name, g):
    x = torch.randn(37, 21, generator=g, dtype=D) * 4
    x[0, :6] = torch.tensor([-90.0, 90.0, -20.0, 20.0, 0.0, 1e-3], dtype=D)
    q = torch.rand(37, 21, generator=g, dtype=D) * (torch.rand(37, 21, generator=g) > 0.7)
    lab = torch.rand(37, 21, generator=g) > 0.5
    cases = {
        "default": dict(),
        "labels-bool": dict(labels=lab),
        "labels-frac": dict(labels=lab.to(D) * 0.7),
        "weight": dict(weight=torch.rand(37, 21, generator=g, dtype=D)),
        "weight-per-class": dict(weight=torch.rand(21, generator=g, dtype=D)),
        "weight-per-row": dict(weight=torch.rand(37, 1, generator=g, dtype=D)),
        "not-iou-weighted": dict(iou_weighted=False, alpha=0.5),
        "gamma0": dict(gamma=0.0),
        "gamma1.5-labels": dict(gamma=1.5, labels=lab),
        "sum": dict(reduction="sum"),
        "none": dict(reduction="none"),
        "normalizer": dict(normalizer=7.0),
        "normalizer-tensor": dict(normalizer=torch.tensor(5.0, dtype=D)),
    }
    return x, q, cases[name]


VFL_CASES = ["default", "labels-bool", "labels-frac", "weight", "weight-per-class", "weight-per-row",
             "not-iou-weighted", "gamma0", "gamma1.5-labels", "sum", "none", "normalizer", "normalizer-tensor"]


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("case", VFL_CASES)
def test_varifocal_kernels_equal_the_reference(backend, case):
    _needs(backend)
    x, q, kw = _vfl_case(case, _gen())
    for dtype in ((D, torch.float32) if backend == "native" else (torch.float32,)):
        _check(lambda xx, **k: fk.varifocal_loss(xx, k.pop("q"), **k), x, backend, dtype, q=q, **kw)


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_varifocal_kernels_in_half_precision(backend, dtype):
    _needs(backend)
    x, q, _ = _vfl_case("default", _gen(1))
    q = q.to(dtype).to(D)  # the targets the kernel sees
    lab = q > 0.2
    for red in ("mean", "none"):
        _check(lambda xx, **k: fk.varifocal_loss(xx, k.pop("q").to(xx.dtype), **k), x.clamp(-15, 15), backend, dtype,
               q=q, labels=lab, reduction=red)


@pytest.mark.parametrize("backend", KERNELS)
def test_varifocal_kernels_take_any_layout(backend):
    """Transposed and sliced logits, expanded targets: made contiguous for the kernel, same values."""
    _needs(backend)
    g = _gen(2)
    x = torch.randn(21, 37, generator=g, dtype=D).t()[:, ::2]
    q = torch.rand(1, 11, generator=g, dtype=D).expand(37, 11)
    _check(lambda xx, **k: fk.varifocal_loss(xx, k.pop("q"), **k), x, backend, torch.float32, q=q)


def _dfl_case(bins, g):
    z = torch.randn(45, bins, generator=g, dtype=D) * 3
    y = torch.rand(45, generator=g, dtype=D) * (bins - 1)
    y[:5] = torch.tensor([0.0, bins - 1.0, bins + 3.0, -1.5, bins - 1.5], dtype=D)
    return z, y.float().to(D)  # distances the float32 kernels hold exactly


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("bins", [2, 16, 17, 40, 200])
@pytest.mark.parametrize("kw", [dict(), dict(reduction="none"), dict(reduction="sum", weight="rows"),
                                dict(weight="one"), dict(normalizer=3.0), dict(normalizer="tensor")],
                         ids=["mean", "none", "sum-weight", "scalar-weight", "normalizer", "normalizer-tensor"])
def test_dfl_kernels_equal_the_reference(backend, bins, kw):
    _needs(backend)
    g = _gen(bins)
    z, y = _dfl_case(bins, g)
    kw = dict(kw)
    if kw.get("weight") == "rows":
        kw["weight"] = torch.rand(45, generator=g, dtype=D)
    elif kw.get("weight") == "one":
        kw["weight"] = torch.tensor([0.5], dtype=D)
    if kw.get("normalizer") == "tensor":
        kw["normalizer"] = torch.tensor(9.0, dtype=D)
    for dtype in ((D, torch.float32) if backend == "native" else (torch.float32, torch.bfloat16)):
        _check(lambda zz, **k: fk.distribution_focal_loss(zz, k.pop("y"), **k), z, backend, dtype, y=y, **kw)


@pytest.mark.parametrize("backend", KERNELS)
def test_nan_propagates(backend):
    """A NaN logit gives a NaN loss; a NaN DFL target a NaN row (loss and gradient), never an index."""
    _needs(backend)
    dev = _dev(backend)
    x, q, _ = _vfl_case("default", _gen(3))
    x[2, 3] = float("nan")
    out, grad = _run(lambda xx, **k: fk.varifocal_loss(xx, q.to(dev, torch.float32), reduction="none", **k),
                     x.to(dev, torch.float32), backend)
    assert out[2, 3].isnan() and grad[2, 3].isnan() and out.isnan().sum() == 1 and grad.isnan().sum() == 1
    z, y = _dfl_case(16, _gen(4))
    y[6] = float("nan")
    out, grad = _run(lambda zz, **k: fk.distribution_focal_loss(zz, y.to(dev), reduction="none", **k),
                     z.to(dev, torch.float32), backend)
    assert out[6].isnan() and out.isnan().sum() == 1
    assert grad[6].isnan().all() and grad.isnan().sum() == 16


@pytest.mark.parametrize("backend", KERNELS)
def test_second_backward_and_loss_used_twice(backend):
    """retain_graph and a loss used twice: the kernels recompute (Triton) or scale a saved gradient
    (C); both give twice one backward."""
    _needs(backend)
    dev = _dev(backend)
    x, q, _ = _vfl_case("default", _gen(5))
    z, y = _dfl_case(16, _gen(6))
    for fn, inp in ((lambda t: fk.varifocal_loss(t, q.to(dev, torch.float32), backend=backend), x),
                    (lambda t: fk.distribution_focal_loss(t, y.to(dev), backend=backend), z)):
        t = inp.to(dev, torch.float32).requires_grad_()
        loss = fn(t)
        loss.backward(retain_graph=True)
        once = t.grad.clone()
        (loss * 2.0 + loss).backward()
        torch.testing.assert_close(t.grad, 4 * once)


@pytest.mark.parametrize("backend", KERNELS)
def test_gradients_of_targets_labels_and_weights(backend):
    """Through the reference: the same as autograd of the eager formula."""
    _needs(backend)
    dev = _dev(backend)
    x, q, _ = _vfl_case("default", _gen(7))
    lab = (torch.rand(x.shape, generator=_gen(8), dtype=D) > 0.5).to(D) * 0.8
    w = torch.rand(x.shape[1], generator=_gen(9), dtype=D)

    def grads(b, dt, device):
        ins = [t.to(device, dt).requires_grad_() for t in (x, q, lab, w)]
        fk.varifocal_loss(ins[0], ins[1], labels=ins[2], weight=ins[3], backend=b).backward()
        return [t.grad.cpu().to(D) for t in ins]

    for got, want in zip(grads(backend, torch.float32, dev), grads("eager", D, "cpu")):
        torch.testing.assert_close(got, want, **TOL[torch.float32])
    z, y = _dfl_case(17, _gen(10))
    wr = torch.rand(45, generator=_gen(11), dtype=D)

    def dgrads(b, dt, device):
        ins = [t.to(device, dt).requires_grad_() for t in (z, y, wr)]
        fk.distribution_focal_loss(ins[0], ins[1], weight=ins[2], backend=b).backward()
        return [t.grad.cpu().to(D) for t in ins]

    for got, want in zip(dgrads(backend, torch.float32, dev), dgrads("eager", D, "cpu")):
        torch.testing.assert_close(got, want, **TOL[torch.float32])


def test_native_gradcheck_and_gradgradcheck():
    _needs("native")
    x, q, _ = _vfl_case("default", _gen(12))
    x, q = x[:5, :6].contiguous(), q[:5, :6].contiguous()
    lab = torch.rand(5, 6, generator=_gen(13), dtype=D).requires_grad_()
    f = lambda t, l: fk.varifocal_loss(t, q, labels=l, gamma=1.5, backend="native")  # noqa: E731
    assert torch.autograd.gradcheck(f, (x.requires_grad_(), lab))
    assert torch.autograd.gradgradcheck(f, (x, lab))
    z, y = _dfl_case(6, _gen(14))
    y = (y[:8] + 0.01).clamp(0.01, 4.9).requires_grad_()  # away from the bin edges, where it has kinks
    g = lambda t, yy: fk.distribution_focal_loss(t, yy, backend="native")  # noqa: E731
    assert torch.autograd.gradcheck(g, (z[:8].clone().requires_grad_(), y))
    assert torch.autograd.gradgradcheck(g, (z[:8].clone().requires_grad_(), y))


def test_backend_choice_and_refusals():
    """Explicit kernels run; a layout a kernel does not take runs eagerly under auto and raises when asked."""
    z = torch.randn(4, 300, dtype=torch.float32, device=DEV)
    y = torch.rand(4, device=DEV) * 200
    assert tb.dfl_unsupported(z) is not None and "300 bins" in tb.dfl_unsupported(z)
    if tb.available():
        with pytest.raises(ValueError, match="backend='triton' cannot run distribution_focal_loss here: 300 bins"):
            fk.distribution_focal_loss(z, y, backend="triton")
    with pytest.raises(ValueError, match="`backend`"):
        fk.VarifocalLoss(backend="gpu")
    assert fk.DistributionFocalLoss(backend="native").backend == "native"
    x = torch.randn(3, 4, dtype=D, device=DEV)
    if tb.available():
        with pytest.raises(ValueError, match="backend='triton' cannot run varifocal_loss here: dtype torch.float64"):
            fk.varifocal_loss(x, x.sigmoid(), backend="triton")  # float64: eager only on Triton
        torch.testing.assert_close(fk.varifocal_loss(x, x.sigmoid()), fk.varifocal_loss(x, x.sigmoid(), backend="eager"))
    x = x.cpu()
    with pytest.raises(ValueError, match="`targets`"):
        fk.varifocal_loss(x, torch.rand(3, 4, dtype=D, device="meta"), backend="native")


def test_kernel_backends_are_chosen_by_auto(monkeypatch):
    """backend="auto" on a CPU tensor runs the C kernel for both (counted by replacing the calls)."""
    _needs("native")
    calls = []
    for name in ("_varifocal_impl", "_dfl_impl"):
        orig = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    x = torch.randn(3, 4)
    fk.varifocal_loss(x, x.sigmoid())
    fk.distribution_focal_loss(x, torch.rand(3) * 3)
    assert calls == ["_varifocal_impl", "_dfl_impl"]


def test_compiled_calls_trace_the_closed_form():
    """Under torch.compile the kernels are not registered ops: the closed form is traced, same values."""
    x = torch.randn(6, 5, dtype=torch.float32)
    q = torch.rand(6, 5) * (torch.rand(6, 5) > 0.5)
    b = "native" if native.available() else "auto"
    f = torch.compile(lambda t: fk.varifocal_loss(t, q, backend=b) +
                      fk.distribution_focal_loss(t, q[:, 0] * 4, backend=b), backend="eager", fullgraph=True)
    torch.testing.assert_close(f(x), fk.varifocal_loss(x, q) + fk.distribution_focal_loss(x, q[:, 0] * 4))


@pytest.mark.parametrize("backend", KERNELS)
def test_edge_shapes(backend):
    """Empty, 0-dim and (B, anchors, C) logits with a per-anchor weight (B, A, 1); infinite logits."""
    _needs(backend)
    g = _gen(15)
    q3 = torch.rand(2, 7, 5, generator=g, dtype=D) * (torch.rand(2, 7, 5, generator=g) > 0.5)
    w3 = torch.rand(2, 7, 1, generator=g, dtype=D)
    vfl = lambda xx, **k: fk.varifocal_loss(xx, k.pop("q"), **k)  # noqa: E731
    for x, kw in ((torch.zeros(0, 5, dtype=D), dict(q=torch.zeros(0, 5, dtype=D))),
                  (torch.zeros(0, 5, dtype=D), dict(q=torch.zeros(0, 5, dtype=D), reduction="none")),
                  (torch.tensor(0.3, dtype=D), dict(q=torch.tensor(0.7, dtype=D))),
                  (torch.randn(2, 7, 5, generator=g, dtype=D), dict(q=q3, weight=w3, reduction="none")),
                  (torch.randn(2, 7, 5, generator=g, dtype=D), dict(q=q3, labels=q3 > 0.1, weight=w3)),
                  (torch.tensor([[float("inf"), -float("inf"), 3.0]], dtype=D),
                   dict(q=torch.tensor([[0.0, 0.0, 0.4]], dtype=D), reduction="none"))):
        _check(vfl, x, backend, torch.float32, **kw)
    dfl = lambda zz, **k: fk.distribution_focal_loss(zz, k.pop("y"), **k)  # noqa: E731
    z = torch.randn(4, 16, generator=g, dtype=D)
    z[1, 3], z[2, 5], z[3, 0] = float("inf"), -float("inf"), -float("inf")  # row 3: away from its target
    for zz, kw in ((torch.zeros(0, 16, dtype=D), dict(y=torch.zeros(0, dtype=D))),
                   (torch.zeros(0, 16, dtype=D), dict(y=torch.zeros(0, dtype=D), reduction="none")),
                   (torch.randn(9, 16, generator=g, dtype=D), dict(y=torch.arange(9, dtype=D) * 1.7,
                                                                   weight=torch.tensor(2.0, dtype=D))),
                   (z, dict(y=torch.tensor([1.0, 3.5, 5.2, 15.0], dtype=D), reduction="none"))):
        _check(dfl, zz, backend, torch.float32, **kw)


def test_native_denominator_matches_eager_at_the_float32_edges():
    """The C path's denominator is the eager formula's (rounded to float32): a normalizer below
    float32's range divides by 0 there too (inf), and an odd one rounds the same way."""
    _needs("native")
    z, y = _dfl_case(16, _gen(16))
    x, q, _ = _vfl_case("default", _gen(17))
    for norm in (1e-50, torch.tensor(1e-50, dtype=D), 1.0 + 2 ** -30, 3.0):
        for f, a, b in ((fk.distribution_focal_loss, z.float(), y.float()), (fk.varifocal_loss, x.float(), q.float())):
            want = f(a.clone().requires_grad_(), b, normalizer=norm, backend="eager")
            got = f(a.clone().requires_grad_(), b, normalizer=norm, backend="native")
            torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
