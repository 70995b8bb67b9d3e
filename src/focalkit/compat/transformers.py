"""Hugging Face transformers' detection focal losses (``transformers/loss/``, transformers 5) on focalkit.

Their names, signatures and reductions:

* :func:`sigmoid_focal_loss` ``(inputs, targets, num_boxes, alpha=0.25, gamma=2)``, from
  ``loss_for_object_detection`` (DETR's mask loss, and what Deformable / Conditional / DAB-DETR, LW-DETR
  and RT-DETR import): the mean over dim 1 (the queries), summed, divided by ``num_boxes``.
* :func:`deformable_detr_sigmoid_focal_loss`: Deformable DETR's ``loss_labels`` (also Conditional DETR
  and DAB-DETR), the above times the number of queries, i.e. the sum divided by ``num_boxes``.
* :func:`grounding_dino_sigmoid_focal_loss`: Grounding DINO's own (and MM-Grounding DINO's), the sum
  divided by ``num_boxes`` for inputs of any shape (its logits arrive flattened by a text mask).

``alpha < 0`` switches the weighting off, as in transformers. The loss is focalkit's: the stable form,
finite where transformers' ``(1 - p_t) ** gamma`` times BCE is NaN (an infinite logit, ``gamma < 1``
at a saturated sigmoid), with the gradient computed in the forward pass.

And the whole Deformable DETR loss on focalkit's kernel: :func:`deformable_detr_loss` has the
signature of transformers' ``DeformableDetrForObjectDetectionLoss`` (``model.loss_function``), with
the classification term computed from the matched class indices directly (background = C, no one-hot
tensor); matching, box losses and auxiliary losses are transformers' own. ``docs/recipes.md`` trains a
model with it.

Found wrong in transformers' own (``docs/compat.md``): RT-DETR's ``loss_labels_focal`` calls
``sigmoid_focal_loss(src_logits, target, self.alpha, self.gamma)``, so ``alpha`` (0.75) lands in
``num_boxes`` and ``gamma`` (2.0) in ``alpha``, which makes the negatives' weight ``1 - 2 = -1``; the
scalar it returns then meets ``.mean(1)`` (an IndexError), and its targets are an integer one-hot that
BCE refuses. The ``"focal"`` loss of RT-DETR cannot run; the default (``"vfl"``) does not use it.
"""

from __future__ import annotations

import functools
from typing import Any, Union

import torch
from torch import Tensor

from focalkit import _checks
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss as _sigmoid_focal_loss

__all__ = ["deformable_detr_loss", "deformable_detr_sigmoid_focal_loss", "grounding_dino_sigmoid_focal_loss",
           "sigmoid_focal_loss"]

NumBoxes = Union[int, float, Tensor]


def _summed(inputs: Tensor, targets: Tensor, divide_by: NumBoxes, alpha: float, gamma: float) -> Tensor:
    """The focal loss summed and divided by ``divide_by`` (a number or a tensor, never read on the host)."""
    _checks.float_tensor("inputs", inputs)
    if isinstance(targets, Tensor) and not targets.is_floating_point():
        targets = targets.to(inputs.dtype)  # transformers' one-hot targets may be integers
    alpha = _checks.number("alpha", alpha)
    return _sigmoid_focal_loss(inputs, targets, alpha=None if alpha < 0 else alpha, gamma=gamma, reduction="sum",
                               normalizer=divide_by)


def _times(num_boxes: NumBoxes, factor: int) -> NumBoxes:
    return num_boxes * factor if isinstance(num_boxes, Tensor) else float(num_boxes) * factor


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, num_boxes: NumBoxes, alpha: float = 0.25,
                       gamma: float = 2) -> Tensor:
    """transformers' ``sigmoid_focal_loss`` (``loss_for_object_detection``): ``loss.mean(1).sum() / num_boxes``
    of the focal loss ``alpha_t (1 - p_t)^gamma BCE``; ``inputs`` of at least 2 dims."""
    _checks.float_tensor("inputs", inputs)
    if inputs.dim() < 2:
        _checks.fail("inputs", "to have at least 2 dims (transformers averages over dim 1)",
                     f"shape {tuple(inputs.shape)}")
    return _summed(inputs, targets, _times(num_boxes, inputs.shape[1]), alpha, gamma)


