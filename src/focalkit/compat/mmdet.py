"""MMDetection 3's losses (``mmdet.models.losses``) on focalkit: ``FocalLoss``, ``QualityFocalLoss``,
``VarifocalLoss``, ``DistributionFocalLoss``, ``IoULoss``, ``GIoULoss``, ``DIoULoss``, ``CIoULoss``.

mmdet's conventions, reproduced:

* Every class takes ``loss_weight`` (a factor on the result) and ``reduction``, and is called as
  ``forward(pred, target, weight=None, avg_factor=None, reduction_override=None)``. ``avg_factor``
  turns ``"mean"`` into ``sum / (avg_factor + eps)`` (``eps`` float32's), leaves ``"none"`` alone and
  raises ``ValueError`` with ``"sum"``.
* ``FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, reduction="mean", loss_weight=1.0, activated=False)``:
  ``pred (N, C)`` logits (probabilities with ``activated``); ``target`` class indices ``(N,)`` with ``C``
  the background (computed without a one-hot tensor) or a dense ``(N, C)`` target (the ``p_t`` form
  for soft values); ``weight`` ``(N,)``, ``(N, C)`` or ``(N * C,)``. ``"mean"`` is over the ``N * C`` entries.
* ``QualityFocalLoss(use_sigmoid=True, beta=2.0, ..., activated=False)``: ``target`` a ``(labels, scores)``
  pair (background ``C``) or a dense ``(N, C)`` score; the loss of a sample is the sum over its
  classes; ``weight (N,)``; ``"mean"`` over the ``N`` samples.
* ``VarifocalLoss(use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True, ...)``: elementwise on
  ``(N, C)``.
* ``DistributionFocalLoss(reduction="mean", loss_weight=1.0)``: ``pred (N, n+1)``, ``target (N,)``.
* ``IoULoss(linear=False, eps=1e-6, reduction="mean", loss_weight=1.0, mode="log")`` (``linear=True``
  means ``mode="linear"``, with mmdet's deprecation warning), ``GIoULoss``, ``DIoULoss``, ``CIoULoss``
  (``eps=1e-6``; CIoU's aspect term only where IoU > 0.5, as mmdet 3): boxes ``(N, 4)``, ``weight (N,)``
  or ``(N, 4)`` (its mean over the 4 is taken).

:func:`register` adds these classes to an mmdet registry (``mmdet.registry.MODELS``) under a prefix, so
that config dicts can name them (``dict(type="FKFocalLoss", ...)``).

Differences (``docs/compat.md``): focalkit's box geometry adds ``eps`` to the union where mmdet takes
``max(union, eps)`` (equal to rounding for boxes larger than ``eps``), and clamps the IoU at ``eps`` only in
the log mode (mmdet: in every mode, so a disjoint box costs ``1 - eps`` in the linear mode, here 1); ``DistributionFocalLoss`` clamps
targets into ``[0, n]`` (mmdet indexes past the last bin at ``target == n``); an all-zero box ``weight``
gives a 0 connected to the graph without mmdet's host sync; errors are ``ValueError`` (and
``AssertionError`` where mmdet asserts); gradients are finite for every gamma >= 0.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import Tensor, nn

from focalkit import _checks
from focalkit.compat._common import PeerAssertionError
from focalkit.losses.box import ciou_loss, diou_loss, giou_loss, iou_loss
from focalkit.losses.quality import (distribution_focal_loss, probabilities_to_logits, quality_focal_loss,
                                     varifocal_loss)
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss

__all__ = ["CIoULoss", "DIoULoss", "DistributionFocalLoss", "FocalLoss", "GIoULoss", "IoULoss", "QualityFocalLoss",
           "VarifocalLoss", "register"]

_EPS = torch.finfo(torch.float32).eps  # mmdet's weight_reduce_loss: sum / (avg_factor + eps)


class _MMDetLoss(nn.Module):
    def __init__(self, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = _checks.reduction(reduction)
        self.loss_weight = loss_weight

    def _reduction(self, reduction_override: Optional[str], avg_factor: Any) -> tuple[str, Any]:
        """(reduction for focalkit, normalizer): mmdet's ``weight_reduce_loss`` rules."""
        if reduction_override not in (None, "none", "mean", "sum"):
            raise PeerAssertionError(f"Expected `reduction_override` to be None, 'none', 'mean' or 'sum', "
                                     f"got {reduction_override!r}.")
        reduction = reduction_override if reduction_override else self.reduction
        if avg_factor is None:
            return reduction, None
        if reduction == "mean":
            return "sum", avg_factor + _EPS
        if reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        return "none", None


