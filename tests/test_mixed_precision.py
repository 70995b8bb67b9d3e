"""Mixed precision (issue 19, items 4 and 5): the dtype rule of docs/api.md, "Mixed precision".

* A reduced loss (``mean``, ``sum``, a ``normalizer``) of float16 / bfloat16 logits is float32, on
  every backend, inside and outside ``torch.autocast``: it never overflows float16's 65,504 into inf.
* Under ``torch.autocast`` every loss is float32, ``reduction="none"`` included, as torch's own losses
  (``F.cross_entropy``, BCE) on autocast's float32 list; the presets return their peers' dtypes.
* The gradient stays in the logits' dtype, and a float32 ``grad_output`` beyond float16's range
  (GradScaler's 2^16) is applied in float32.

Tested at the boundary: sums just above 65,504 (finite, equal to float64) and outside autocast."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import focalkit as fk
from device import DEVICE
from focalkit.backends import native, triton
from focalkit.compat import kornia as fk_kornia
from focalkit.compat import torchvision as fk_tv

BACKENDS = ["eager"] + (["native"] if native.available() else []) + \
    (["triton"] if triton.unsupported(torch.zeros(1, device=DEVICE)) is None else [])
HALF = [torch.float16, torch.bfloat16]
N, C = 6000, 5  # sums of N·C large terms: past float16's largest value, 65,504


def _dev(backend):
    return DEVICE if backend == "triton" else "cpu"


def _data(dev, shift):
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, C, (N,), generator=g)
    y = F.one_hot(lab, C).float()
    # confidently wrong: every term is large (about |x| · alpha_t), so the sum crosses 65,504
    x = torch.where(y > 0, -shift, shift) + torch.randn(N, C, generator=g)
    return x.to(dev), y.to(dev), lab.to(dev)


def _kernel_losses(b):
    """name -> f(x, y, lab, reduction): every loss with a kernel, and the losses built on one."""
    return {
        "sigmoid": lambda x, y, lab, r: fk.sigmoid_focal_loss(x, y, reduction=r, backend=b),
        "sigmoid-sparse": lambda x, y, lab, r: fk.sigmoid_focal_loss(x, lab, reduction=r, backend=b),
        "sigmoid-soft": lambda x, y, lab, r: fk.sigmoid_focal_loss(x, y * 0.9, soft_target="linear", reduction=r,
                                                                  backend=b),
        "softmax": lambda x, y, lab, r: fk.softmax_focal_loss(x, lab, reduction=r, backend=b),
        "softmax-dense": lambda x, y, lab, r: fk.softmax_focal_loss(x, y, reduction=r, backend=b),
        "qfl": lambda x, y, lab, r: fk.quality_focal_loss(x, y * 0.8, reduction=r, backend=b),
    }


def _eager_losses():
    return {
        "focal-star": lambda x, y, lab, r: fk.focal_loss_star(x, y, reduction=r),
        "varifocal": lambda x, y, lab, r: fk.varifocal_loss(x, y * 0.8, reduction=r),
        "asymmetric": lambda x, y, lab, r: fk.asymmetric_loss(x, y, reduction=r),
        "poly1-focal": lambda x, y, lab, r: fk.poly1_focal_loss(x, y, reduction=r),
        "poly1-ce": lambda x, y, lab, r: fk.poly1_cross_entropy(x, lab, reduction=r),
        "dfl": lambda x, y, lab, r: fk.distribution_focal_loss(x, lab.double() * 0.7, reduction=r),
    }


def _combos():
    out = [(b, n) for b in BACKENDS for n in _kernel_losses(b)]
    return out + [("eager", n) for n in _eager_losses()]


def _loss(backend, name):
    return {**_kernel_losses(backend), **_eager_losses()}[name]


def _autocast(dev, dtype, on):
    return torch.autocast(dev, dtype=dtype) if on else contextlib.nullcontext()


@pytest.mark.parametrize("backend, name", _combos())
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("autocast", [False, True])
def test_reduced_losses_are_float32_and_finite_past_65504(backend, name, dtype, autocast):
    dev = _dev(backend)
    f = _loss(backend, name)
    x, y, lab = _data(dev, 12.0)
    xh = x.to(dtype)
    # the same (rounded) logits and targets in float64, on the CPU's eager backend
    ref = _loss("eager", name)(xh.cpu().double(), y.to(dtype).cpu().double(), lab.cpu(), "sum")
    assert ref > 65504, "the case must cross float16's largest value"
    with _autocast(dev, dtype, autocast):
        total = f(xh, y.to(dtype), lab, "sum")
        mean = f(xh, y.to(dtype), lab, "mean")
    assert total.dtype == mean.dtype == torch.float32
    torch.testing.assert_close(total.cpu().double(), ref, rtol=2e-3 if dtype == torch.float16 else 1e-2, atol=0)
    assert torch.isfinite(mean)


@pytest.mark.parametrize("backend, name", _combos())
@pytest.mark.parametrize("dtype", HALF)
def test_unreduced_losses_float32_under_autocast_input_dtype_outside(backend, name, dtype):
    dev = _dev(backend)
    f = _loss(backend, name)
    x, y, lab = _data(dev, 2.0)
    xh = x.to(dtype).requires_grad_()
    assert f(xh, y.to(dtype), lab, "none").dtype == dtype
    with torch.autocast(dev, dtype=dtype):
        out = f(xh, y.to(dtype), lab, "none")
    assert out.dtype == torch.float32
    # computed from the logits cast to float32, as autocast casts the inputs of torch's own losses
    torch.testing.assert_close(out, f(xh.detach().float(), y.to(dtype), lab, "none"))
    out.sum().backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad).all()


@pytest.mark.parametrize("backend, name", _combos())
def test_float32_grad_output_beyond_float16_is_applied_in_float32(backend, name):
    """GradScaler multiplies the float32 loss by 2^16, which is inf in float16."""
    dev = _dev(backend)
    f = _loss(backend, name)
    x, y, lab = _data(dev, 2.0)
    xh = x.to(torch.float16).requires_grad_()
    xd = xh.detach().cpu().double().requires_grad_()
    (f(xh, y.half(), lab, "mean") * 65536.0).backward()
    (_loss("eager", name)(xd, y.half().cpu().double(), lab.cpu(), "mean") * 65536.0).backward()
    assert torch.isfinite(xh.grad).all()
    torch.testing.assert_close(xh.grad.cpu().double(), xd.grad, rtol=1e-2, atol=1e-2)  # ~2 per element


def test_the_rule_matches_torch_under_autocast():
    """Under autocast, focalkit's dtypes are torch's: BCE and cross-entropy's, for each reduction."""
    x = torch.randn(8, C).half()
    y = (torch.rand(8, C) < 0.3).half()
    lab = torch.randint(0, C, (8,))
    with torch.autocast("cpu", dtype=torch.float16):
        for r in ("none", "mean", "sum"):
            assert fk.sigmoid_focal_loss(x, y, reduction=r).dtype == \
                F.binary_cross_entropy_with_logits(x, y, reduction=r).dtype
            assert fk.softmax_focal_loss(x, lab, reduction=r).dtype == F.cross_entropy(x, lab, reduction=r).dtype


