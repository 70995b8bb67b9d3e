"""``torchvision.ops``' focal and box losses on focalkit: ``sigmoid_focal_loss``,
``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss`` (torchvision 0.29:
same signatures, defaults, values and error messages; ``alpha=-1`` switches the weighting off, any
other ``alpha`` outside [0, 1] raises torchvision's ``ValueError``).

Scriptable: ``torch.jit.script`` compiles each of them (as torchvision's own tests script
``sigmoid_focal_loss``); the scripted function calls focalkit through ``torch.jit.ignore``, so it runs
in Python and cannot be serialised with ``torch.jit.save`` (``docs/api.md``: use ``torch.export``).

Differences (``docs/compat.md``): finite gradients for ``gamma < 1`` where torchvision's
``(1 - p_t) ** gamma`` gives NaN once the sigmoid saturates. Invalid ``reduction`` / ``alpha`` raise
torchvision's ``ValueError`` and message; other bad arguments raise focalkit's, naming the argument.
"""

# (no "from __future__ import annotations": TorchScript reads these annotations as types)

import torch
from torch import Tensor

import focalkit as fk

__all__ = ["complete_box_iou_loss", "distance_box_iou_loss", "generalized_box_iou_loss", "sigmoid_focal_loss"]


@torch.jit.ignore
def _check_reduction(reduction: str) -> None:
    """torchvision's own check and message (its tests match them: ``pytest.raises(ValueError, match="Invalid")``)."""
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: 'none', 'mean', 'sum'")


@torch.jit.ignore
def _focal(inputs: Tensor, targets: Tensor, alpha: float, gamma: float, reduction: str) -> Tensor:
    if not (0 <= alpha <= 1) and alpha != -1:  # torchvision's check and message
        raise ValueError(f"Invalid alpha value: {alpha}. alpha must be in the range [0,1] or -1 for ignore.")
    _check_reduction(reduction)
    return fk.sigmoid_focal_loss(inputs, targets.to(inputs.dtype) if not targets.is_floating_point() else targets,
                                 alpha=None if alpha < 0 else alpha, gamma=gamma, reduction=reduction)


@torch.jit.ignore
def _box(kind: str, boxes1: Tensor, boxes2: Tensor, reduction: str, eps: float) -> Tensor:
    _check_reduction(reduction)
    fn = {"giou": fk.giou_loss, "diou": fk.diou_loss, "ciou": fk.ciou_loss}[kind]
    if boxes1.dtype in (torch.float16, torch.bfloat16):  # torchvision computes and returns float32 for halves
        boxes1, boxes2 = boxes1.float(), boxes2.float()
    return fn(boxes1, boxes2, reduction=reduction, eps=eps)


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """torchvision's ``sigmoid_focal_loss``: ``alpha_t (1 - p_t)^gamma BCE``, soft targets in that form."""
    return _focal(inputs, targets, alpha, gamma, reduction)


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """torchvision's ``generalized_box_iou_loss``: the generalized IoU loss of (x1, y1, x2, y2) boxes; float32 for half boxes."""
    return _box("giou", boxes1, boxes2, reduction, eps)


def distance_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """torchvision's ``distance_box_iou_loss``: the distance IoU loss of (x1, y1, x2, y2) boxes; float32 for half boxes."""
    return _box("diou", boxes1, boxes2, reduction, eps)


def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """torchvision's ``complete_box_iou_loss``: the complete IoU loss of (x1, y1, x2, y2) boxes; float32 for half boxes."""
    return _box("ciou", boxes1, boxes2, reduction, eps)
