"""focalkit.compat.fvcore against the installed fvcore, and scripted."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

fvcore_nn = pytest.importorskip("fvcore.nn")

from focalkit.compat import fvcore as fkf  # noqa: E402


def _both(ours, theirs, *args, grad_arg=0):
    a_in = [t.clone().requires_grad_() if i == grad_arg else t for i, t in enumerate(args[:2])] + list(args[2:])
    b_in = [t.clone().requires_grad_() if i == grad_arg else t for i, t in enumerate(args[:2])] + list(args[2:])
    a, b = ours(*a_in), theirs(*b_in)
    assert a.dtype == b.dtype
    torch.testing.assert_close(a, b)
    (a.sum() if a.dim() else a).backward()
    (b.sum() if b.dim() else b).backward()
    # fvcore computes in float32 whatever the input: float32 rounding, also for float64 inputs' gradients
    torch.testing.assert_close(a_in[grad_arg].grad, b_in[grad_arg].grad, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [-1.0, 0.25])
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_sigmoid_focal_loss_equals_fvcore(dtype, alpha, gamma, reduction, soft):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=dtype) * 3
    y = torch.rand(7, 5, generator=g, dtype=dtype)
    y = y if soft else (y > 0.6).to(dtype)
    _both(fkf.sigmoid_focal_loss, fvcore_nn.sigmoid_focal_loss, x, y, alpha, gamma, reduction)
    if not soft:  # FL*: fvcore's 2t - 1 scaling is not a soft-target definition (docs/compat.md)
        _both(fkf.sigmoid_focal_loss_star, fvcore_nn.sigmoid_focal_loss_star, x, y, alpha, gamma, reduction)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_giou_equals_fvcore(reduction):
    g = torch.Generator().manual_seed(1)
    b1 = torch.rand(9, 2, generator=g, dtype=torch.float64) * 5
    b1 = torch.cat([b1, b1 + torch.rand(9, 2, generator=g, dtype=torch.float64) * 3 + 0.1], 1)
    b2 = torch.rand(9, 2, generator=g, dtype=torch.float64) * 5
    b2 = torch.cat([b2, b2 + torch.rand(9, 2, generator=g, dtype=torch.float64) * 3 + 0.1], 1)
    _both(fkf.giou_loss, fvcore_nn.giou_loss, b1, b2, reduction)
    with pytest.raises(ValueError, match="boxes1"):
        fkf.giou_loss(b1[:, [2, 3, 0, 1]], b2)


def test_jit_names_are_scripted_and_equal():
    x, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    assert isinstance(fkf.sigmoid_focal_loss_jit, torch.jit.ScriptFunction)
    torch.testing.assert_close(fkf.sigmoid_focal_loss_jit(x, y, 0.25, 2.0, "mean"),
                               fvcore_nn.sigmoid_focal_loss_jit(x, y, 0.25, 2.0, "mean"))
    torch.testing.assert_close(fkf.sigmoid_focal_loss_star_jit(x, y, -1.0, 1.0, "sum"),
                               fvcore_nn.sigmoid_focal_loss_star_jit(x, y, -1.0, 1.0, "sum"))


def test_gamma_below_1_keeps_finite_gradients_where_fvcore_is_nan():
    x = torch.tensor([30.0, -30.0]).requires_grad_()
    y = torch.tensor([1.0, 0.0])
    fkf.sigmoid_focal_loss(x, y, 0.25, 0.5, "sum").backward()
    assert torch.isfinite(x.grad).all()


def test_the_presets_do_not_import_their_peers():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.fvcore, focalkit.compat.torchvision; "
                        "assert 'fvcore' not in sys.modules and 'torchvision' not in sys.modules; print('OK')"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


def test_torchvision_preset_is_scriptable():
    from focalkit.compat import torchvision as fkt

    s = torch.jit.script(fkt.sigmoid_focal_loss)
    x, y = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    torch.testing.assert_close(s(x, y, 0.25, 2.0, "mean"), fkt.sigmoid_focal_loss(x, y, reduction="mean"))
    for name in ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"):
        torch.jit.script(getattr(fkt, name))
