"""``backend=`` on every loss: the losses with kernels choose one; the others are eager only and
say so when a kernel backend is asked for."""

import inspect

import pytest
import torch

import focalkit as fk

KERNEL_LOSSES = {"sigmoid_focal_loss", "softmax_focal_loss", "quality_focal_loss",  # QFL: the "quality" form
                 "varifocal_loss", "distribution_focal_loss"}
EAGER_ONLY = ["focal_loss_star", "asymmetric_loss", "poly1_cross_entropy", "poly1_focal_loss", "iou_loss", "giou_loss", "diou_loss",
              "ciou_loss", "eiou_loss", "focal_eiou_loss", "focal_l1_loss"]
MODULES = ["SigmoidFocalLoss", "SoftmaxFocalLoss", "FocalLossStar", "QualityFocalLoss", "VarifocalLoss",
           "DistributionFocalLoss", "AsymmetricLoss", "Poly1CrossEntropyLoss", "Poly1FocalLoss", "IoULoss",
           "GIoULoss", "DIoULoss", "CIoULoss", "EIoULoss", "FocalEIoULoss", "FocalL1Loss"]


@pytest.mark.parametrize("name", sorted(KERNEL_LOSSES) + EAGER_ONLY + MODULES)
def test_every_loss_takes_backend_auto_by_default(name):
    obj = getattr(fk, name)
    params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
    assert params["backend"].default == "auto"


@pytest.mark.parametrize("name", EAGER_ONLY)
@pytest.mark.parametrize("backend", ["native", "triton"])
def test_eager_only_losses_refuse_a_kernel_backend_with_the_reason(name, backend):
    x = torch.rand(4, 4)
    with pytest.raises(ValueError, match=f"backend='{backend}' cannot run {name}: it has no {backend} kernel"):
        getattr(fk, name)(x, x, backend=backend)
    with pytest.raises(ValueError, match="`backend`"):
        getattr(fk, name)(x, x, backend="gpu")


@pytest.mark.parametrize("name", [m for m in MODULES[2:] if m not in ("QualityFocalLoss", "VarifocalLoss",
                                                                      "DistributionFocalLoss")])
def test_eager_only_modules_refuse_a_kernel_backend(name):
    with pytest.raises(ValueError, match=f"cannot run {name}"):
        getattr(fk, name)(backend="native")
    assert getattr(fk, name)(backend="eager").backend == "eager"


def test_eager_backend_equals_auto_and_env_does_not_apply(monkeypatch):
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]])
    target = torch.tensor([[0.5, 0.0, 2.0, 2.5], [1.0, 2.0, 3.0, 3.0]])
    want = fk.giou_loss(pred, target)
    torch.testing.assert_close(fk.giou_loss(pred, target, backend="eager"), want)
    monkeypatch.setattr(fk.backends, "FORCED", "native")  # forces the kernel losses only
    torch.testing.assert_close(fk.giou_loss(pred, target), want)


def test_quality_focal_loss_runs_on_the_kernels():
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, 4, dtype=torch.float64)
    want = fk.quality_focal_loss(x, y, backend="eager")
    torch.testing.assert_close(fk.quality_focal_loss(x, y, backend="native"), want)
    assert fk.QualityFocalLoss(backend="native").backend == "native"
