"""Focal objectives and metrics for LightGBM (``lgb.train`` with a callable objective, and
``LGBMClassifier(objective=...)``).

LightGBM starts custom objectives from raw score 0; pass ``init_score`` (e.g.
``obj.init_margin(y)``) to start from the best constant. With a callable objective,
``LGBMClassifier.predict_proba`` returns raw scores: apply the sigmoid (binary) or softmax yourself.

Example:
    >>> import numpy as np, lightgbm as lgb
    >>> from focalkit.adapters.lightgbm import focal_objective, focal_metric
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 1.0).astype(float)
    >>> obj = focal_objective(gamma=2.0, alpha=0.25)
    >>> data = lgb.Dataset(X, y, init_score=np.full(len(y), obj.init_margin(y)))
    >>> booster = lgb.train({"objective": obj, "verbose": -1}, data, 10, feval=focal_metric(2.0, 0.25))
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import lightgbm as lgb
import numpy as np

from focalkit.adapters import _gbdt
from focalkit.adapters._gbdt import DEFAULT_HESSIAN_FLOOR

__all__ = ["focal_metric", "focal_objective", "softmax_focal_metric", "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(raw score, label, weight) from the native (preds, Dataset) or sklearn (y, preds, weight) call."""
    if isinstance(b, lgb.Dataset):
        return a, b.get_label(), b.get_weight()
    return b, a, sample_weight


class FocalObjective:
    """Binary sigmoid focal loss on raw scores; see :class:`focalkit.adapters.xgboost.FocalObjective`."""

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, self.alpha, self.hessian_floor = _gbdt.check_params(gamma, alpha, hessian_floor)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = _unpack(a, b, sample_weight)
        return _gbdt.binary_grad_hess(score, label, self.gamma, self.alpha, w, self.hessian_floor)

    def init_margin(self, label, sample_weight=None) -> float:
        """The best constant raw score (use as ``init_score``)."""
        return _gbdt.binary_init_margin(label, self.gamma, self.alpha, sample_weight)


class SoftmaxFocalObjective:
    """Multi-class softmax focal loss on raw scores (n, K); use with ``num_class`` = K."""

    def __init__(self, gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, _, self.hessian_floor = _gbdt.check_params(gamma, None, hessian_floor)
        self.weight = _gbdt.check_class_weight(weight)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = _unpack(a, b, sample_weight)
        score = np.asarray(score, dtype=np.float64)
        n = np.asarray(label).size
        g, h = _gbdt.softmax_grad_hess(score.reshape(n, -1), label, self.gamma, self.weight, w, self.hessian_floor)
        return g.reshape(score.shape), h.reshape(score.shape)


def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                    hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> FocalObjective:
    return FocalObjective(gamma, alpha, hessian_floor)


def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                            hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> SoftmaxFocalObjective:
    return SoftmaxFocalObjective(gamma, weight, hessian_floor)


def focal_metric(gamma: float = 2.0, alpha: Optional[float] = None):
    """``feval`` for ``lgb.train`` (and ``eval_metric`` for the sklearn API): mean binary focal loss."""
    gamma, alpha, _ = _gbdt.check_params(gamma, alpha, 1.0)

    def focal(a, b, sample_weight=None):
        score, label, w = _unpack(a, b, sample_weight)
        return "focal", _gbdt.binary_loss(score, label, gamma, alpha, w), False

    return focal


def softmax_focal_metric(gamma: float = 2.0, weight: Optional[Sequence[float]] = None):
    """``feval`` for ``lgb.train``: mean softmax focal loss on raw scores (n, K)."""
    gamma, _, _ = _gbdt.check_params(gamma, None, 1.0)
    cw = _gbdt.check_class_weight(weight)

    def softmax_focal(a, b, sample_weight=None):
        score, label, w = _unpack(a, b, sample_weight)
        n = np.asarray(label).size
        return "softmax_focal", _gbdt.softmax_loss(np.asarray(score).reshape(n, -1), label, gamma, cw, w), False

    return softmax_focal
