"""The presets under hostile inputs, no peer needed: every logits layout and integer label dtype gives
the same values and gradients; second order and target gradients; the first call of a fresh process
under torch.compile (fullgraph, static and dynamic)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import focalkit as fk
from focalkit.compat import kornia as ck, mmdet as cmm, monai as cm, smp as cs, ultralytics as cu, yolov5 as cy

D = torch.float64
_g = torch.Generator().manual_seed(0)
X = torch.randn(2, 3, 4, 5, generator=_g, dtype=D)
LAB = torch.randint(0, 3, (2, 4, 5), generator=_g)
ONEHOT = torch.nn.functional.one_hot(LAB, 3).movedim(-1, 1).to(D)
CASES = {
    "monai-sigmoid": lambda a, lab: cm.FocalLoss()(a, ONEHOT),
    "monai-softmax": lambda a, lab: cm.FocalLoss(use_softmax=True, to_onehot_y=True, ignore_index=1)(a, lab.unsqueeze(1)),
    "monai-softmax-none": lambda a, lab: cm.FocalLoss(use_softmax=True, reduction="none")(a, ONEHOT),
    "smp-multiclass": lambda a, lab: cs.FocalLoss("multiclass", ignore_index=2)(a, lab),
    "smp-multilabel": lambda a, lab: cs.FocalLoss("multilabel", normalized=True)(a, ONEHOT),
    "kornia": lambda a, lab: ck.focal_loss(a, lab, alpha=0.25, reduction="mean"),
}
LAYOUTS = {
    "contiguous": lambda t: t,
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "transposed": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
    "neg": lambda t: torch._neg_view(-t),
    "sliced": lambda t: torch.stack([t, t], -1)[..., 0],  # a stride-2 view into a larger buffer
    "expanded": lambda t: t[:, :, :1].expand(t.shape),  # a zero stride (different values: own reference)
}


def _run(fn, make, lab):
    """The loss of ``make(leaf)`` (the layout reaches the loss as it is; the gradient reaches the leaf)."""
    leaf = X.clone().requires_grad_()
    out = fn(make(leaf), lab)
    out.sum().backward()
    return out.detach(), leaf.grad


@pytest.mark.parametrize("name", CASES)
def test_every_layout_and_integer_label_dtype_agree(name):
    for layout, make in LAYOUTS.items():
        want, want_g = _run(CASES[name], lambda t: make(t).contiguous(), LAB)
        for dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            got, got_g = _run(CASES[name], make, LAB.to(dtype))
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=f"{layout} {dtype}")
            torch.testing.assert_close(got_g, want_g, rtol=1e-10, atol=1e-12, msg=f"{layout} {dtype}")


@pytest.mark.parametrize("name", [n for n in CASES if not n.startswith("monai")])
def test_second_order(name):
    assert gradgradcheck(lambda a: CASES[name](a, LAB), (X.clone().requires_grad_(),))


def test_monai_second_order_and_target_gradients_equal_the_main_api():
    """MONAI returns float32, as MONAI does (too coarse for finite differences): compared with the main
    API in float64 instead."""
    xa, xb = X.clone().requires_grad_(), X.clone().requires_grad_()
    (ga,) = torch.autograd.grad(cm.FocalLoss(use_softmax=True, to_onehot_y=True)(xa, LAB.unsqueeze(1)), xa,
                                create_graph=True)
    (gb,) = torch.autograd.grad(fk.softmax_focal_loss(xb, LAB, reduction="sum") / X.numel(), xb, create_graph=True)
    (ga ** 2).sum().backward()
    (gb ** 2).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-9)
    soft = ONEHOT.clamp(0.05, 0.95)
    y1, y2 = soft.clone().requires_grad_(), soft.clone().requires_grad_()
    cm.FocalLoss()(X, y1).backward()
    fk.sigmoid_focal_loss(X, y2, alpha=None, soft_target="signed").backward()
    torch.testing.assert_close(y1.grad, y2.grad, rtol=1e-6, atol=1e-9)


def test_detection_presets_second_order_and_target_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=D, requires_grad=True)
    q = torch.rand(6, 4, generator=g, dtype=D)
    scores = torch.rand(6, generator=g, dtype=D)
    labels = torch.tensor([0, 4, 1, 2, 4, 3])
    assert gradgradcheck(lambda a: cy.QFocalLoss(torch.nn.BCEWithLogitsLoss())(a, q), (x,))
    assert gradgradcheck(lambda a: cu.FocalLoss()(a, q), (x,))
    assert gradgradcheck(lambda a: cmm.QualityFocalLoss()(a, (labels, scores)), (x,))
    assert gradcheck(lambda a, y: cy.QFocalLoss(torch.nn.BCEWithLogitsLoss())(a, y),
                     (x, q.clamp(0.1, 0.9).requires_grad_()))
    assert gradcheck(lambda a, y: cs.FocalLoss("multilabel")(a, y), (x, q.clamp(0.1, 0.9).requires_grad_()))


def test_first_call_of_a_fresh_process_under_compile():
    code = textwrap.dedent("""
        import torch, warnings
        warnings.simplefilter("ignore")
        import focalkit as fk
        from focalkit.compat import kornia as ck, monai as cm
        x = torch.randn(2, 3, 8, 8); lab = torch.randint(0, 3, (2, 8, 8)); y = torch.rand(2, 3, 8, 8)
        def f(a):
            return (fk.sigmoid_focal_loss(a, y, soft_target="signed") + fk.sigmoid_focal_loss(a, y, soft_target="bce")
                    + fk.quality_focal_loss(a, y) + fk.softmax_focal_loss(a, lab)
                    + cm.FocalLoss(use_softmax=True, to_onehot_y=True)(a, lab.unsqueeze(1))
                    + ck.focal_loss(a, lab, 0.25, reduction="mean"))
        for dyn in (False, True):
            c = torch.compile(f, fullgraph=True, dynamic=dyn)
            a1, a2 = x.clone().requires_grad_(), x.clone().requires_grad_()
            o1, o2 = c(a1), f(a2)
            o1.backward(); o2.backward()
            assert torch.allclose(o1, o2, rtol=1e-5), dyn
            assert torch.allclose(a1.grad, a2.grad, rtol=1e-4, atol=1e-7), dyn
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


