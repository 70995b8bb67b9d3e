"""No host read and no device mix in any loss or preset, forward and backward (issue 18, goal 2), in CI.

Meta tensors have a shape, a dtype and a device but no memory. Every read of a value on the host
(``.item()``, ``bool()``, ``.tolist()``, a shape that depends on values) raises on them. On CUDA, each
such read would be a device synchronisation, and CUDA-graph capture refuses it. Mixing a meta tensor
with a CPU tensor other than a 0-dim scalar raises too, as on CUDA.

So every public loss and every compat preset runs here on meta inputs, forward and backward, with the
options that build tensors inside (alpha vectors, ``pos_weight``, ignore indices, label smoothing,
normalizers). The GPU script checks ten kernel losses under ``torch.cuda.set_sync_debug_mode("error")``
and CUDA-graph capture (``tests/test_gpu_scenarios.py``). This test reaches every entry point, on every
machine. Content checks run only on readable CPU tensors (``_checks.can_read``), so they skip meta
inputs just as they skip CUDA ones.

The coverage tests below fail when a loss or preset is added without a case here."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import focalkit as fk
from device import ON_GPU

N, C, H, W = 8, 5, 3, 4
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


_MODULES: dict = {}


def once(key: str, make: Callable) -> Callable:
    """A loss module made and moved to the device once, as a training script does, then reused."""
    if (key, ON[0]) not in _MODULES:
        _MODULES[key, ON[0]] = make().to(ON[0])
    return _MODULES[key, ON[0]]


# The device the steps run on: meta here; CUDA in the GPU script's test at the end (zeros there: valid
# class indices and finite values, which a sync check does not need but a CUDA context must survive).
ON = ["meta"]


def dev(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(shape, device=ON[0], dtype=dtype)


def idx(*shape: int) -> torch.Tensor:
    return dev(*shape, dtype=torch.int64)


# name -> (logits shape, loss(logits, dtype)); each name is the public one it calls (a suffix after "/").
API: dict[str, tuple[tuple, Callable]] = {
    "sigmoid_focal_loss": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C, dtype=d))),
    "sigmoid_focal_loss/alpha-pos_weight-weight": ((N, C), lambda x, d: fk.sigmoid_focal_loss(
        x, dev(N, C), alpha=dev(C), pos_weight=dev(C), weight=dev(N, 1), reduction="sum", normalizer=dev())),
    "sigmoid_focal_loss/positives": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), normalizer="positives")),
    "sigmoid_focal_loss/indices": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, idx(N), alpha=0.25,
                                                                              normalizer="positives")),
    "sigmoid_focal_loss/ignore-none": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), ignore_index=-1,
                                                                                  reduction="none")),
    "sigmoid_focal_loss/soft": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), soft_target="bce")),
    "softmax_focal_loss": ((N, C), lambda x, d: fk.softmax_focal_loss(x, idx(N))),
    "softmax_focal_loss/nd-ignore": ((2, C, H, W), lambda x, d: fk.softmax_focal_loss(x, idx(2, H, W),
                                                                                      ignore_index=255)),
    "softmax_focal_loss/alpha-smoothing-weight": ((N, C), lambda x, d: fk.softmax_focal_loss(
        x, idx(N), alpha=[0.2] * C, label_smoothing=0.1, weight=dev(C))),
    "softmax_focal_loss/alpha-number-probabilities": ((N, C), lambda x, d: fk.softmax_focal_loss(
        x, dev(N, C), alpha=0.25)),
    "softmax_focal_loss/flsd53-none": ((N, C), lambda x, d: fk.softmax_focal_loss(x, idx(N), gamma=fk.flsd53_gamma,
                                                                                  reduction="none")),
    "softmax_focal_loss/gamma-schedule-number": ((N, C), lambda x, d: fk.softmax_focal_loss(x, idx(N),
                                                                                          gamma=lambda p: 2.0)),
    "focal_loss_star": ((N, C), lambda x, d: fk.focal_loss_star(x, dev(N, C), alpha=0.25)),
    "quality_focal_loss": ((N, C), lambda x, d: fk.quality_focal_loss(x, dev(N, C))),
    "quality_focal_loss/labels-scores": ((N, C), lambda x, d: fk.quality_focal_loss(x, (idx(N), dev(N)),
                                                                                    weight=dev(N, 1))),
    "varifocal_loss": ((N, C), lambda x, d: fk.varifocal_loss(x, dev(N, C), labels=dev(N, C))),
    "distribution_focal_loss": ((N, 17), lambda x, d: fk.distribution_focal_loss(x, dev(N), weight=dev(N))),
    "asymmetric_loss": ((N, C), lambda x, d: fk.asymmetric_loss(x, dev(N, C), clip=0.05)),
    "poly1_cross_entropy": ((N, C), lambda x, d: fk.poly1_cross_entropy(x, idx(N), weight=dev(C))),
    "poly1_focal_loss": ((N, C), lambda x, d: fk.poly1_focal_loss(x, dev(N, C))),
    "iou_loss": ((N, 4), lambda x, d: fk.iou_loss(x, dev(N, 4), weight=dev(N))),
    "giou_loss": ((N, 4), lambda x, d: fk.giou_loss(x, dev(N, 4))),
    "diou_loss": ((N, 4), lambda x, d: fk.diou_loss(x, dev(N, 4))),
    "ciou_loss": ((N, 4), lambda x, d: fk.ciou_loss(x, dev(N, 4))),
    "eiou_loss": ((N, 4), lambda x, d: fk.eiou_loss(x, dev(N, 4))),
    "focal_eiou_loss": ((N, 4), lambda x, d: fk.focal_eiou_loss(x, dev(N, 4))),
    "focal_l1_loss": ((N, 4), lambda x, d: fk.focal_l1_loss(x, dev(N, 4))),
    "SigmoidFocalLoss": ((N, C), lambda x, d: once("sig", lambda: fk.SigmoidFocalLoss(
        alpha=torch.full((C,), 0.25), pos_weight=torch.ones(C)))(x, dev(N, C))),
    "SoftmaxFocalLoss": ((N, C), lambda x, d: once("soft", lambda: fk.SoftmaxFocalLoss(
        alpha=[0.25] * C, weight=torch.ones(C)))(x, idx(N))),
    "FocalLossStar": ((N, C), lambda x, d: fk.FocalLossStar()(x, dev(N, C))),
    "QualityFocalLoss": ((N, C), lambda x, d: fk.QualityFocalLoss()(x, dev(N, C))),
    "VarifocalLoss": ((N, C), lambda x, d: fk.VarifocalLoss()(x, dev(N, C))),
    "DistributionFocalLoss": ((N, 17), lambda x, d: fk.DistributionFocalLoss()(x, dev(N))),
    "AsymmetricLoss": ((N, C), lambda x, d: fk.AsymmetricLoss()(x, dev(N, C))),
    "Poly1CrossEntropyLoss": ((N, C), lambda x, d: fk.Poly1CrossEntropyLoss()(x, idx(N))),
    "Poly1FocalLoss": ((N, C), lambda x, d: fk.Poly1FocalLoss()(x, dev(N, C))),
    "IoULoss": ((N, 4), lambda x, d: fk.IoULoss()(x, dev(N, 4))),
    "GIoULoss": ((N, 4), lambda x, d: fk.GIoULoss()(x, dev(N, 4))),
    "DIoULoss": ((N, 4), lambda x, d: fk.DIoULoss()(x, dev(N, 4))),
    "CIoULoss": ((N, 4), lambda x, d: fk.CIoULoss()(x, dev(N, 4))),
    "EIoULoss": ((N, 4), lambda x, d: fk.EIoULoss()(x, dev(N, 4))),
    "FocalEIoULoss": ((N, 4), lambda x, d: fk.FocalEIoULoss()(x, dev(N, 4))),
    "FocalL1Loss": ((N, 4), lambda x, d: fk.FocalL1Loss()(x, dev(N, 4))),
    "FocalLoss": ((N, C), lambda x, d: fk.FocalLoss(torch.nn.BCEWithLogitsLoss(
        pos_weight=dev(1)))(x, dev(N, C))),
    "QFocalLoss": ((N, C), lambda x, d: fk.QFocalLoss(torch.nn.BCEWithLogitsLoss())(x, dev(N, C))),
}
# helpers, not losses: class counts -> weights (host numbers by design), a gamma schedule, calibration metrics
NOT_LOSSES = {"__version__", "class_balanced_weights", "flsd53_gamma", "expected_calibration_error",
              "focal_calibration_map"}


def _presets() -> dict[str, tuple[tuple, Callable]]:
    from focalkit.compat import fvcore, kornia, mmdet, monai, smp, torchvision, transformers, ultralytics, yolov5

    seg, onehot = (2, C, H, W), (2, 1, H, W)
    return {
        "fvcore.sigmoid_focal_loss": ((N, C), lambda x, d: fvcore.sigmoid_focal_loss(x, dev(N, C), alpha=0.25)),
        "fvcore.sigmoid_focal_loss_star": ((N, C), lambda x, d: fvcore.sigmoid_focal_loss_star(x, dev(N, C))),
        "fvcore.sigmoid_focal_loss_jit": ((N, C), lambda x, d: fvcore.sigmoid_focal_loss_jit(x, dev(N, C))),
        "fvcore.sigmoid_focal_loss_star_jit": ((N, C), lambda x, d: fvcore.sigmoid_focal_loss_star_jit(
            x, dev(N, C))),
        "fvcore.giou_loss": ((N, 4), lambda x, d: fvcore.giou_loss(x, dev(N, 4))),
        "kornia.focal_loss": (seg, lambda x, d: kornia.focal_loss(x, idx(2, H, W), alpha=0.25, weight=dev(C))),
        "kornia.focal_loss/none": (seg, lambda x, d: kornia.focal_loss(x, idx(2, H, W), alpha=None)),
        "kornia.FocalLoss": ((N, C), lambda x, d: kornia.FocalLoss(alpha=0.5, reduction="mean")(x, idx(N))),
        "kornia.binary_focal_loss_with_logits": ((N, C), lambda x, d: kornia.binary_focal_loss_with_logits(
            x, dev(N, C), pos_weight=dev(C), weight=dev(C), reduction="mean")),
        "kornia.BinaryFocalLossWithLogits": ((N, C), lambda x, d: kornia.BinaryFocalLossWithLogits(
            alpha=0.25, reduction="sum")(x, dev(N, C))),
        "monai.FocalLoss": (seg, lambda x, d: monai.FocalLoss(weight=[1.0, 2, 3, 4, 5], alpha=0.25)(x, dev(*seg))),
        "monai.FocalLoss/softmax-onehot-ignore": (seg, lambda x, d: monai.FocalLoss(
            use_softmax=True, to_onehot_y=True, include_background=False, alpha=[0.1, 0.2, 0.3, 0.4],
            weight=[1.0, 2, 3, 4], ignore_index=255)(x, dev(*onehot))),
        "monai.FocalLoss/sigmoid-ignore": (seg, lambda x, d: monai.FocalLoss(ignore_index=0)(x, dev(*seg))),
        "smp.FocalLoss/binary": ((2, 1, H, W), lambda x, d: smp.FocalLoss("binary", alpha=0.25, ignore_index=255)(
            x, dev(2, 1, H, W))),
        "smp.FocalLoss/multiclass": (seg, lambda x, d: smp.FocalLoss(
            "multiclass", ignore_index=255, class_weights=[1.0] * C, normalized=True)(x, idx(2, H, W))),
        "smp.FocalLoss/multilabel": (seg, lambda x, d: smp.FocalLoss("multilabel", reduced_threshold=0.5)(
            x, dev(*seg))),
        "torchvision.sigmoid_focal_loss": ((N, C), lambda x, d: torchvision.sigmoid_focal_loss(
            x, dev(N, C), reduction="mean")),
        "torchvision.generalized_box_iou_loss": ((N, 4), lambda x, d: torchvision.generalized_box_iou_loss(
            x, dev(N, 4))),
        "torchvision.distance_box_iou_loss": ((N, 4), lambda x, d: torchvision.distance_box_iou_loss(x, dev(N, 4))),
        "torchvision.complete_box_iou_loss": ((N, 4), lambda x, d: torchvision.complete_box_iou_loss(x, dev(N, 4))),
        "transformers.sigmoid_focal_loss": ((2, N, C), lambda x, d: transformers.sigmoid_focal_loss(
            x, dev(2, N, C), num_boxes=dev())),
        "transformers.deformable_detr_sigmoid_focal_loss": ((2, N, C), lambda x, d:
            transformers.deformable_detr_sigmoid_focal_loss(x, dev(2, N, C), num_boxes=3)),
        "transformers.grounding_dino_sigmoid_focal_loss": ((2, N, C), lambda x, d:
            transformers.grounding_dino_sigmoid_focal_loss(x, dev(2, N, C), num_boxes=3)),
        "ultralytics.FocalLoss": ((N, C), lambda x, d: ultralytics.FocalLoss(alpha=[0.1, 0.2, 0.3, 0.4, 0.5])(
            x, dev(N, C))),
        "ultralytics.VarifocalLoss": ((N, C), lambda x, d: ultralytics.VarifocalLoss()(x, dev(N, C), dev(N, C))),
        "ultralytics.DFLoss": ((N, 16), lambda x, d: ultralytics.DFLoss(16)(x, dev(N))),
        "yolov5.FocalLoss": ((N, C), lambda x, d: yolov5.FocalLoss(torch.nn.BCEWithLogitsLoss())(x, dev(N, C))),
        "yolov5.QFocalLoss": ((N, C), lambda x, d: yolov5.QFocalLoss(torch.nn.BCEWithLogitsLoss())(x, dev(N, C))),
        "mmdet.FocalLoss": ((N, C), lambda x, d: mmdet.FocalLoss()(x, idx(N), weight=dev(N), avg_factor=dev())),
        "mmdet.QualityFocalLoss": ((N, C), lambda x, d: mmdet.QualityFocalLoss()(x, (idx(N), dev(N)))),
        "mmdet.VarifocalLoss": ((N, C), lambda x, d: mmdet.VarifocalLoss()(x, dev(N, C))),
        "mmdet.DistributionFocalLoss": ((N, 17), lambda x, d: mmdet.DistributionFocalLoss()(x, dev(N))),
        "mmdet.IoULoss": ((N, 4), lambda x, d: mmdet.IoULoss()(x, dev(N, 4), weight=dev(N, 4))),
        "mmdet.GIoULoss": ((N, 4), lambda x, d: mmdet.GIoULoss()(x, dev(N, 4), weight=dev(N))),
        "mmdet.DIoULoss": ((N, 4), lambda x, d: mmdet.DIoULoss()(x, dev(N, 4))),
        "mmdet.CIoULoss": ((N, 4), lambda x, d: mmdet.CIoULoss()(x, dev(N, 4))),
    }


# Not losses (constants, mmdet's registry helper), and transformers' whole DETR criterion: its Hungarian
# matcher is transformers' own and runs scipy on the host by design (its classification term is
# transformers.sigmoid_focal_loss-style focalkit code, covered above).
PRESETS_NOT_RUN = {"smp.BINARY_MODE", "smp.MULTICLASS_MODE", "smp.MULTILABEL_MODE", "mmdet.register",
                   "transformers.deformable_detr_loss"}
PEERS = ("fvcore", "kornia", "mmdet", "monai", "smp", "torchvision", "transformers", "ultralytics", "yolov5")


class HostToDevice(TorchDispatchMode):
    """Records each copy of host memory onto the device: ``torch.tensor(values, device=...)``,
    ``cpu_tensor.to(device)``. On CUDA each one synchronises the stream, and a CUDA-graph capture
    refuses it. A 0-dim CPU tensor used as an operand is not a copy: torch reads it as a number."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and args[0].device.type == "cpu" \
                and kwargs.get("device") is not None and torch.device(kwargs["device"]).type != "cpu":
            self.copies.append(tuple(args[0].shape))
        if func is torch.ops.aten.copy_.default and args[0].device.type != "cpu" and args[1].device.type == "cpu":
            self.copies.append(tuple(args[1].shape))
        return func(*args, **kwargs)