def _tv_formula(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss, as written there (its dtype under autocast is the point)."""
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", HALF)
def test_presets_return_their_peers_dtypes_under_autocast(reduction, dtype):
    x, y, lab = _data("cpu", 12.0)
    xh, yh = x.to(dtype), y.to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        ours = fk_tv.sigmoid_focal_loss(xh, yh, reduction=reduction)
        peer = _tv_formula(xh, yh, reduction=reduction)
        assert ours.dtype == peer.dtype == torch.float32
        torch.testing.assert_close(ours, peer, rtol=2e-2, atol=1e-3)
        assert torch.isfinite(ours).all()
        assert fk_kornia.focal_loss(xh, lab, alpha=0.25, reduction=reduction).dtype == torch.float32
        assert fk_kornia.binary_focal_loss_with_logits(xh, yh, reduction=reduction).dtype == torch.float32


def test_presets_against_kornia_itself_under_autocast():
    """kornia's own losses under autocast: float32 on CUDA (its softmax and BCE are on CUDA autocast's
    float32 list), the half dtype on the CPU (CPU autocast's list differs). The presets are float32 on
    both (docs/compat.md) and equal kornia's values where kornia's are finite."""
    kornia = pytest.importorskip("kornia")
    x, y, lab = _data(DEVICE, 3.0)
    for dtype in HALF:
        xh, yh = x.to(dtype), y.to(dtype)
        with torch.autocast(DEVICE, dtype=dtype):
            for r in ("none", "mean", "sum"):
                for peer, ours in ((kornia.losses.focal_loss(xh, lab, alpha=0.25, reduction=r),
                                    fk_kornia.focal_loss(xh, lab, alpha=0.25, reduction=r)),
                                   (kornia.losses.binary_focal_loss_with_logits(xh, yh, alpha=0.25, reduction=r),
                                    fk_kornia.binary_focal_loss_with_logits(xh, yh, alpha=0.25, reduction=r))):
                    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
                    if DEVICE == "cuda":
                        assert peer.dtype == torch.float32
                    torch.testing.assert_close(ours, peer.float(), rtol=2e-2, atol=2e-2)


def _presets():
    """Every preset whose loss runs on a kernel (or is built on one), called as its peer is."""
    from focalkit.compat import fvcore as c_fv
    from focalkit.compat import mmdet as c_mm
    from focalkit.compat import monai as c_mo
    from focalkit.compat import smp as c_smp
    from focalkit.compat import transformers as c_hf
    from focalkit.compat import ultralytics as c_ul
    from focalkit.compat import yolov5 as c_y5

    return {
        "torchvision": lambda x, y, lab: fk_tv.sigmoid_focal_loss(x, y, reduction="sum"),
        "fvcore": lambda x, y, lab: c_fv.sigmoid_focal_loss(x, y, alpha=0.25, reduction="sum"),
        "kornia": lambda x, y, lab: fk_kornia.focal_loss(x, lab, alpha=0.25, reduction="sum"),
        "kornia-binary": lambda x, y, lab: fk_kornia.binary_focal_loss_with_logits(x, y, reduction="sum"),
        "monai": lambda x, y, lab: c_mo.FocalLoss(reduction="sum")(x, y),
        "monai-softmax": lambda x, y, lab: c_mo.FocalLoss(use_softmax=True, reduction="sum")(x, y),
        "smp": lambda x, y, lab: c_smp.FocalLoss("multiclass")(x, lab) * x.shape[0],
        "mmdet": lambda x, y, lab: c_mm.FocalLoss(reduction="sum")(x, lab),
        "mmdet-qfl": lambda x, y, lab: c_mm.QualityFocalLoss(reduction="sum")(x, (lab, y.max(1).values * 0.8)),
        "ultralytics": lambda x, y, lab: c_ul.FocalLoss()(x, y) * x.shape[1],
        "yolov5": lambda x, y, lab: c_y5.FocalLoss(torch.nn.BCEWithLogitsLoss(reduction="sum"))(x, y),
        "transformers": lambda x, y, lab: c_hf.grounding_dino_sigmoid_focal_loss(x, y, 1),
    }


SMALL_SUMS = ("monai", "monai-softmax")  # MONAI's "sum" is not over every element: its dtype is checked


@pytest.mark.parametrize("name", list(_presets()))
@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("autocast", [False, True])
def test_every_kernel_preset_sums_in_float32_past_65504(name, dtype, autocast):
    """Item 5: the presets follow the rule, so a sum past float16's range stays finite, in float32."""
    f = _presets()[name]
    x, y, lab = _data("cpu", 12.0)
    x, y, lab = torch.cat([x, x]), torch.cat([y, y]), torch.cat([lab, lab])
    xh, yh = x.to(dtype), y.to(dtype)
    ref = f(xh.double(), yh.double(), lab).double()
    assert name in SMALL_SUMS or ref > 65504, f"{name}: the case must cross float16's largest value ({float(ref)})"
    with _autocast("cpu", dtype, autocast):
        out = f(xh, yh, lab)
    assert out.dtype == torch.float32 and torch.isfinite(out), (out.dtype, out)
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=1e-3)
