"""Closed-form focal-family mathematics on tensors.

Everything here is pure: tensors in, tensors out, no autograd, no argument checks. Each function
returns the per-element loss together with its first (and, where asked, second) derivative with
respect to the logits, evaluated in log space so that it stays finite for every finite logit and
every ``gamma >= 0``. The backends, the GBDT adapters and the tests all use these functions, so no
formula is written twice. The derivations are in ``docs/math.md``.
"""

from __future__ import annotations

from focalkit.core.sigmoid import (
    SigmoidFocalTerms,
    sigmoid_focal_hard,
    sigmoid_focal_linear,
    sigmoid_focal_pt,
)
from focalkit.core.softmax import softmax_focal_dense, softmax_focal_hard, softmax_focal_hard_hess_diag
from focalkit.core.star import focal_star
from focalkit.core.quality import quality_focal
from focalkit.core.weights import class_balanced

__all__ = [
    "SigmoidFocalTerms",
    "class_balanced",
    "focal_star",
    "quality_focal",
    "sigmoid_focal_hard",
    "sigmoid_focal_linear",
    "sigmoid_focal_pt",
    "softmax_focal_dense",
    "softmax_focal_hard",
    "softmax_focal_hard_hess_diag",
]