def _step(shape: tuple, loss: Callable, dtype: torch.dtype) -> None:
    x = dev(*shape, dtype=dtype).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the presets' own warnings (torch.jit.script, ...) are not the point
        out = loss(x, dtype)
    outs = [v for v in (out.values() if isinstance(out, dict) else out if isinstance(out, tuple) else (out,))
            if isinstance(v, torch.Tensor)]
    assert outs and all(v.device.type == torch.device(ON[0]).type for v in outs)
    sum(v.float().sum() for v in outs if v.requires_grad).backward()
    assert x.grad is not None and x.grad.device == x.device and x.grad.shape == x.shape


def _run(shape: tuple, loss: Callable, dtype: torch.dtype) -> None:
    """A first step (host values may be copied to the device once, here), then a step that must copy
    nothing from the host."""
    _step(shape, loss, dtype)
    with HostToDevice() as seen:
        _step(shape, loss, dtype)
    assert seen.copies == [], f"host-to-device copies of shapes {seen.copies} in a training step"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(API))
def test_every_loss_reads_nothing_on_the_host(name, dtype):
    _run(*API[name], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(_presets()))
def test_every_preset_reads_nothing_on_the_host(name, dtype):
    _run(*_presets()[name], dtype)


def test_every_public_loss_has_a_case():
    covered = {n.split("/")[0] for n in API}
    assert set(fk.__all__) - NOT_LOSSES == covered


