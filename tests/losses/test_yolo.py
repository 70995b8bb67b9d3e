import pytest
import torch
from torch import nn

import reference as ref
from focalkit import FocalLoss, QFocalLoss, sigmoid_focal_loss

D = torch.float64


def _data(shape=(6, 5)):
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g, dtype=D) * 4, torch.rand(*shape, generator=g, dtype=D)


def _yolov5_focal(bce, pred, true, gamma, alpha):
    """YOLOv5's FocalLoss, re-typed from the seed document (on a copy of the BCE module)."""
    loss = nn.BCEWithLogitsLoss(weight=bce.weight, pos_weight=bce.pos_weight, reduction="none")(pred, true)
    p = torch.sigmoid(pred)
    p_t = true * p + (1 - true) * (1 - p)
    loss = loss * (true * alpha + (1 - true) * (1 - alpha)) * (1.0 - p_t) ** gamma
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[bce.reduction]


def _yolov5_qfocal(bce, pred, true, gamma, alpha):
    loss = nn.BCEWithLogitsLoss(weight=bce.weight, pos_weight=bce.pos_weight, reduction="none")(pred, true)
    p = torch.sigmoid(pred)
    loss = loss * (true * alpha + (1 - true) * (1 - alpha)) * (true - p).abs() ** gamma
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[bce.reduction]


@pytest.mark.parametrize("cls,ref_fn", [(FocalLoss, _yolov5_focal), (QFocalLoss, _yolov5_qfocal)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("gamma", [1.5, 2.0])
def test_matches_yolov5_and_leaves_wrapped_loss_alone(cls, ref_fn, reduction, weighted, gamma):
    x, y = _data()
    kw = dict(weight=torch.rand(5, dtype=D), pos_weight=torch.full((5,), 2.0, dtype=D)) if weighted else {}
    bce = nn.BCEWithLogitsLoss(reduction=reduction, **kw)
    crit = cls(bce, gamma=gamma, alpha=0.25)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = crit(x1, y), ref_fn(bce, x2, y, gamma, 0.25)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    go = torch.randn_like(got)
    got.backward(go)
    want.backward(go)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-13)
    assert bce.reduction == reduction  # YOLOv5 sets it to "none"; the caller's module is untouched


def test_focal_wrapper_is_sigmoid_focal_pt():
    x, y = _data()
    torch.testing.assert_close(FocalLoss(nn.BCEWithLogitsLoss(), 2.0, 0.25)(x, y),
                               sigmoid_focal_loss(x, y, gamma=2.0, alpha=0.25, soft_target="pt"))


@pytest.mark.parametrize("cls", [FocalLoss, QFocalLoss])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_for_gamma_below_one(cls, dtype):
    x = torch.tensor([17.0, -17.0, 40.0, -40.0, 1e4, -1e4], dtype=dtype).repeat(2).requires_grad_()
    y = torch.cat([torch.ones(6), torch.zeros(6)]).to(dtype)
    out = cls(nn.BCEWithLogitsLoss(reduction="sum"), gamma=0.5)(x, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()


def test_qfocal_gradcheck_and_subgradient_at_target():
    x, y = _data((3, 4))
    crit = QFocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5)
    assert torch.autograd.gradcheck(lambda t: crit(t, y), (x.clone().requires_grad_(),))
    # sigma(0) = 0.5 = y: the derivative is infinite for gamma < 1; the sub-gradient 0 is used.
    z = torch.zeros(1, dtype=D, requires_grad=True)
    QFocalLoss(nn.BCEWithLogitsLoss(), gamma=0.5)(z, torch.full((1,), 0.5, dtype=D)).backward()
    assert z.grad.item() == 0.0


def test_wrapper_follows_device_moves_and_rejects_other_losses():
    crit = FocalLoss(nn.BCEWithLogitsLoss(pos_weight=torch.ones(3)))
    assert "loss_fcn.pos_weight" in dict(crit.named_buffers())
    with pytest.raises(TypeError, match="loss_fcn"):
        FocalLoss(nn.MSELoss())
    with pytest.raises(TypeError, match="loss_fcn"):
        QFocalLoss(nn.BCELoss())
