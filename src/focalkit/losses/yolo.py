"""YOLOv5-style wrappers around ``nn.BCEWithLogitsLoss``: ``FocalLoss`` and ``QFocalLoss``.

YOLOv5's originals set ``loss_fcn.reduction = "none"`` on the caller's module and use
``(1 - p_t) ** gamma``, whose gradient is NaN for ``gamma < 1`` once the sigmoid saturates. These
read the wrapped loss's ``reduction``, ``weight`` and ``pos_weight`` at each call without changing
it, and compute the modulation in log space.
"""

from __future__ import annotations

from torch import Tensor, nn

from focalkit import _checks
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss


def _check_bce(loss_fcn: object) -> nn.BCEWithLogitsLoss:
    if not isinstance(loss_fcn, nn.BCEWithLogitsLoss):
        _checks.fail("loss_fcn", "to be an nn.BCEWithLogitsLoss", type(loss_fcn).__name__, TypeError)
    return loss_fcn


class _WrappedBCE(nn.Module):
    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25) -> None:
        super().__init__()
        self.loss_fcn = _check_bce(loss_fcn)
        self.gamma = _checks.gamma(gamma)
        self.alpha = _checks.alpha(alpha, allow_none=False)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}"


class FocalLoss(_WrappedBCE):
    r"""Focal modulation of a wrapped ``nn.BCEWithLogitsLoss`` (YOLOv5 ``FocalLoss``).

    .. math::
        L = \alpha_t\,(1-p_t)^\gamma\,\mathrm{BCE}_{w,\,pw}(x,y),\qquad p_t=py+(1-p)(1-y),

    i.e. :func:`sigmoid_focal_loss` with ``soft_target="pt"`` and the wrapped loss's ``weight``,
    ``pos_weight`` and ``reduction``, read at every call (the wrapped module is not modified).
    Soft targets (YOLO's IoU objectness, smoothed class targets) use the ``p_t`` form, as in YOLOv5.

    Args:
        loss_fcn: an ``nn.BCEWithLogitsLoss``; registered as a sub-module.
        gamma: >= 0. YOLOv5's default 1.5 (the paper uses 2).
        alpha: positive-class weight in [0, 1]. Default 0.25.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from focalkit import FocalLoss
        >>> criterion = FocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5, alpha=0.25)
        >>> criterion(torch.tensor([3.0, -2.0]), torch.tensor([1.0, 0.0]))
        tensor(0.0020)
    """

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        return self._forward(pred, true, self.loss_fcn.reduction)

    def _forward(self, pred: Tensor, true: Tensor, reduction: str) -> Tensor:
        bce = self.loss_fcn
        return sigmoid_focal_loss(
            pred, true, alpha=self.alpha, gamma=self.gamma, reduction=reduction,
            weight=bce.weight, pos_weight=bce.pos_weight, soft_target="pt",
        )


class QFocalLoss(_WrappedBCE):
    r"""Quality focal modulation of a wrapped ``nn.BCEWithLogitsLoss`` (YOLOv5 ``QFocalLoss``).

    .. math::
        L = \alpha_t\,|y-\sigma(x)|^\gamma\,\mathrm{BCE}_{w,\,pw}(x,y).

    Unlike :class:`FocalLoss` its minimiser for a soft target :math:`y` is :math:`\sigma(x)=y`. For
    ``gamma < 1`` the derivative is infinite where :math:`\sigma(x)=y` exactly; there the
    sub-gradient 0 is used, everywhere else the gradient is finite.

    Args:
        loss_fcn: an ``nn.BCEWithLogitsLoss``; registered as a sub-module, never modified.
        gamma: >= 0. Default 1.5.
        alpha: positive-class weight in [0, 1]. Default 0.25.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from focalkit import QFocalLoss
        >>> criterion = QFocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5)
        >>> criterion(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 0.9]))
        tensor(0.0043)
    """

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        return self._forward(pred, true, self.loss_fcn.reduction)

    def _forward(self, pred: Tensor, true: Tensor, reduction: str) -> Tensor:
        bce = self.loss_fcn
        return sigmoid_focal_loss(pred, true, alpha=self.alpha, gamma=self.gamma, reduction=reduction,
                                  weight=bce.weight, pos_weight=bce.pos_weight, soft_target="quality")