def _sigmoid_only(use_sigmoid: bool, name: str) -> None:
    if use_sigmoid is not True:
        raise PeerAssertionError(f"Only sigmoid {name} supported now (use_sigmoid=True).")


def _sample_weight(weight: Optional[Tensor], n: int) -> Optional[Tensor]:
    """A per-sample weight ``(N,)`` as ``(N, 1)``, to weigh every class of the sample."""
    if weight is None:
        return None
    if weight.dim() != 1 or weight.shape[0] != n:
        _checks.fail("weight", f"to have shape ({n},), one value per sample", f"shape {tuple(weight.shape)}")
    return weight.view(-1, 1)


class FocalLoss(_MMDetLoss):
    """mmdet's ``FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, reduction="mean", loss_weight=1.0,
    activated=False)``."""

    def __init__(self, use_sigmoid: bool = True, gamma: float = 2.0, alpha: float = 0.25, reduction: str = "mean",
                 loss_weight: float = 1.0, activated: bool = False) -> None:
        _sigmoid_only(use_sigmoid, "focal loss")
        super().__init__(reduction, loss_weight)
        self.use_sigmoid, self.gamma, self.alpha, self.activated = use_sigmoid, gamma, alpha, activated

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None) -> Tensor:
        reduction, norm = self._reduction(reduction_override, avg_factor)
        x = probabilities_to_logits(pred, self.activated)
        if target.dim() == x.dim() and not target.is_floating_point():
            target = target.to(x.dtype)
        if weight is not None and weight.shape != x.shape:
            if weight.dim() >= 1 and weight.shape[0] == x.shape[0] and weight.numel() == x.shape[0]:
                weight = weight.view(-1, 1)
            elif weight.numel() == x.numel():
                weight = weight.view(x.shape[0], -1)
            else:
                raise PeerAssertionError(f"Expected `weight` of shape ({x.shape[0]},), {tuple(x.shape)} or "
                                         f"({x.numel()},), got shape {tuple(weight.shape)}.")
        return self.loss_weight * sigmoid_focal_loss(x, target, alpha=self.alpha, gamma=self.gamma, weight=weight,
                                                     reduction=reduction, normalizer=norm, soft_target="pt")


class QualityFocalLoss(_MMDetLoss):
    """mmdet's ``QualityFocalLoss(use_sigmoid=True, beta=2.0, reduction="mean", loss_weight=1.0, activated=False)``."""

    def __init__(self, use_sigmoid: bool = True, beta: float = 2.0, reduction: str = "mean",
                 loss_weight: float = 1.0, activated: bool = False) -> None:
        _sigmoid_only(use_sigmoid, "QFL")
        super().__init__(reduction, loss_weight)
        self.use_sigmoid, self.beta, self.activated = use_sigmoid, beta, activated

    def forward(self, pred: Tensor, target: Any, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None) -> Tensor:
        reduction, norm = self._reduction(reduction_override, avg_factor)
        n = pred.shape[0] if pred.dim() else 0
        w = _sample_weight(weight, n)
        kw = dict(beta=self.beta, weight=w, activated=self.activated)
        if reduction == "none":  # the per-sample loss: its classes summed
            return self.loss_weight * quality_focal_loss(pred, target, reduction="none", **kw).sum(1)
        if reduction == "mean" and norm is None:
            reduction, norm = "sum", float(max(1, n))
        return self.loss_weight * quality_focal_loss(pred, target, reduction=reduction, normalizer=norm, **kw)


class VarifocalLoss(_MMDetLoss):
    """mmdet's ``VarifocalLoss(use_sigmoid=True, alpha=0.75, gamma=2.0, iou_weighted=True, reduction="mean",
    loss_weight=1.0)``."""

    def __init__(self, use_sigmoid: bool = True, alpha: float = 0.75, gamma: float = 2.0, iou_weighted: bool = True,
                 reduction: str = "mean", loss_weight: float = 1.0) -> None:
        _sigmoid_only(use_sigmoid, "varifocal loss")
        if alpha < 0:
            raise PeerAssertionError(f"Expected `alpha` to be >= 0, got {alpha}.")
        super().__init__(reduction, loss_weight)
        self.use_sigmoid, self.alpha, self.gamma, self.iou_weighted = use_sigmoid, alpha, gamma, iou_weighted

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None) -> Tensor:
        reduction, norm = self._reduction(reduction_override, avg_factor)
        if pred.shape != target.shape:
            raise PeerAssertionError(f"Expected `target` of pred's shape {tuple(pred.shape)}, got {tuple(target.shape)}.")
        return self.loss_weight * varifocal_loss(pred, target, alpha=self.alpha, gamma=self.gamma,
                                                 iou_weighted=self.iou_weighted, weight=weight, reduction=reduction,
                                                 normalizer=norm)


