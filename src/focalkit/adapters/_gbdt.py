"""Shared NumPy-level pieces of the XGBoost and LightGBM objectives, computed from focalkit's
closed forms in float64 (core: no autodiff). Tree learners take a Newton step -sum(g) / sum(h), so
every Hessian handed over is floored to ``hessian_floor`` > 0; focal loss is not convex where the
true class's probability is small (docs/gbdt.md)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch

from focalkit import _checks
from focalkit.core import sigmoid_focal_hard, sigmoid_focal_linear, softmax_focal_hard, softmax_focal_hard_hess_diag

Alpha = Union[float, None]
DEFAULT_HESSIAN_FLOOR = 1e-6


def check_params(gamma: float, alpha: Alpha, hessian_floor: float) -> Tuple[float, Alpha, float]:
    gamma = _checks.gamma(gamma)
    alpha = None if alpha is None else _checks.number("alpha", alpha, lo=0.0, hi=1.0)
    floor = _checks.number("hessian_floor", hessian_floor, lo=0.0, lo_open=True)
    return gamma, alpha, floor


def check_class_weight(weight) -> Optional[np.ndarray]:
    if weight is None:
        return None
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        _checks.fail("weight", "to be a 1-D sequence of non-negative per-class weights", weight)
    return w


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _sample_weight(sample_weight, n: int) -> Optional[np.ndarray]:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.size == 0:
        return None
    if w.size != n:
        _checks.fail("sample_weight", f"to have {n} entries", f"{w.size}")
    return w


def _binary_terms(margin, label, gamma: float, alpha: Alpha, hessian: bool):
    """Closed forms in the margin's precision (XGBoost hands over float32 and keeps float32 gradients;
    everything else is float64). All-0/1 labels take the one-term hard-label form, half the work;
    labels in (0, 1) use the linear (expected hard-label) soft form."""
    m = np.asarray(margin).reshape(-1)
    dtype = np.float32 if m.dtype == np.float32 else np.float64
    x = torch.from_numpy(np.ascontiguousarray(m, dtype=dtype))
    y = torch.from_numpy(np.ascontiguousarray(np.asarray(label).reshape(-1), dtype=dtype))
    hard = bool(((y == 0) | (y == 1)).all())
    core = sigmoid_focal_hard if hard else sigmoid_focal_linear
    return core(x, y, gamma, alpha, hessian=hessian)


def binary_grad_hess(margin, label, gamma: float, alpha: Alpha, sample_weight=None,
                     hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> Tuple[np.ndarray, np.ndarray]:
    """dL/dmargin and max(d2L/dmargin2, floor) per row."""
    terms = _binary_terms(margin, label, gamma, alpha, hessian=True)
    g, h = terms.grad, terms.hess
    w = _sample_weight(sample_weight, g.numel())
    if w is not None:
        wt = torch.from_numpy(w).to(g.dtype)
        g, h = g * wt, h * wt
    return g.numpy(), h.clamp_min_(hessian_floor).numpy()


def binary_loss(margin, label, gamma: float, alpha: Alpha, sample_weight=None) -> float:
    loss = _binary_terms(np.asarray(margin, dtype=np.float64), label, gamma, alpha, hessian=False).loss.numpy()
    w = _sample_weight(sample_weight, loss.size)
    return float(np.average(loss, weights=w)) if loss.size else 0.0


def softmax_grad_hess(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight=None,
                      hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> Tuple[np.ndarray, np.ndarray]:
    """Gradient and floored Hessian diagonal, both (n, K), for raw scores (n, K) and labels (n,)."""
    z = _t(margin)
    y = torch.from_numpy(np.asarray(label).reshape(-1).astype(np.int64))
    coef = _row_coef(y, weight, sample_weight, z.shape[0])
    _, g = softmax_focal_hard(z, y, gamma, coef)
    h = softmax_focal_hard_hess_diag(z, y, gamma, coef)
    return g.numpy(), np.maximum(h.numpy(), hessian_floor)


def softmax_loss(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight=None) -> float:
    z = _t(margin)
    y = torch.from_numpy(np.asarray(label).reshape(-1).astype(np.int64))
    loss, _ = softmax_focal_hard(z, y, gamma, _row_coef(y, weight, None, z.shape[0]))
    w = _sample_weight(sample_weight, loss.numel())
    return float(np.average(loss.numpy(), weights=w)) if loss.numel() else 0.0


def _row_coef(y: torch.Tensor, weight, sample_weight, n: int):
    coef = torch.ones(n, dtype=torch.float64) if weight is None else torch.from_numpy(weight)[y]
    w = _sample_weight(sample_weight, n)
    return coef if w is None else coef * torch.from_numpy(w)


def binary_init_margin(label, gamma: float, alpha: Alpha, sample_weight=None) -> float:
    """The constant raw score that minimises the (weighted) mean focal loss: a tree ensemble's start.

    Found by bisection on the mean gradient over [-50, 50] (the loss of a constant is one-dimensional).
    """
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    lo, hi = -50.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        g, _ = binary_grad_hess(np.full_like(y, mid), y, gamma, alpha, sample_weight)
        if g.sum() > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)
