"""Where the C kernel runs here and now (a plain CPU call: ``_ops.host_path``), its numbers reach it as host
numbers: the denominator as a float, one class value as three C numbers, no tensor made for them and
no second validation of what the loss has validated. The registered op (what ``torch.compile`` calls)
takes the same values as tensors. Both must give the same bits, and the edge cases eager's division
gives (a normalizer that rounds to 0 in float32)."""

import itertools
import warnings

import pytest
import torch

import focalkit as fk
from focalkit.backends import _ops, native
from focalkit.backends.eager import compute_dtype

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")

D = torch.float64


def _loss_and_grad(fn, x, *args, go=None, **kw):
    xx = x.clone().requires_grad_()
    out = fn(xx, *args, **kw)
    out.backward(torch.ones_like(out) if go is None else go)
    return out.detach(), xx.grad


def _same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert torch.equal(a.view(-1).view(torch.uint8) if a.dtype != torch.bfloat16 else a.view(torch.int16),
                       b.view(-1).view(torch.uint8) if b.dtype != torch.bfloat16 else b.view(torch.int16)), (a, b)


def _cases(*axes):
    """The product of the axes, less a normalizer with reduction="none" (refused by the losses)."""
    return [c for c in itertools.product(*axes) if not (c[-2] == "none" and c[-1] is not None)]


@pytest.mark.parametrize("dtype,alpha,pos_weight,sparse,reduction,normalizer", _cases(
    [torch.float32, D, torch.bfloat16], [None, 0.1, 1 / 3, "per-class"], [None, "one", "per-class"], [False, True],
    ["mean", "sum", "none"], [None, 3.7, "tensor"]))
def test_sigmoid_host_numbers_equal_the_registered_op(dtype, alpha, pos_weight, sparse, reduction, normalizer):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(23, 7, generator=g, dtype=D) * 4).to(dtype)
    y = torch.randint(0, 8, (23,), generator=g) if sparse else (torch.rand(23, 7, generator=g) < 0.3).to(dtype)
    a = torch.rand(7, generator=g, dtype=D).to(dtype) if alpha == "per-class" else alpha
    pw = {None: None, "one": torch.tensor([1.7], dtype=D),  # float64: rounded to float32 for float32 logits
          "per-class": torch.rand(7, generator=g, dtype=D) + 0.5}[pos_weight]
    norm = torch.tensor(2.9, dtype=D) if normalizer == "tensor" else normalizer
    go = torch.rand(23, 7, generator=g, dtype=D).to(dtype) if reduction == "none" else None
    kw = dict(alpha=a, gamma=1.5, pos_weight=pw, reduction=reduction, normalizer=norm)
    loss, grad = _loss_and_grad(fk.sigmoid_focal_loss, x, y, go=go, backend="native", **kw)

    ct = compute_dtype(dtype)
    apos, aneg, pwv = _ops.class_vectors(a, pw, 7, ct, x.device)
    den = fk._reduce.denominator(reduction, norm, x.numel(), torch.empty((), dtype=ct))
    op_loss, op_grad = torch.ops.focalkit.native_sigmoid_focal(
        x, y, None, apos, aneg, pwv, a is not None, _ops.per_class(a, pw), 0, 1.5, reduction, den)
    _same_bits(loss, op_loss)
    _same_bits(grad, op_grad if go is None else op_grad * go)


