"""focalkit: correct, stable focal-family losses for class-imbalanced training.

Every loss is a function and a Module twin with ``torch.nn`` conventions. Losses compute their
closed-form gradient in the forward pass (log-space, finite for every finite logit and every
``gamma >= 0``) and keep a single gradient-sized buffer for backward.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # the GBDT and Keras adapters run without torch; the losses need it
    _TORCH_MISSING: "ImportError | None" = _exc
else:
    _TORCH_MISSING = None

if _TORCH_MISSING is None:
    from focalkit.calibration import expected_calibration_error, focal_calibration_map
    from focalkit.losses import (
        DistributionFocalLoss,
        QualityFocalLoss,
        VarifocalLoss,
        distribution_focal_loss,
        quality_focal_loss,
        varifocal_loss,
        AsymmetricLoss,
        asymmetric_loss,
        Poly1CrossEntropyLoss,
        Poly1FocalLoss,
        poly1_cross_entropy,
        poly1_focal_loss,
        flsd53_gamma,
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
    "__version__",
    "asymmetric_loss",
    "ciou_loss",
    "class_balanced_weights",
    "diou_loss",
    "distribution_focal_loss",
    "eiou_loss",
    "expected_calibration_error",
    "flsd53_gamma",
    "focal_calibration_map",
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


def __getattr__(name: str):
    if _TORCH_MISSING is not None and name in __all__:
        raise ImportError(f"focalkit.{name} needs PyTorch, which is not installed: pip install torch "
                          "(or pip install 'focalkit[torch]'). The GBDT and Keras adapters "
                          "(focalkit.adapters.*) run without it.") from _TORCH_MISSING
    raise AttributeError(f"module 'focalkit' has no attribute {name!r}")
