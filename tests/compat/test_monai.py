"""focalkit.compat.monai against the installed MONAI: values, gradients, output dtype and shape, warnings
and errors over a grid of every argument MONAI's FocalLoss takes; the preset does not import MONAI."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import pytest
import torch

monai_losses = pytest.importorskip("monai.losses")

from focalkit.compat import monai as fkm  # noqa: E402

SHAPES = [(2, 3, 5, 4), (2, 3, 6), (4, 3)]
ALPHAS = [None, 0.3, "seq"]
WEIGHTS = [None, 2.0, "vec"]


def _target(shape, dtype, softmax, onehot, ignore, g):
    c = shape[1]
    if onehot:
        t = torch.randint(0, c, (shape[0], 1) + shape[2:], generator=g).to(dtype)
        if ignore == 255:
            t.view(-1)[::4] = 255
        return t
    t = torch.softmax(torch.randn(shape, generator=g, dtype=dtype), 1) if softmax \
        else torch.rand(shape, generator=g, dtype=dtype)
    t[:1] = (t[:1] > 0.5).to(dtype)  # hard and soft targets
    return t


def _run(loss, x, t):
    x = x.clone().requires_grad_()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            out = loss(x, t)
        except Exception as e:  # noqa: BLE001 - compared with the peer's
            return e, None, None, [str(m.message) for m in w]
    out.sum().backward()
    return None, out.detach(), x.grad, [str(m.message) for m in w]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("use_softmax", [False, True])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("to_onehot_y", [False, True])
@pytest.mark.parametrize("ignore_index", [None, 1, 255])
def test_focal_loss_equals_monai(dtype, use_softmax, include_background, to_onehot_y, ignore_index):
    g = torch.Generator().manual_seed(0)
    for shape, reduction, alpha, weight in itertools.product(SHAPES, ["none", "mean", "sum"], ALPHAS, WEIGHTS):
        cp = shape[1] - (0 if include_background else 1)
        kw = dict(include_background=include_background, to_onehot_y=to_onehot_y, gamma=1.5,
                  alpha=[0.2, 0.5, 0.7][:cp] if alpha == "seq" else alpha,
                  weight=[1.0, 2.0, 0.5][:cp] if weight == "vec" else weight, reduction=reduction,
                  use_softmax=use_softmax, ignore_index=ignore_index)
        x = torch.randn(shape, generator=g, dtype=dtype) * 3
        t = _target(shape, dtype, use_softmax, to_onehot_y, ignore_index, g)
        e1, r1, g1, w1 = _run(monai_losses.FocalLoss(**kw), x, t)
        e2, r2, g2, w2 = _run(fkm.FocalLoss(**kw), x, t)
        assert w1 == w2, kw
        if e1 is not None or e2 is not None:
            assert isinstance(e2, type(e1)), (kw, e1, e2)
            continue
        assert r1.shape == r2.shape and r1.dtype == r2.dtype, (kw, shape)
        torch.testing.assert_close(r2, r1, rtol=2e-5, atol=1e-6)
        torch.testing.assert_close(g2, g1, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("use_softmax", [False, True])
def test_gamma_and_half_inputs(gamma, use_softmax):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g) * 4
    t = torch.randint(0, 4, (2, 1, 8, 8), generator=g)
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        kw = dict(gamma=gamma, use_softmax=use_softmax, to_onehot_y=True)
        a = fkm.FocalLoss(**kw)(x.to(dtype), t)
        b = monai_losses.FocalLoss(**kw)(x.to(dtype), t)
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_finite_where_monai_softmax_gives_nan():
    """gamma < 1 with a saturated softmax: MONAI's (1 - p)^gamma differentiates to NaN; focalkit is finite
    and equals MONAI's value."""
    x = torch.tensor([[[40.0], [0.0], [0.0]]])
    t = torch.tensor([[[0]]])
    kw = dict(gamma=0.5, use_softmax=True, to_onehot_y=True)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = fkm.FocalLoss(**kw)(x1, t), monai_losses.FocalLoss(**kw)(x2, t)
    a.backward(), b.backward()
    torch.testing.assert_close(a, b)
    assert torch.isnan(x2.grad).any() and torch.isfinite(x1.grad).all()


def test_errors_where_monai_raises():
    x = torch.randn(2, 3, 4)
    for kw, t in ((dict(weight=[1.0, -1.0, 1.0]), torch.rand(2, 3, 4)), (dict(weight=[1.0, 2.0]), torch.rand(2, 3, 4)),
                  (dict(alpha=[0.1, 0.2]), torch.rand(2, 3, 4)), (dict(), torch.rand(2, 2, 4)),
                  (dict(to_onehot_y=True), torch.rand(2, 3, 4))):
        with pytest.raises(Exception) as theirs:
            monai_losses.FocalLoss(**kw)(x, t)
        with pytest.raises(type(theirs.value)):
            fkm.FocalLoss(**kw)(x, t)
    with pytest.raises(ValueError):
        fkm.FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match="target"):  # MONAI: an index error from scatter
        fkm.FocalLoss(to_onehot_y=True)(x, torch.full((2, 1, 4), 3))


def test_module_state_and_device_moves():
    loss = fkm.FocalLoss(weight=[1.0, 2.0, 3.0])
    assert loss.class_weight.tolist() == [1.0, 2.0, 3.0]
    assert "class_weight" in dict(loss.named_buffers())
    assert isinstance(loss, torch.nn.modules.loss._Loss) and loss.reduction == "mean"


def test_the_preset_does_not_import_monai():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.monai; "
                        "assert 'monai' not in sys.modules; print('OK')"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


def test_torchscript_raises_and_names_what_to_use():
    """Issue 19, item 12: MONAI's FocalLoss is scriptable, the preset is not; the error says what to use."""
    from focalkit.compat.monai import FocalLoss as Ours

    with pytest.raises(TypeError, match="torch.compile"):
        torch.jit.script(Ours())
