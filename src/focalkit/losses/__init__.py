"""One file per loss family: the function and its Module side by side."""

from focalkit.losses.class_balanced import class_balanced_weights
from focalkit.losses.focal_star import FocalLossStar, focal_loss_star
from focalkit.losses.sigmoid_focal import SigmoidFocalLoss, sigmoid_focal_loss
from focalkit.losses.softmax_focal import SoftmaxFocalLoss, softmax_focal_loss
from focalkit.losses.yolo import FocalLoss, QFocalLoss

__all__ = [
    "FocalLoss",
    "FocalLossStar",
    "QFocalLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "class_balanced_weights",
    "focal_loss_star",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
]