@pytest.mark.parametrize("view", ["neg", "transposed", "expanded"])
@pytest.mark.parametrize("sparse", [False, True])
def test_sigmoid_class_values_of_any_layout(view, sparse):
    """Per-class alpha and pos_weight as views whose memory is not their values in order (a neg view's
    memory holds their negation): the host path reads their values, as the contiguous copies give."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(9, 4, generator=g) * 3
    y = torch.randint(0, 5, (9,), generator=g) if sparse else (torch.rand(9, 4, generator=g) < 0.3).float()
    a, pw = torch.rand(4, generator=g), torch.rand(1, 4, generator=g) + 0.5
    views = {"neg": lambda t: torch._neg_view(-t), "transposed": lambda t: t.reshape(-1, 1).t().reshape(t.shape),
             "expanded": lambda t: t.reshape(-1)[:1].expand(t.shape)}
    for alpha, pos_weight in ((views[view](a), views[view](pw)), (views[view](a), None), (None, views[view](pw))):
        kw = dict(gamma=2.0, backend="native")
        got = _loss_and_grad(fk.sigmoid_focal_loss, x, y, alpha=alpha, pos_weight=pos_weight, **kw)
        plain = [None if t is None else torch.resolve_neg(t).clone() for t in (alpha, pos_weight)]
        want = _loss_and_grad(fk.sigmoid_focal_loss, x, y, alpha=plain[0], pos_weight=plain[1], **kw)
        for a_, b_ in zip(got, want):
            _same_bits(a_, b_)


@pytest.mark.parametrize("dtype,weight,targets,reduction,normalizer", _cases(
    [torch.float32, D, torch.bfloat16], [None, "float64"], ["indices", "ignored", "probabilities", "smoothed"],
    ["mean", "sum", "none"], [None, 3.7]))
def test_softmax_host_numbers_equal_the_registered_op(dtype, weight, targets, reduction, normalizer):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(19, 6, 3, generator=g, dtype=D) * 4).to(dtype)
    t = torch.randint(0, 6, (19, 3), generator=g)
    ls = 0.0
    if targets == "ignored":
        t[::4] = -100
    elif targets == "probabilities":
        t = torch.softmax(torch.randn(19, 6, 3, generator=g, dtype=D), 1).to(dtype)
    elif targets == "smoothed":
        ls = 0.1
    w = None if weight is None else torch.rand(6, generator=g, dtype=D) + 0.3
    go = torch.rand(19, 3, generator=g, dtype=D).to(dtype) if reduction == "none" else None
    kw = dict(gamma=2.0, weight=w, label_smoothing=ls, reduction=reduction, normalizer=normalizer)
    loss, grad = _loss_and_grad(fk.softmax_focal_loss, x, t, go=go, backend="native", **kw)

    den = _ops.softmax_denominator(x, t, w, -100, reduction, normalizer)
    op_loss, op_grad = torch.ops.focalkit.native_softmax_focal(x, t, w, 2.0, -100, ls, reduction, den)
    _same_bits(loss, op_loss)
    _same_bits(grad, op_grad if go is None else op_grad * go.unsqueeze(1))


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
@pytest.mark.parametrize("normalizer", [1e-50, "tensor", 1.0 + 2 ** -30])
def test_denominator_at_the_float32_edges_is_eagers_division(loss, normalizer):
    """A normalizer below float32's range rounds to 0 there: the loss and gradient are eager's x / 0
    (inf, or NaN for 0 / 0), not a Python ZeroDivisionError. A tensor normalizer that needs a gradient
    is read without a warning; an odd one rounds as eager rounds it."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 5, generator=g)
    y = (torch.rand(8, 5, generator=g) < 0.4).float() if loss == "sigmoid" else torch.randint(0, 5, (8,), generator=g)
    y[0] = 0  # a row of zero loss and gradient in the sigmoid case: 0 / 0
    fn = fk.sigmoid_focal_loss if loss == "sigmoid" else fk.softmax_focal_loss
    out = {}
    for backend in ("native", "eager"):
        norm = torch.tensor(1e-50, dtype=D, requires_grad=True) if normalizer == "tensor" else normalizer
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out[backend] = _loss_and_grad(fn, x, y, normalizer=norm, backend=backend)
    for got, want in zip(out["native"], out["eager"]):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0, equal_nan=True)
    if normalizer != 1.0 + 2 ** -30:
        assert torch.isinf(out["native"][0])


def test_a_plain_call_runs_the_kernel_without_the_registered_ops_body(monkeypatch):
    """The host path is the one taken on the CPU (the op's body, with its tensor arguments and checks, is
    for traced calls and ``torch.ops``); under ``make_fx`` the op is what the graph records."""
    def refuse(*args, **kwargs):
        raise AssertionError("the registered op's body ran on a plain call")

    x = torch.randn(6, 4, requires_grad=True)
    y, t = (torch.rand(6, 4) < 0.5).float(), torch.randint(0, 4, (6,))
    monkeypatch.setattr(native, "_sigmoid_impl", refuse)
    monkeypatch.setattr(native, "_softmax_impl", refuse)
    fk.sigmoid_focal_loss(x, y, backend="native").backward()
    fk.softmax_focal_loss(x, t, backend="native").backward()
    monkeypatch.undo()
    from torch.fx.experimental.proxy_tensor import make_fx
    gm = make_fx(lambda a, b: fk.softmax_focal_loss(a, b, backend="native"))(x.detach(), t)
    assert "native_softmax_focal" in gm.code


def test_round_float32_is_the_tensor_conversion():
    """The host denominator's rounding (no tensor op) is torch's float64 -> float32 conversion, bit for
    bit: ties, subnormals, the edge of the range (inf beyond it), signed zeros and NaN."""
    g = torch.Generator().manual_seed(4)
    wide = torch.ldexp(torch.rand(4000, generator=g, dtype=D), torch.randint(-160, 135, (4000,), generator=g))
    f32_max, ulp_at_max = 3.4028234663852886e38, 2.0 ** 104
    edges = [0.0, -0.0, 1 + 2 ** -24, 1 + 3 * 2 ** -24, 2 ** -149 * 1.5, 2 ** -149 * 2.5, 2 ** -150, 1e-46,
             f32_max, f32_max + ulp_at_max / 2 - 1e22, f32_max + ulp_at_max / 2, 3.5e38, -3.5e38, float("inf"),
             float("nan"), 1 / 3, 0.1, 1.0 + 2 ** -30]
    values = torch.cat([wide, -wide, torch.tensor(edges, dtype=D)])
    want = values.to(torch.float32).to(D)
    got = torch.tensor([fk._checks.round_float32(v) for v in values.tolist()], dtype=D)
    assert torch.equal(got.view(torch.int64)[~want.isnan()], want.view(torch.int64)[~want.isnan()])
    assert torch.equal(got.isnan(), want.isnan())