def test_every_preset_has_a_case():
    names = {f"{p}.{n}" for p in PEERS for n in importlib.import_module(f"focalkit.compat.{p}").__all__}
    assert names - PRESETS_NOT_RUN == {n.split("/")[0] for n in _presets()}


def test_a_host_read_raises_on_meta_tensors():
    """The premise: what this file would miss if meta tensors let a read through."""
    x = dev(N, C)
    with pytest.raises(RuntimeError):
        bool((x > 0).all())
    with pytest.raises(RuntimeError):
        x + torch.ones(N, C)  # a CPU tensor beside a device one
    with HostToDevice() as seen:
        torch.ones(C).to("meta")
        torch.full((), 3.0, device="meta")  # a fill: no copy
        x * torch.tensor(2.0)  # a 0-dim CPU operand: read as a number
    assert seen.copies == [(C,)]


def test_no_tensor_is_made_from_host_values_on_a_device():
    """``torch.tensor(values, device=d)`` copies from the host on CUDA, but on meta it makes the tensor
    directly, which ``HostToDevice`` cannot see. So the source makes none: a host number goes to a device
    as a fill (``torch.full``), and a host vector through ``focalkit._device.constant``, which copies it
    once. Allowed: that file, and ``class_balanced_weights``, a set-up helper that checks its counts on
    the host by design (its tensor stays on the counts' own device)."""
    src = Path(fk.__file__).parent
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.name in ("_device.py", "class_balanced.py") or "adapters" in path.parts:  # adapters: no torch
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("tensor", "as_tensor", "new_tensor") \
                    and any(k.arg == "device" for k in node.keywords):
                found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert found == []


