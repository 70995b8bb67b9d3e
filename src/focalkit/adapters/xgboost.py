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

from typing import Optional, Sequence

import xgboost as xgb

from focalkit.adapters import _gbdt
from focalkit.adapters._gbdt import DEFAULT_HESSIAN_FLOOR

__all__ = ["FocalObjective", "SoftmaxFocalObjective", "focal_metric", "focal_objective", "softmax_focal_metric",
           "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(margin, label, weight) from the native (preds, DMatrix) or sklearn (y, preds, sample_weight) call."""
    if isinstance(b, xgb.DMatrix):
        w = b.get_weight()
        return a, b.get_label(), (w if w.size else None)
    return b, a, sample_weight


class FocalObjective(_gbdt.BinaryFocalObjective):
    __doc__ = _gbdt.BinaryFocalObjective.__doc__
    _unpack = staticmethod(_unpack)


class SoftmaxFocalObjective(_gbdt.SoftmaxFocalObjective):
    __doc__ = _gbdt.SoftmaxFocalObjective.__doc__
    _unpack = staticmethod(_unpack)


def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                    hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> FocalObjective:
    """Binary focal objective on raw margins. See :class:`FocalObjective` and docs/adapters.md."""
    return FocalObjective(gamma, alpha, hessian_floor)


def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                            hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> SoftmaxFocalObjective:
    """Multi-class softmax focal objective (``num_class`` = K). See :class:`SoftmaxFocalObjective`."""
    return SoftmaxFocalObjective(gamma, weight, hessian_floor)


# ``custom_metric`` for xgb.train: (name, mean focal loss) on raw margins.
focal_metric, softmax_focal_metric = _gbdt.metrics(_unpack, lambda name, value: (name, value))