class DistributionFocalLoss(_MMDetLoss):
    """mmdet's ``DistributionFocalLoss(reduction="mean", loss_weight=1.0)``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None) -> Tensor:
        reduction, norm = self._reduction(reduction_override, avg_factor)
        return self.loss_weight * distribution_focal_loss(pred, target, weight=weight, reduction=reduction,
                                                          normalizer=norm)


class _BoxLoss(_MMDetLoss):
    def __init__(self, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.eps = eps

    def _call(self, fn, pred: Tensor, target: Tensor, weight: Optional[Tensor], avg_factor: Any,
              reduction_override: Optional[str], **kw: Any) -> Tensor:
        reduction, norm = self._reduction(reduction_override, avg_factor)
        if weight is not None and weight.dim() > 1:  # mmdet: (N, 4) weights, their mean per box
            if weight.shape != pred.shape:
                raise PeerAssertionError(f"Expected a 2-D `weight` of pred's shape {tuple(pred.shape)}, "
                                         f"got {tuple(weight.shape)}.")
            weight = weight.mean(-1)
        return self.loss_weight * fn(pred, target, eps=self.eps, weight=weight, reduction=reduction, normalizer=norm,
                                     **kw)


class IoULoss(_BoxLoss):
    """mmdet's ``IoULoss(linear=False, eps=1e-6, reduction="mean", loss_weight=1.0, mode="log")``."""

    def __init__(self, linear: bool = False, eps: float = 1e-6, reduction: str = "mean", loss_weight: float = 1.0,
                 mode: str = "log") -> None:
        if mode not in ("linear", "square", "log"):
            raise PeerAssertionError(f"Expected `mode` to be 'linear', 'square' or 'log', got {mode!r}.")
        if linear:
            mode = "linear"
            warnings.warn('DeprecationWarning: Setting "linear=True" in IOULoss is deprecated, please use '
                          '"mode=`linear`" instead.', stacklevel=2)
        super().__init__(eps, reduction, loss_weight)
        self.linear, self.mode = linear, mode

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None, **kwargs: Any) -> Tensor:
        return self._call(iou_loss, pred, target, weight, avg_factor, reduction_override, mode=self.mode)


class GIoULoss(_BoxLoss):
    """mmdet's ``GIoULoss(eps=1e-6, reduction="mean", loss_weight=1.0)``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None, **kwargs: Any) -> Tensor:
        return self._call(giou_loss, pred, target, weight, avg_factor, reduction_override)


class DIoULoss(_BoxLoss):
    """mmdet's ``DIoULoss(eps=1e-6, reduction="mean", loss_weight=1.0)``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None, **kwargs: Any) -> Tensor:
        return self._call(diou_loss, pred, target, weight, avg_factor, reduction_override)


class CIoULoss(_BoxLoss):
    """mmdet's ``CIoULoss(eps=1e-6, reduction="mean", loss_weight=1.0)``: the aspect term where IoU > 0.5."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, avg_factor: Any = None,
                reduction_override: Optional[str] = None, **kwargs: Any) -> Tensor:
        return self._call(ciou_loss, pred, target, weight, avg_factor, reduction_override, iou_gate=0.5)


def register(registry: Any, prefix: str = "FK") -> list:
    """Add every class here to ``registry`` (e.g. ``mmdet.registry.MODELS``) as ``prefix + name`` (no dot:
    mmengine reads ``a.b`` as scope ``a``), so mmdet config dicts can name them: ``loss_cls=dict(type="FKFocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0)``.
    Returns the names registered. The registry is passed in: this module never imports mmdet."""
    names = []
    for cls in (FocalLoss, QualityFocalLoss, VarifocalLoss, DistributionFocalLoss, IoULoss, GIoULoss, DIoULoss,
                CIoULoss):
        registry.register_module(name=prefix + cls.__name__, module=cls, force=True)
        names.append(prefix + cls.__name__)
    return names