# The Triton path, as on a GPU. Its Python runs on meta tensors, the kernels' launches recorded instead of
# made: any host read, and any copy from the host, in what a CUDA step pays before its kernels.
TRITON: dict[str, tuple[tuple, Callable]] = {
    "sigmoid": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), backend="triton")),
    "sigmoid-none": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), reduction="none", backend="triton")),
    "sigmoid-options": ((N, C), lambda x, d: fk.sigmoid_focal_loss(
        x, dev(N, C), alpha=dev(C), pos_weight=dev(C), weight=dev(N, 1), normalizer=3.0, reduction="sum",
        backend="triton")),
    "sigmoid-positives": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), normalizer="positives",
                                                                     backend="triton")),
    "sigmoid-indices": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, idx(N), alpha=0.25, normalizer="positives",
                                                                   backend="triton")),
    "sigmoid-ignore": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x, dev(N, C), ignore_index=-1, backend="triton")),
    "sigmoid-inplace": ((N, C), lambda x, d: fk.sigmoid_focal_loss(x * 1, dev(N, C), inplace_grad=True,
                                                                   backend="triton")),
    "softmax": ((N, C), lambda x, d: fk.softmax_focal_loss(x, idx(N), backend="triton")),
    "softmax-none": ((N, C), lambda x, d: fk.softmax_focal_loss(x, idx(N), reduction="none", backend="triton")),
    "softmax-options": ((N, C), lambda x, d: fk.softmax_focal_loss(
        x, idx(N), alpha=[0.2] * C, weight=dev(C), label_smoothing=0.1, backend="triton")),
    "softmax-nd": ((2, C, H, W), lambda x, d: fk.softmax_focal_loss(x, idx(2, H, W), ignore_index=255,
                                                                    backend="triton")),
    "softmax-probabilities": ((N, C), lambda x, d: fk.softmax_focal_loss(x, dev(N, C), backend="triton")),
    "quality": ((N, C), lambda x, d: fk.quality_focal_loss(x, (idx(N), dev(N)), backend="triton")),
    "varifocal": ((N, C), lambda x, d: fk.varifocal_loss(x, dev(N, C), labels=dev(N, C), backend="triton")),
    "varifocal-none": ((N, C), lambda x, d: fk.varifocal_loss(x, dev(N, C), reduction="none", backend="triton")),
    "dfl": ((N, 17), lambda x, d: fk.distribution_focal_loss(x, dev(N), weight=dev(N), backend="triton")),
    "dfl-none-normalizer": ((N, 17), lambda x, d: fk.distribution_focal_loss(x, dev(N), normalizer=dev(),
                                                                             backend="triton")),
    **{f"sigmoid-{form}": ((N, C), lambda x, d, form=form: fk.sigmoid_focal_loss(x, dev(N, C), soft_target=form,
                                                                                backend="triton"))
       for form in ("linear", "signed", "bce", "quality")},
    "sigmoid-indices-options": ((N, C), lambda x, d: fk.sigmoid_focal_loss(
        x, idx(N), alpha=dev(C), pos_weight=dev(C), weight=dev(N, 1), reduction="none", backend="triton")),
    "softmax-nd-options": ((2, C, H, W), lambda x, d: fk.softmax_focal_loss(
        x, idx(2, H, W), alpha=0.25, weight=dev(C), label_smoothing=0.1, normalizer=dev(), reduction="sum",
        backend="triton")),
    "softmax-inplace": ((N, C), lambda x, d: fk.softmax_focal_loss(x * 1, idx(N), inplace_grad=True,
                                                                   backend="triton")),
    "varifocal-options": ((N, C), lambda x, d: fk.varifocal_loss(
        x, dev(N, C), alpha=0.5, iou_weighted=False, weight=dev(N, C), normalizer=4.0, reduction="sum",
        backend="triton")),
}


