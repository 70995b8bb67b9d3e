"""Focal objectives and metrics for XGBoost (``xgb.train(..., obj=...)`` and ``XGBClassifier``).

Example:
    >>> import numpy as np, xgboost as xgb
    >>> from focalkit.adapters.xgboost import focal_objective, focal_metric
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 1.0).astype(float)
    >>> obj = focal_objective(gamma=2.0, alpha=0.25)
    >>> dtrain = xgb.DMatrix(X, y, base_margin=np.full(len(y), obj.init_margin(y)))
    >>> booster = xgb.train({"disable_default_eval_metric": 1}, dtrain, 10, obj=obj,
    ...                     custom_metric=focal_metric(gamma=2.0, alpha=0.25))
    >>> clf = xgb.XGBClassifier(n_estimators=10, objective=focal_objective(gamma=2.0)).fit(X, y)
    >>> clf.predict_proba(X).shape
    (200, 2)
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import xgboost as xgb

from focalkit.adapters import _gbdt
from focalkit.adapters._gbdt import DEFAULT_HESSIAN_FLOOR

__all__ = ["focal_metric", "focal_objective", "softmax_focal_metric", "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(margin, label, weight) from either the native (preds, dmatrix) or sklearn (y, preds) call."""
    if isinstance(b, xgb.DMatrix):
        w = b.get_weight()
        return a, b.get_label(), (w if w.size else None)
    return b, a, sample_weight


class FocalObjective:
    """Binary sigmoid focal loss on raw margins: gradient and Hessian in closed form (float64).

    Callable both as ``obj(preds, dtrain)`` (``xgb.train``) and ``obj(y_true, y_pred,
    sample_weight=None)`` (``XGBClassifier(objective=obj)``). Sample weights multiply gradient and
    Hessian; every Hessian returned is at least ``hessian_floor``. Labels in (0, 1) use the linear
    (expected hard-label) soft form.
    """

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, self.alpha, self.hessian_floor = _gbdt.check_params(gamma, alpha, hessian_floor)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        margin, label, w = _unpack(a, b, sample_weight)
        return _gbdt.binary_grad_hess(margin, label, self.gamma, self.alpha, w, self.hessian_floor)

    def init_margin(self, label, sample_weight=None) -> float:
        """The best constant margin (use as ``base_margin`` / ``base_score`` in margin space)."""
        return _gbdt.binary_init_margin(label, self.gamma, self.alpha, sample_weight)

    def __repr__(self) -> str:
        return f"FocalObjective(gamma={self.gamma}, alpha={self.alpha}, hessian_floor={self.hessian_floor})"


class SoftmaxFocalObjective:
    """Multi-class softmax focal loss on raw scores (n, K): exact softmax gradient w.r.t. every class
    and the exact Hessian diagonal, floored at ``hessian_floor``. Use with ``num_class`` = K."""

    def __init__(self, gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, _, self.hessian_floor = _gbdt.check_params(gamma, None, hessian_floor)
        self.weight = _gbdt.check_class_weight(weight)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        margin, label, w = _unpack(a, b, sample_weight)
        margin = np.asarray(margin, dtype=np.float64)
        n = np.asarray(label).size
        g, h = _gbdt.softmax_grad_hess(margin.reshape(n, -1), label, self.gamma, self.weight, w,
                                       self.hessian_floor)
        return g.reshape(margin.shape), h.reshape(margin.shape)

    def __repr__(self) -> str:
        return f"SoftmaxFocalObjective(gamma={self.gamma}, hessian_floor={self.hessian_floor})"


def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                    hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> FocalObjective:
    """Binary focal objective for XGBoost. See :class:`FocalObjective`."""
    return FocalObjective(gamma, alpha, hessian_floor)


def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                            hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> SoftmaxFocalObjective:
    """Multi-class softmax focal objective for XGBoost. See :class:`SoftmaxFocalObjective`."""
    return SoftmaxFocalObjective(gamma, weight, hessian_floor)


def focal_metric(gamma: float = 2.0, alpha: Optional[float] = None):
    """``custom_metric`` for ``xgb.train``: the (weighted) mean binary focal loss on raw margins."""
    gamma, alpha, _ = _gbdt.check_params(gamma, alpha, 1.0)

    def focal(preds: np.ndarray, dmatrix: xgb.DMatrix) -> Tuple[str, float]:
        w = dmatrix.get_weight()
        return "focal", _gbdt.binary_loss(preds, dmatrix.get_label(), gamma, alpha, w if w.size else None)

    return focal


def softmax_focal_metric(gamma: float = 2.0, weight: Optional[Sequence[float]] = None):
    """``custom_metric`` for ``xgb.train``: the (weighted) mean softmax focal loss on raw scores."""
    gamma, _, _ = _gbdt.check_params(gamma, None, 1.0)
    cw = _gbdt.check_class_weight(weight)

    def softmax_focal(preds: np.ndarray, dmatrix: xgb.DMatrix) -> Tuple[str, float]:
        label = dmatrix.get_label()
        w = dmatrix.get_weight()
        return "softmax_focal", _gbdt.softmax_loss(np.asarray(preds).reshape(label.size, -1), label, gamma, cw,
                                                   w if w.size else None)

    return softmax_focal
