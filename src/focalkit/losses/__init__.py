"""One file per loss family: the function and its Module side by side."""

from focalkit.losses.box import (
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
)
from focalkit.losses.quality import DistributionFocalLoss, QualityFocalLoss, VarifocalLoss, distribution_focal_loss, quality_focal_loss, varifocal_loss
from focalkit.losses.asymmetric import AsymmetricLoss, asymmetric_loss
from focalkit.losses.poly import Poly1CrossEntropyLoss, Poly1FocalLoss, poly1_cross_entropy, poly1_focal_loss
from focalkit.losses.class_balanced import class_balanced_weights
from focalkit.losses.focal_star import FocalLossStar, focal_loss_star
from focalkit.losses.sigmoid_focal import SigmoidFocalLoss, sigmoid_focal_loss
from focalkit.losses.softmax_focal import SoftmaxFocalLoss, flsd53_gamma, softmax_focal_loss
from focalkit.losses.yolo import FocalLoss, QFocalLoss

__all__ = [
    "AsymmetricLoss",
    "CIoULoss",
    "DIoULoss",
    "DistributionFocalLoss",
    "EIoULoss",
    "FocalEIoULoss",
    "FocalL1Loss",
    "FocalLoss",
    "FocalLossStar",
    "GIoULoss",
    "IoULoss",
    "Poly1CrossEntropyLoss",
    "Poly1FocalLoss",
    "QFocalLoss",
    "QualityFocalLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "VarifocalLoss",
    "asymmetric_loss",
    "ciou_loss",
    "class_balanced_weights",
    "diou_loss",
    "distribution_focal_loss",
    "eiou_loss",
    "flsd53_gamma",
    "focal_eiou_loss",
    "focal_l1_loss",
    "focal_loss_star",
    "giou_loss",
    "iou_loss",
    "poly1_cross_entropy",
    "poly1_focal_loss",
    "quality_focal_loss",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "varifocal_loss",
]