@pytest.fixture
def triton_on_meta(monkeypatch):
    from focalkit.backends import triton as tb

    if not tb.available():
        pytest.skip(f"triton cannot run here: {tb.why_unavailable()}")
    launches: list = []
    on_device = tb._on_device
    monkeypatch.setattr(tb, "_on_device", lambda t: t.device.type == "meta" or on_device(t))

    def launch(fn, grid, args, consts, num_warps):
        # every pointer a kernel gets is on the logits' device: on a GPU a CPU tensor here is a fault (the
        # interpreter's CPU run cannot tell the two apart)
        elsewhere = [type(a).__name__ if not isinstance(a, torch.Tensor) else str(a.device)
                     for a in (*args, *consts.values()) if isinstance(a, torch.Tensor) and a.device.type != "meta"]
        assert not elsewhere, f"{fn.__name__} gets tensors on {elsewhere}"
        launches.append(fn.__name__)

    monkeypatch.setattr(tb, "_launch", launch)
    return launches


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(TRITON))
def test_the_triton_path_reads_nothing_and_copies_nothing(triton_on_meta, name, dtype):
    _run(*TRITON[name], dtype)
    steps = 2  # _run's two steps, each a forward and a backward
    assert len(triton_on_meta) % steps == 0 and 2 <= len(triton_on_meta) // steps <= 4, triton_on_meta


@pytest.mark.gpu
@pytest.mark.skipif(not ON_GPU, reason="a CUDA GPU (benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("table", ["losses", "presets"])
def test_no_synchronisation_on_cuda(monkeypatch, table):
    """The same steps on CUDA, the second one under ``torch.cuda.set_sync_debug_mode("error")``: every
    loss and preset, on the path ``backend="auto"`` takes there (Triton kernels, and eager for the rest)."""
    monkeypatch.setitem(ON, 0, "cuda")
    cases = API if table == "losses" else _presets()
    for name, (shape, loss) in cases.items():
        for dtype in (torch.float32, torch.bfloat16):
            _step(shape, loss, dtype)  # warm: kernels compiled, host vectors copied once
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                _step(shape, loss, dtype)
            except RuntimeError as e:
                raise AssertionError(f"{name} {dtype}: {e}") from e
            finally:
                torch.cuda.set_sync_debug_mode("default")
