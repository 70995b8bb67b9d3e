"""Closed-form focal-family mathematics on tensors.

Everything here is pure: tensors in, tensors out, no autograd, no argument checks. Each function
returns the per-element loss together with its first (and, where asked, second) derivative with
respect to the logits, evaluated in log space so that it stays finite for every finite logit and
every ``gamma >= 0``. The backends, the GBDT adapters and the tests all use these functions, so no
formula is written twice. The derivations are in ``docs/math.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): the torch-free adapters import ``focalkit.core.weights`` without
# pulling torch in through the other modules.
_WHERE = {
    "SigmoidFocalTerms": "sigmoid", "sigmoid_focal_hard": "sigmoid", "sigmoid_focal_linear": "sigmoid",
    "sigmoid_focal_pt": "sigmoid", "sigmoid_focal_signed": "sigmoid", "sigmoid_focal_bce": "sigmoid", "bce_modulator": "sigmoid", "sigmoid_focal_quality": "sigmoid", "softmax_focal_dense": "softmax",
    "softmax_focal_classwise": "softmax", "softmax_focal_hard": "softmax",
    "softmax_focal_hard_hess_diag": "softmax", "focal_star": "star", "quality_focal": "quality", "varifocal": "quality", "distribution_focal": "quality",
    "class_balanced": "weights",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"focalkit.core.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'focalkit.core' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