# ---- torchvision's own error checks (issue 19, item 10): its tests match these regexes ----------
# (torchvision's test/test_ops.py: TestFocalLoss.test_reduction_mode and the reduction="xyz" cases of
# the GIoU / DIoU / CIoU loss tests use match="Invalid"; the messages below are torchvision 0.29's)

def _tv_boxes():
    b1 = torch.tensor([[-1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    return b1, b1 + 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_torchvision_preset_reduction_error_is_torchvisions(dtype):
    from focalkit.compat import torchvision as tvp

    x, y = torch.randn(6, 2, dtype=dtype), torch.randint(0, 2, (6, 2)).to(dtype)
    with pytest.raises(ValueError, match="Invalid") as info:
        tvp.sigmoid_focal_loss(x, y, 0.25, 2, "xyz")
    assert str(info.value) == "Invalid Value for arg 'reduction': 'xyz \n Supported reduction modes: 'none', 'mean', 'sum'"
    b1, b2 = _tv_boxes()
    for fn in (tvp.generalized_box_iou_loss, tvp.distance_box_iou_loss, tvp.complete_box_iou_loss):
        with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
            fn(b1.to(dtype), b2.to(dtype), reduction="xyz")


@pytest.mark.parametrize("alpha", [-0.5, 1.5, -2.0])
def test_torchvision_preset_alpha_error_is_torchvisions(alpha):
    from focalkit.compat import torchvision as tvp

    with pytest.raises(ValueError, match=r"Invalid alpha value: .*alpha must be in the range \[0,1\] or -1 for ignore"):
        tvp.sigmoid_focal_loss(torch.randn(4, 2), torch.ones(4, 2), alpha=alpha)
    # -1 switches the weighting off (torchvision's rule), 0 and 1 are weights
    for ok in (-1.0, 0.0, 1.0):
        assert torch.isfinite(tvp.sigmoid_focal_loss(torch.randn(4, 2), torch.ones(4, 2), alpha=ok)).all()


def test_torchvision_preset_errors_survive_scripting():
    from focalkit.compat import torchvision as tvp

    scripted = torch.jit.script(tvp.sigmoid_focal_loss)
    with pytest.raises(Exception, match="Invalid Value for arg 'reduction'"):
        scripted(torch.randn(4, 2), torch.ones(4, 2), 0.25, 2.0, "xyz")


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchwise_mean"])
@pytest.mark.parametrize("extra", [{}, {"normalized": True}, {"reduced_threshold": 0.5}, {"alpha": 0.25}], ids=str)
def test_smp_binary_ignore_index_is_the_kept_elements_without_boolean_indexing(reduction, extra):
    """SMP's binary mode drops the ignored elements by boolean indexing (a host read of their count on
    CUDA); the preset weights them 0. Same value and gradient as the loss of the kept elements alone,
    the ignored ones' gradient 0, and a NaN logit there stays out, as in SMP."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 6, 5, generator=g, dtype=D) * 3
    t = torch.rand(2, 1, 6, 5, generator=g, dtype=D).round()
    t.view(-1)[::4] = 255
    keep = t != 255
    x_bad = x.clone()
    x_bad[~keep] = float("nan")
    a, b = x_bad.clone().requires_grad_(), x.clone().requires_grad_()
    got = cs.FocalLoss("binary", ignore_index=255, reduction=reduction, **extra)(a, t)
    want = cs.FocalLoss("binary", reduction=reduction, **extra)(b[keep], t[keep])  # SMP's filtering, by hand
    got.backward(), want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(a.grad, b.grad)  # b's gradient is 0 where ignored: it never saw those
    assert a.grad[~keep].eq(0).all()
    everything = cs.FocalLoss("binary", ignore_index=255, reduction=reduction, **extra)(x, torch.full_like(t, 255))
    assert everything.item() == 0  # nothing kept: 0 (SMP: NaN for the mean)
