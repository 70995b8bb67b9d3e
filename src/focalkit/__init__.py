"""focalkit: correct, stable focal-family losses for class-imbalanced training.

Every loss is a function and a Module twin with ``torch.nn`` conventions. Losses compute their
closed-form gradient in the forward pass (log-space, finite for every finite logit and every
``gamma >= 0``) and keep a single gradient-sized buffer for backward.
"""


import importlib
import sys
from typing import Any

# The torch API is imported on first use (PEP 562), or at once when torch is already imported (so that
# focalkit's custom ops are registered before, say, ``torch.export.load``). ``import
# focalkit.adapters.keras`` on the JAX or TensorFlow backend, and the GBDT adapters, never import torch.
_WHERE = {name: "focalkit.losses" for name in (
    "DistributionFocalLoss",
    "QualityFocalLoss",
    "VarifocalLoss",
    "distribution_focal_loss",
    "quality_focal_loss",
    "varifocal_loss",
    "AsymmetricLoss",
    "asymmetric_loss",
    "Poly1CrossEntropyLoss",
    "Poly1FocalLoss",
    "poly1_cross_entropy",
    "poly1_focal_loss",
    "flsd53_gamma",
    "CIoULoss",
    "DIoULoss",
    "EIoULoss",
    "FocalEIoULoss",
    "FocalL1Loss",
    "GIoULoss",
    "IoULoss",
    "ciou_loss",
    "diou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "focal_l1_loss",
    "giou_loss",
    "iou_loss",
    "FocalLoss",
    "FocalLossStar",
    "QFocalLoss",
    "SigmoidFocalLoss",
    "SoftmaxFocalLoss",
    "class_balanced_weights",
    "focal_loss_star",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
)}
_WHERE.update(expected_calibration_error="focalkit.calibration", focal_calibration_map="focalkit.calibration")

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


def _torch_missing() -> "ImportError | None":
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # the GBDT and Keras adapters run without torch; the losses need it
        return exc
    return None


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        missing = _torch_missing()
        if missing is not None:
            raise ImportError(f"focalkit.{name} needs PyTorch, which is not installed: pip install torch "
                              "(or pip install 'focalkit[torch]'). The GBDT and Keras adapters "
                              "(focalkit.adapters.*) run without it.") from missing
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'focalkit' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


if "torch" in sys.modules:
    for _name in _WHERE:
        __getattr__(_name)
    del _name
