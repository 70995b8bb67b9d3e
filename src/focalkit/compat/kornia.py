"""``kornia.losses``' focal losses (kornia 0.9 conventions) on focalkit: ``focal_loss``, ``FocalLoss``,
``binary_focal_loss_with_logits``, ``BinaryFocalLossWithLogits``.

kornia's conventions, reproduced:

* ``focal_loss``: softmax over dim 1; ``alpha`` weights class 0 by ``1 - alpha`` and every other class
  by ``alpha`` (``None``: 1); ``weight[c]`` multiplies class ``c``; ``reduction="none"`` (the default)
  returns a ``(B, C, *)`` map holding each pixel's loss in its target class's slice and 0 elsewhere;
  ``"mean"`` divides the sum by every element of that map (``C`` times the pixels), ignored pixels
  included.
* ``binary_focal_loss_with_logits``: every element an independent logit, soft targets by the linear
  form ``t alpha (1-p)^g (-log p) + (1-t)(1-alpha) p^g (-log(1-p))``; ``pos_weight`` and ``weight``
  are ``(C,)`` vectors along dim 1; an ``ignore_index`` target contributes 0 and stays in the mean.

Differences (``docs/compat.md``): errors are ``ValueError`` / ``TypeError`` (kornia raises its own
``BaseError``), and gradients stay finite where kornia's ``log_softmax`` path is not.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from focalkit import _checks
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss
from focalkit.losses.softmax_focal import softmax_focal_loss

__all__ = ["BinaryFocalLossWithLogits", "FocalLoss", "binary_focal_loss_with_logits", "focal_loss"]


def focal_loss(pred: Tensor, target: Tensor, alpha: Optional[float], gamma: float = 2.0, reduction: str = "none",
               weight: Optional[Tensor] = None, ignore_index: Optional[int] = -100) -> Tensor:
    """kornia's ``focal_loss``: see the module docstring for its conventions."""
    _checks.float_tensor("pred", pred)
    reduction = _checks.reduction(reduction)
    if pred.dim() < 2:
        _checks.fail("pred", "to have shape (B, C, *)", f"shape {tuple(pred.shape)}")
    n_cls = pred.shape[1]
    a = None
    if alpha is not None:
        a = torch.full((n_cls,), float(alpha), dtype=torch.float32, device=pred.device)
        a[0] = 1.0 - float(alpha)
    w = a if weight is None else (weight.to(torch.float32) if a is None else weight.to(torch.float32) * a)
    ignore = -100 if ignore_index is None else ignore_index
    kw = dict(gamma=gamma, weight=None, ignore_index=ignore, alpha=None if w is None else w)
    if reduction != "none":  # kornia's mean: over the (B, C, *) map, C times the pixels
        return softmax_focal_loss(pred, target, reduction="sum", normalizer=float(max(1, pred.numel()))
                                  if reduction == "mean" else None, **kw)
    per = softmax_focal_loss(pred, target, reduction="none", **kw)
    t = target.long()
    idx = torch.where(t == ignore, torch.zeros_like(t), t).unsqueeze(1)
    return torch.zeros_like(pred, dtype=per.dtype).scatter(1, idx, per.unsqueeze(1))  # float32 under autocast


class FocalLoss(nn.Module):
    """kornia's ``FocalLoss(alpha, gamma=2.0, reduction="none", weight=None, ignore_index=-100)``."""

    def __init__(self, alpha: Optional[float], gamma: float = 2.0, reduction: str = "none",
                 weight: Optional[Tensor] = None, ignore_index: Optional[int] = -100) -> None:
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return focal_loss(pred, target, self.alpha, self.gamma, self.reduction, self.weight, self.ignore_index)


def binary_focal_loss_with_logits(pred: Tensor, target: Tensor, alpha: Optional[float] = 0.25, gamma: float = 2.0,
                                  reduction: str = "none", pos_weight: Optional[Tensor] = None,
                                  weight: Optional[Tensor] = None, ignore_index: Optional[int] = -100) -> Tensor:
    """kornia's ``binary_focal_loss_with_logits``: see the module docstring for its conventions."""
    _checks.float_tensor("pred", pred)
    reduction = _checks.reduction(reduction)
    if pred.dim() < 2:
        _checks.fail("pred", "to have shape (B, C, *)", f"shape {tuple(pred.shape)}")
    along = (1, pred.shape[1]) + (1,) * (pred.dim() - 2)  # kornia's per-class vectors lie along dim 1
    for name, v in (("pos_weight", pos_weight), ("weight", weight)):
        # kornia's rule: any shape that holds one value per class along its first dim ((C,), (C, 1), ...)
        if v is not None and (v.dim() == 0 or v.shape[0] != pred.shape[1] or v.numel() != pred.shape[1]):
            _checks.fail(name, f"to hold one value per class of pred ({pred.shape[1]})", f"shape {tuple(v.shape)}")
    # the kernel's own reduction; kornia's mean counts every element, ignored ones included
    return sigmoid_focal_loss(
        pred, target.to(pred.dtype) if not target.is_floating_point() else target, alpha=alpha, gamma=gamma,
        reduction="none" if reduction == "none" else "sum", soft_target="linear", ignore_index=ignore_index,
        normalizer=float(max(1, pred.numel())) if reduction == "mean" else None,
        pos_weight=None if pos_weight is None else pos_weight.view(along),
        weight=None if weight is None else weight.view(along))


class BinaryFocalLossWithLogits(nn.Module):
    """kornia's ``BinaryFocalLossWithLogits(alpha, gamma=2.0, reduction="none", pos_weight=None, weight=None,
    ignore_index=-100)``."""

    def __init__(self, alpha: Optional[float], gamma: float = 2.0, reduction: str = "none",
                 pos_weight: Optional[Tensor] = None, weight: Optional[Tensor] = None,
                 ignore_index: Optional[int] = -100) -> None:
        super().__init__()
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction
        self.pos_weight, self.weight, self.ignore_index = pos_weight, weight, ignore_index

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return binary_focal_loss_with_logits(pred, target, self.alpha, self.gamma, self.reduction, self.pos_weight,
                                             self.weight, self.ignore_index)
