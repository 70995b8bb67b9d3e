"""``fvcore.nn``'s focal and GIoU losses on focalkit: ``sigmoid_focal_loss``, ``sigmoid_focal_loss_jit``,
``sigmoid_focal_loss_star``, ``sigmoid_focal_loss_star_jit``, ``giou_loss`` (fvcore 0.1.5: same
signatures, defaults, values and float32 output; ``alpha=-1``, the default, is no weighting).

The ``_jit`` names are the same functions scripted with ``torch.jit.script`` on first use (fvcore
scripts at import); they run in Python and cannot be serialised (``docs/compat.md``).

Differences (``docs/compat.md``): FL* soft targets use focalkit's expected-loss form (fvcore scales
the logit by ``2t - 1``, which equals it only for 0/1 targets); bad boxes raise ``ValueError`` where
fvcore uses ``assert`` (on CPU tensors: no host read of a CUDA tensor); focal gradients stay finite for ``gamma < 1``.
"""

# (no "from __future__ import annotations": TorchScript reads these annotations as types)

from typing import Any

import torch
from torch import Tensor

import focalkit as fk
from focalkit import _checks

__all__ = ["giou_loss", "sigmoid_focal_loss", "sigmoid_focal_loss_jit", "sigmoid_focal_loss_star",
           "sigmoid_focal_loss_star_jit"]


@torch.jit.ignore
def _focal(inputs: Tensor, targets: Tensor, alpha: float, gamma: float, reduction: str, star: bool) -> Tensor:
    x, y = inputs.float(), targets.float()  # fvcore computes, and returns, float32
    a = None if alpha < 0 else alpha
    if star:
        return fk.focal_loss_star(x, y, gamma=gamma, beta=0.0, alpha=a, reduction=reduction)
    return fk.sigmoid_focal_loss(x, y, alpha=a, gamma=gamma, reduction=reduction)


@torch.jit.ignore
def _giou(boxes1: Tensor, boxes2: Tensor, reduction: str, eps: float) -> Tensor:
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        # on readable CPU tensors only (fvcore's assert would synchronise a CUDA step, and break a trace)
        if _checks.can_read(b) and not bool(((b[..., 2] >= b[..., 0]) & (b[..., 3] >= b[..., 1])).all()):
            raise ValueError(f"Expected `{name}` to hold (x1, y1, x2, y2) boxes with x2 >= x1 and y2 >= y1.")
    return fk.giou_loss(boxes1, boxes2, reduction=reduction, eps=eps)


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = -1, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """fvcore's ``sigmoid_focal_loss``: ``alpha_t (1 - p_t)^gamma BCE``; ``alpha < 0`` is no weighting."""
    return _focal(inputs, targets, alpha, gamma, reduction, False)


def sigmoid_focal_loss_star(inputs: Tensor, targets: Tensor, alpha: float = -1, gamma: float = 1,
                            reduction: str = "none") -> Tensor:
    """fvcore's ``sigmoid_focal_loss_star``: FL* of the focal loss paper's appendix (``gamma`` scales the logit)."""
    return _focal(inputs, targets, alpha, gamma, reduction, True)


def giou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """fvcore's ``giou_loss`` of (x1, y1, x2, y2) boxes (fvcore asserts x2 >= x1 and y2 >= y1 on the CPU)."""
    return _giou(boxes1, boxes2, reduction, eps)


_SCRIPTED: dict = {}


def __getattr__(name: str) -> Any:
    if name in ("sigmoid_focal_loss_jit", "sigmoid_focal_loss_star_jit"):
        if name not in _SCRIPTED:
            fn = sigmoid_focal_loss if name == "sigmoid_focal_loss_jit" else sigmoid_focal_loss_star
            _SCRIPTED[name] = torch.jit.script(fn)
        return _SCRIPTED[name]
    raise AttributeError(f"module 'focalkit.compat.fvcore' has no attribute {name!r}")
