"""segmentation_models_pytorch's ``losses.FocalLoss`` (SMP 0.6 conventions) on focalkit.

SMP's conventions, reproduced:

* ``mode="binary"``: every element an independent logit, targets of any shape with as many elements;
  ``mode="multiclass"``: ``(N, C, *)`` logits, ``(N, *)`` class indices, **one-vs-rest sigmoid** per
  class (not softmax); ``mode="multilabel"``: ``(N, C, *)`` logits and targets.
* Soft targets take ``p_t = exp(-BCE)`` (focalkit's ``soft_target="bce"``); ``alpha`` (default None:
  off) weights positives by ``alpha``, negatives by ``1 - alpha``.
* ``ignore_index``: elements (binary) or pixels (multiclass) whose target equals it are left out.
  Left out as a 0 weight, not by SMP's boolean indexing, so nothing is read on the host (binary
  ``reduction="none"`` excepted: it returns the kept elements, a shape read from the targets).
* ``reduction="mean"`` (default): the mean over the elements kept, per class, then the mean over
  classes (``class_weights``: their weighted mean); ``"sum"``: the per-class sums, then that mean;
  ``"batchwise_mean"``: the sum over the batch, then the mean over classes and pixels (over classes
  only with ``ignore_index``, and in binary mode the sum). In the class modes ``"none"`` returns the
  mean, as SMP does; in binary mode it returns the kept elements, flattened.
* ``normalized=True``: each class's loss divided by the sum of its focal factors (clamped at 1e-6);
  ``reduced_threshold``: the reduced focal factor ``((1 - p_t) / th)^gamma`` for ``p_t >= th``, 1 below.
* ``from_logits=False``: probabilities, clamped to ``[eps, 1 - eps]`` and turned into logits (``log p``
  in multiclass mode, as SMP does).

Differences (``docs/compat.md``): a bad ``mode`` raises an error that is both ``ValueError`` and
``AssertionError`` (SMP asserts); ``multilabel`` with ``ignore_index`` ignores per element (SMP raises
``IndexError``); a mean over nothing is 0 where SMP gives NaN; gradients are finite where SMP's
``(1 - pt).pow(gamma)`` gives NaN (gamma < 1).
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.loss import _Loss

from focalkit import _checks, _device
from focalkit.compat._common import PeerAssertionError
from focalkit.core.sigmoid import bce_modulator
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss

__all__ = ["FocalLoss", "BINARY_MODE", "MULTICLASS_MODE", "MULTILABEL_MODE"]

#: segmentation_models_pytorch's mode names (``smp.losses.BINARY_MODE``, ...).
BINARY_MODE = "binary"
#: One class per pixel among C (class indices).
MULTICLASS_MODE = "multiclass"
#: Several labels per pixel (C binary channels).
MULTILABEL_MODE = "multilabel"
_REDUCTIONS = ("mean", "sum", "none", "batchwise_mean")


class FocalLoss(_Loss):
    """SMP's ``FocalLoss(mode, alpha=None, gamma=2.0, ignore_index=None, from_logits=True, eps=1e-7,
    reduction="mean", normalized=False, reduced_threshold=None, class_weights=None)``."""

    def __init__(self, mode: str, alpha: Optional[float] = None, gamma: Optional[float] = 2.0,
                 ignore_index: Optional[int] = None, from_logits: bool = True, eps: float = 1e-7,
                 reduction: Optional[str] = "mean", normalized: bool = False,
                 reduced_threshold: Optional[float] = None, class_weights: Optional[List[float]] = None) -> None:
        if mode not in (BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE):
            raise PeerAssertionError(f"Expected `mode` to be 'binary', 'multiclass' or 'multilabel', got {mode!r}.")
        super().__init__()
        if class_weights is not None and mode == BINARY_MODE:
            raise ValueError("class_weights are not supported with mode=binary")
        self.mode = mode
        self.alpha = None if alpha is None else _checks.number("alpha", alpha, lo=0.0, hi=1.0)
        self.gamma = _checks.gamma(gamma)
        self.ignore_index = ignore_index
        self.from_logits = from_logits
        self.eps = eps
        self.reduction = _checks.choice("reduction", reduction, _REDUCTIONS)
        self.normalized = normalized
        self.reduced_threshold = None if reduced_threshold is None else \
            _checks.number("reduced_threshold", reduced_threshold, lo=0.0, hi=1.0, lo_open=True)
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float)

    def forward(self, y_pred: Tensor, y_true: Tensor) -> Tensor:
        _checks.float_tensor("y_pred", y_pred)
        x = y_pred
        if not self.from_logits:
            x = torch.clamp(x, self.eps, 1 - self.eps)
            x = torch.log(x) if self.mode == MULTICLASS_MODE else torch.log(x / (1 - x))
        if self.mode == BINARY_MODE:
            if y_true.numel() != x.numel():
                _checks.fail("y_true", f"to have as many elements as y_pred ({x.numel()})", y_true.numel())
            return self._binary(x.reshape(-1), y_true.reshape(-1))
        if x.dim() < 2:
            _checks.fail("y_pred", "to have shape (N, C, *)", f"shape {tuple(x.shape)}")
        n_cls = x.shape[1]
        valid = None
        if self.mode == MULTICLASS_MODE:
            if y_true.shape != x.shape[:1] + x.shape[2:]:
                _checks.fail("y_true", f"to have shape {tuple(x.shape[:1] + x.shape[2:])} for y_pred (N, C, *)",
                             f"shape {tuple(y_true.shape)}")
            classes = torch.arange(n_cls, device=x.device).view((1, n_cls) + (1,) * (x.dim() - 2))
            t = y_true.unsqueeze(1) == classes  # one-vs-rest targets, as bool: no one-hot copy in float
            if self.ignore_index is not None:
                valid = (y_true != self.ignore_index).unsqueeze(1)
        else:
            if y_true.shape != x.shape:
                _checks.fail("y_true", f"to have y_pred's shape {tuple(x.shape)}", f"shape {tuple(y_true.shape)}")
            t = y_true
            if self.ignore_index is not None:
                valid = y_true != self.ignore_index
                t = torch.where(valid, t, torch.zeros_like(t))
        return self._classes(x, t, valid)

    # ---- helpers -----------------------------------------------------------------------------------

    def _plain(self) -> bool:
        return not self.normalized and self.reduced_threshold is None

    def _elementwise(self, x: Tensor, t: Tensor, weight: Optional[Tensor]) -> Tensor:
        """The per-element loss on the options the kernels do not have (normalized, reduced): eager."""
        t = t.to(x.dtype)
        loss = bce_modulator(x, t, self.gamma, self.reduced_threshold) * \
            F.binary_cross_entropy_with_logits(x, t, reduction="none")
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        return loss if weight is None else loss * weight

    def _binary(self, x: Tensor, t: Tensor) -> Tensor:
        red = "sum" if self.reduction == "batchwise_mean" else self.reduction
        keep = None if self.ignore_index is None else t != self.ignore_index
        if keep is not None and red == "none":  # SMP returns the kept elements: a shape read on the host
            x, t, keep = x[keep], t[keep], None
        weight = count = None
        if keep is not None:  # reduced: the ignored elements as a 0 weight, no boolean indexing (no host sync)
            x = torch.where(keep, x, torch.zeros_like(x))  # never seen, as in SMP: a NaN there stays out
            t = torch.where(keep, t, torch.zeros_like(t))
            weight = keep.to(x.dtype)
            count = keep.sum().to(torch.float64 if x.dtype == torch.float64 else torch.float32).clamp(min=1.0)
        t = t.to(x.dtype)
        if self._plain():
            if weight is None:
                return sigmoid_focal_loss(x, t, alpha=self.alpha, gamma=self.gamma, soft_target="bce", reduction=red)
            return sigmoid_focal_loss(x, t, alpha=self.alpha, gamma=self.gamma, soft_target="bce", weight=weight,
                                      reduction="sum", normalizer=count if red == "mean" else None)
        loss = self._elementwise(x, t, weight)
        if self.normalized:
            factor = bce_modulator(x, t, self.gamma, self.reduced_threshold)
            loss = loss / (factor if weight is None else factor * weight).sum().clamp_min(1e-6)
        if red == "mean":
            return loss.mean() if count is None else (loss.sum(dtype=count.dtype) / count).to(loss.dtype)
        return loss.sum() if red == "sum" else loss

    def _classes(self, x: Tensor, t: Tensor, valid: Optional[Tensor]) -> Tensor:
        """Per class c, the mean (or sum) over its kept elements; then the (weighted) mean over classes."""
        n_cls = x.shape[1]
        along = (1, n_cls) + (1,) * (x.dim() - 2)
        other = [0] + list(range(2, x.dim()))
        cw = None if self.class_weights is None else _device.constant(self.class_weights, x.device, x.dtype)
        w_sum = float(n_cls) if cw is None else cw.sum()
        # the factor each class's terms get: its weight, over its count of kept elements for the mean
        per_class = None if cw is None else cw.view(along)
        norm = w_sum
        if self.reduction in ("mean", "none"):
            if valid is None:  # every class has the same count: one normalizer
                norm = w_sum * max(1, math.prod(x.shape[d] for d in other))
            else:
                counts = valid.expand(x.shape).sum(dim=other, keepdim=True).clamp(min=1).to(x.dtype)
                per_class = (1.0 if per_class is None else per_class) / counts
        elif self.reduction == "batchwise_mean" and valid is None:  # SMP: per class a (*spatial) map of sums
            norm = norm * math.prod(x.shape[2:])  # over the batch, then the mean over classes and pixels
        weight = per_class
        if valid is not None:
            weight = valid.to(x.dtype) if weight is None else weight * valid
        if self._plain():
            return sigmoid_focal_loss(x, t, alpha=self.alpha, gamma=self.gamma, weight=weight, soft_target="bce",
                                      reduction="sum", normalizer=norm)
        loss = self._elementwise(x, t, weight)
        if self.normalized:  # each class over the sum of its own (kept) focal factors
            factor = bce_modulator(x, t.to(x.dtype), self.gamma, self.reduced_threshold)
            if valid is not None:
                factor = factor * valid
            loss = loss / factor.sum(dim=other, keepdim=True).clamp_min(1e-6)
        return loss.sum() / norm
