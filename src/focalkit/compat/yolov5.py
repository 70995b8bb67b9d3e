"""YOLOv5's ``utils.loss`` wrappers (``FocalLoss``, ``QFocalLoss``) on focalkit.

YOLOv5's conventions, reproduced: ``FocalLoss(loss_fcn, gamma=1.5, alpha=0.25)`` wraps an
``nn.BCEWithLogitsLoss`` (its ``weight`` and ``pos_weight`` apply), ``alpha_t (1 - p_t)^gamma`` (``p_t``
form for soft targets); ``QFocalLoss`` modulates by ``|t - sigmoid(x)|^gamma``. ``self.reduction`` is
the wrapped loss's reduction when wrapped, as in YOLOv5 (``fl_gamma`` in a hyperparameter file
switches YOLOv5's ``ComputeLoss`` to ``FocalLoss(BCEcls, g)``: these are drop-in for it).

Differences (``docs/compat.md``): the wrapped ``loss_fcn`` is not modified (YOLOv5 sets its
``reduction`` to ``"none"``, so wrapping the same module twice gives "none"); gradients are finite for
every gamma >= 0 (YOLOv5's ``(1 - p_t) ** gamma`` gives NaN for gamma < 1 once the sigmoid saturates).
"""

from __future__ import annotations

from torch import Tensor, nn

from focalkit.losses import yolo

__all__ = ["FocalLoss", "QFocalLoss"]


class FocalLoss(yolo.FocalLoss):
    """YOLOv5's ``FocalLoss(loss_fcn, gamma=1.5, alpha=0.25)``: the reduction kept from ``loss_fcn`` at
    construction, in ``self.reduction``."""

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25) -> None:
        super().__init__(loss_fcn, gamma, alpha)
        self.reduction = loss_fcn.reduction

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        return self._forward(pred, true, self.reduction)


class QFocalLoss(yolo.QFocalLoss):
    """YOLOv5's ``QFocalLoss(loss_fcn, gamma=1.5, alpha=0.25)``: the reduction kept as in :class:`FocalLoss`."""

    def __init__(self, loss_fcn: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25) -> None:
        super().__init__(loss_fcn, gamma, alpha)
        self.reduction = loss_fcn.reduction

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        return self._forward(pred, true, self.reduction)