def deformable_detr_sigmoid_focal_loss(inputs: Tensor, targets: Tensor, num_boxes: NumBoxes, alpha: float = 0.25,
                                       gamma: float = 2) -> Tensor:
    """Deformable DETR's classification loss: ``sigmoid_focal_loss(...) * inputs.shape[1]``, the number of
    queries; that is the sum over queries and classes divided by ``num_boxes``."""
    _checks.float_tensor("inputs", inputs)
    if inputs.dim() < 2:
        _checks.fail("inputs", "to have shape (batch, queries, classes)", f"shape {tuple(inputs.shape)}")
    return _summed(inputs, targets, num_boxes, alpha, gamma)


def grounding_dino_sigmoid_focal_loss(inputs: Tensor, targets: Tensor, num_boxes: NumBoxes, alpha: float = 0.25,
                                      gamma: float = 2) -> Tensor:
    """Grounding DINO's ``sigmoid_focal_loss``: ``loss.sum() / num_boxes``, inputs of any shape."""
    return _summed(inputs, targets, num_boxes, alpha, gamma)


def _labels_loss(criterion: Any, outputs: dict, targets: list, indices: list, num_boxes: NumBoxes) -> dict:
    """Deformable DETR's ``loss_labels`` on class indices: the unmatched queries are background (C)."""
    logits = outputs["logits"]
    batch_idx, src_idx = criterion._get_source_permutation_idx(indices)
    classes = torch.full(logits.shape[:2], criterion.num_classes, dtype=torch.int64, device=logits.device)
    classes[batch_idx, src_idx] = torch.cat([t["class_labels"][j] for t, (_, j) in zip(targets, indices)])
    alpha = criterion.focal_alpha
    loss = _sigmoid_focal_loss(logits, classes, alpha=None if alpha < 0 else alpha, gamma=2.0, reduction="sum",
                               normalizer=num_boxes)
    return {"loss_ce": loss}


@functools.lru_cache(maxsize=None)
def _criterion_class() -> type:
    """transformers' ``DeformableDetrImageLoss`` with :func:`_labels_loss`, made once (not every step)."""
    from transformers.loss.loss_deformable_detr import DeformableDetrImageLoss

    return type("FocalkitDeformableDetrImageLoss", (DeformableDetrImageLoss,), {"loss_labels": _labels_loss})


def deformable_detr_loss(logits: Tensor, labels: list, device: Any, pred_boxes: Tensor, config: Any,
                         outputs_class: Any = None, outputs_coord: Any = None, **kwargs: Any) -> tuple:
    """transformers' ``DeformableDetrForObjectDetectionLoss`` with focalkit's classification loss: set it as
    ``model.loss_function`` of a ``DeformableDetrForObjectDetection`` (or a Conditional / DAB-DETR).
    Returns ``(loss, loss_dict, auxiliary_outputs)`` as transformers' does, with the same weights."""
    from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher
    from transformers.loss.loss_for_object_detection import _set_aux_loss

    matcher = DeformableDetrHungarianMatcher(class_cost=config.class_cost, bbox_cost=config.bbox_cost,
                                             giou_cost=config.giou_cost)
    criterion = _criterion_class()(matcher=matcher, num_classes=config.num_labels, focal_alpha=config.focal_alpha,
                           losses=["labels", "boxes", "cardinality"]).to(device)
    outputs: dict = {"logits": logits, "pred_boxes": pred_boxes}
    auxiliary = None
    if config.auxiliary_loss:
        auxiliary = _set_aux_loss(outputs_class, outputs_coord)
        outputs["auxiliary_outputs"] = auxiliary
    loss_dict = criterion(outputs, labels)
    base = {"loss_ce": 1, "loss_bbox": config.bbox_loss_coefficient, "loss_giou": config.giou_loss_coefficient}
    weights = dict(base)
    if config.auxiliary_loss:  # one set per decoder layer but the last, as transformers names them
        for i in range(config.decoder_layers - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items()})
    loss = sum(loss_dict[k] * weights[k] for k in loss_dict if k in weights)
    return loss, loss_dict, auxiliary
