"""focalkit: correct, stable focal-family losses for class-imbalanced training.

Every loss is a function and a Module twin with ``torch.nn`` conventions. Losses compute their
closed-form gradient in the forward pass (log-space, finite for every finite logit and every
``gamma >= 0``) and keep a single gradient-sized buffer for backward.
"""

from focalkit.calibration import expected_calibration_error, focal_calibration_map
from focalkit.losses import (
    CIoULoss,
    DIoULoss,
    EIoULoss,
    FocalEIoULoss,
    FocalL1Loss,
    GIoULoss,
    IoULoss,
    ciou_loss,
    diou_loss,
    eiou_loss,
    focal_eiou_loss,
    focal_l1_loss,
    giou_loss,
    iou_loss,
    FocalLoss,
    FocalLossStar,
    QFocalLoss,
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
    class_balanced_weights,
    focal_loss_star,
    sigmoid_focal_loss,
    softmax_focal_loss,
)

__version__ = "0.1.0"

__all__ = [
    "CIoULoss",
    "DIoULoss",
    "EIoULoss",
    "FocalEIoULoss",
    "FocalL1Loss",
    "FocalLoss",
    "FocalLossStar",
    "GIoULoss",
    "IoULoss",
    "QFocalLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "__version__",
    "ciou_loss",
    "class_balanced_weights",
    "diou_loss",
    "eiou_loss",
    "expected_calibration_error",
    "focal_calibration_map",
    "focal_eiou_loss",
    "focal_l1_loss",
    "focal_loss_star",
    "giou_loss",
    "iou_loss",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]
