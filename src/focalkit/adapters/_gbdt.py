"""Shared NumPy-level pieces of the XGBoost and LightGBM objectives, computed from focalkit's
closed forms in float64 (core: no autodiff). Tree learners take a Newton step -sum(g) / sum(h), so
every Hessian handed over is floored to ``hessian_floor`` > 0; focal loss is not convex where the
true class's probability is small (docs/gbdt.md)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

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
    """Sample weights: one finite value >= 0 per row (the package's one rule for weights)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.size == 0:
        return None
    if w.size != n:
        _checks.fail("sample_weight", f"to have {n} entries", f"{w.size}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = w[~np.isfinite(w) | (w < 0)][0]
        _checks.fail("sample_weight", "to hold finite values >= 0", f"a value {float(bad)!r}")
    return w


def binary_labels(label) -> np.ndarray:
    """Binary labels: finite values in [0, 1] (0/1, or soft targets); NaN, 2 or -1 are refused."""
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(y) | (y < 0) | (y > 1)
    if bad.any():
        _checks.fail("label", "to hold finite values in [0, 1] for a binary focal objective", f"a value {float(y[bad][0])!r}")
    return y


def class_labels(label, n_cls: int) -> np.ndarray:
    """Class labels for a softmax objective: whole numbers in [0, num_class)."""
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(y) | (y < 0) | (y >= n_cls) | (y != np.round(y))
    if bad.any():
        _checks.fail("label", f"to hold class indices 0, 1, ..., {n_cls - 1} (num_class={n_cls})",
                     f"a value {float(y[bad][0])!r}")
    return y.astype(np.int64)


def class_scores(score, n: int) -> np.ndarray:
    """Raw scores (n, K) of a softmax objective; K < 2 means the library was not given ``num_class``."""
    z = np.asarray(score, dtype=np.float64)
    if n == 0 or z.size % max(n, 1) or z.size // max(n, 1) < 2:
        _checks.fail("num_class", f"(the library's parameter) to be set to the number of classes K >= 2 for a "
                     f"softmax focal objective: raw scores must be (n, K) for n={n} labels",
                     f"scores of shape {z.shape}")
    return z.reshape(n, -1)


def _binary_terms(margin, label, gamma: float, alpha: Alpha, hessian: bool):
    """Closed forms in the margin's precision (XGBoost hands over float32 and keeps float32 gradients;
    everything else is float64). All-0/1 labels take the one-term hard-label form, half the work;
    labels in (0, 1) use the linear (expected hard-label) soft form."""
    m = np.asarray(margin).reshape(-1)
    dtype = np.float32 if m.dtype == np.float32 else np.float64
    x = torch.from_numpy(np.ascontiguousarray(m, dtype=dtype))
    lab = binary_labels(label)
    if lab.size != m.size:
        _checks.fail("label", f"to have one value per raw score ({m.size})", f"{lab.size} labels")
    y = torch.from_numpy(np.ascontiguousarray(lab, dtype=dtype))
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
    n = np.asarray(label).size
    z = _t(class_scores(margin, n))
    y = torch.from_numpy(class_labels(label, z.shape[1]))
    _check_weight_length(weight, z.shape[1])
    coef = _row_coef(y, weight, sample_weight, z.shape[0])
    _, g = softmax_focal_hard(z, y, gamma, coef)
    h = softmax_focal_hard_hess_diag(z, y, gamma, coef)
    return g.numpy(), np.maximum(h.numpy(), hessian_floor)


def softmax_loss(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight=None) -> float:
    n = np.asarray(label).size
    z = _t(class_scores(margin, n))
    y = torch.from_numpy(class_labels(label, z.shape[1]))
    _check_weight_length(weight, z.shape[1])
    loss, _ = softmax_focal_hard(z, y, gamma, _row_coef(y, weight, None, z.shape[0]))
    w = _sample_weight(sample_weight, loss.numel())
    return float(np.average(loss.numpy(), weights=w)) if loss.numel() else 0.0


def _check_weight_length(weight, n_cls: int) -> None:
    if weight is not None and weight.size != n_cls:
        _checks.fail("weight", f"to have one entry per class ({n_cls})", f"{weight.size} entries")


def _row_coef(y: torch.Tensor, weight, sample_weight, n: int):
    coef = torch.ones(n, dtype=torch.float64) if weight is None else torch.from_numpy(weight)[y]
    w = _sample_weight(sample_weight, n)
    return coef if w is None else coef * torch.from_numpy(w)


def binary_init_margin(label, gamma: float, alpha: Alpha, sample_weight=None) -> float:
    """The constant raw score that minimises the (weighted) mean focal loss: a tree ensemble's start.

    Found by bisection on the mean gradient over [-50, 50] (the loss of a constant is one-dimensional).
    """
    y = binary_labels(label)
    if y.size == 0:
        _checks.fail("label", "to be non-empty (the prior margin of no labels is undefined)", "0 labels")
    w = _sample_weight(sample_weight, y.size)
    if w is not None and not w.sum() > 0:
        _checks.fail("sample_weight", "to have a positive sum", "all zero")
    lo, hi = -50.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        g, _ = binary_grad_hess(np.full_like(y, mid), y, gamma, alpha, sample_weight)
        if g.sum() > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


Unpack = Callable[..., tuple]  # (a, b, sample_weight) -> (raw score, label, weight or None)


class BinaryFocalObjective:
    """Binary sigmoid focal loss on raw margins: gradient and Hessian in closed form.

    One callable for both APIs of its library: ``obj(preds, data)`` (native training) and
    ``obj(y_true, y_pred, sample_weight=None)`` (scikit-learn wrapper). Sample weights multiply
    gradient and Hessian; every Hessian returned is at least ``hessian_floor``. Labels in (0, 1) use
    the linear (expected hard-label) soft form.
    """

    _unpack: Unpack

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, self.alpha, self.hessian_floor = check_params(gamma, alpha, hessian_floor)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = type(self)._unpack(a, b, sample_weight)
        return binary_grad_hess(score, label, self.gamma, self.alpha, w, self.hessian_floor)

    def init_margin(self, label, sample_weight=None) -> float:
        """The constant raw score minimising the focal loss (``base_margin`` / ``init_score``)."""
        return binary_init_margin(label, self.gamma, self.alpha, sample_weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, alpha={self.alpha}, hessian_floor={self.hessian_floor})"


class SoftmaxFocalObjective:
    """Multi-class softmax focal loss on raw scores (n, K): the exact softmax gradient w.r.t. every
    class and the exact Hessian diagonal, floored at ``hessian_floor``. Use with ``num_class`` = K."""

    _unpack: Unpack

    def __init__(self, gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, _, self.hessian_floor = check_params(gamma, None, hessian_floor)
        self.weight = check_class_weight(weight)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = type(self)._unpack(a, b, sample_weight)
        score = np.asarray(score, dtype=np.float64)
        n = np.asarray(label).size
        g, h = softmax_grad_hess(class_scores(score, n), label, self.gamma, self.weight, w, self.hessian_floor)
        return g.reshape(score.shape), h.reshape(score.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, hessian_floor={self.hessian_floor})"


def metrics(unpack: Unpack, wrap: Callable[[str, float], tuple]):
    """(binary, softmax) metric factories for a library: ``wrap(name, value)`` is its return form."""

    def focal_metric(gamma: float = 2.0, alpha: Optional[float] = None):
        gamma, alpha, _ = check_params(gamma, alpha, 1.0)

        def focal(a, b, sample_weight=None):
            score, label, w = unpack(a, b, sample_weight)
            return wrap("focal", binary_loss(score, label, gamma, alpha, w))

        return focal

    def softmax_focal_metric(gamma: float = 2.0, weight: Optional[Sequence[float]] = None):
        gamma, _, _ = check_params(gamma, None, 1.0)
        cw = check_class_weight(weight)

        def softmax_focal(a, b, sample_weight=None):
            score, label, w = unpack(a, b, sample_weight)
            n = np.asarray(label).size
            return wrap("softmax_focal", softmax_loss(class_scores(score, n), label, gamma, cw, w))

        return softmax_focal

    return focal_metric, softmax_focal_metric


def library_api(unpack: Unpack, wrap: Callable[[str, float], tuple], module: str):
    """The public objects of one library's adapter module, bound to its argument ``unpack``:
    ``(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
    softmax_focal_metric)``."""
    binary = type("FocalObjective", (BinaryFocalObjective,),
                  {"__doc__": BinaryFocalObjective.__doc__, "__module__": module, "_unpack": staticmethod(unpack)})
    softmax = type("SoftmaxFocalObjective", (SoftmaxFocalObjective,),
                   {"__doc__": SoftmaxFocalObjective.__doc__, "__module__": module, "_unpack": staticmethod(unpack)})

    def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                        hessian_floor: float = DEFAULT_HESSIAN_FLOOR):
        """Binary focal objective on raw margins. See :class:`FocalObjective` and docs/adapters.md."""
        return binary(gamma, alpha, hessian_floor)

    def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                                hessian_floor: float = DEFAULT_HESSIAN_FLOOR):
        """Multi-class softmax focal objective (``num_class`` = K). See :class:`SoftmaxFocalObjective`."""
        return softmax(gamma, weight, hessian_floor)

    focal_objective.__module__ = softmax_focal_objective.__module__ = module
    focal_metric, softmax_focal_metric = metrics(unpack, wrap)
    return binary, softmax, focal_objective, softmax_focal_objective, focal_metric, softmax_focal_metric
