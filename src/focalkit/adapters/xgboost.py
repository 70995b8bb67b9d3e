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

import xgboost as xgb

from focalkit.adapters import _gbdt

__all__ = ["FocalObjective", "SoftmaxFocalObjective", "focal_metric", "focal_objective", "softmax_focal_metric",
           "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(margin, label, weight) from the native (preds, DMatrix) or sklearn (y, preds, sample_weight) call."""
    if isinstance(b, xgb.DMatrix):
        w = b.get_weight()
        return a, b.get_label(), (w if w.size else None)
    return b, a, sample_weight


# The public objectives and metrics, bound to XGBoost's argument order; the metrics are ``custom_metric``
# callables returning (name, mean focal loss) on raw margins.
(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
 softmax_focal_metric) = _gbdt.library_api(_unpack, lambda name, value: (name, value), __name__)
