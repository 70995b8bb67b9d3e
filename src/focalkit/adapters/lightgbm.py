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

import lightgbm as lgb

from focalkit.adapters import _gbdt

__all__ = ["FocalObjective", "SoftmaxFocalObjective", "focal_metric", "focal_objective", "softmax_focal_metric",
           "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(raw score, label, weight) from the native (preds, Dataset) or sklearn (y, preds, weight) call."""
    if isinstance(b, lgb.Dataset):
        return a, b.get_label(), b.get_weight()
    return b, a, sample_weight


# The public objectives and metrics, bound to LightGBM's argument order; the metrics are ``feval`` /
# ``eval_metric`` callables returning (name, mean focal loss, higher is better).
(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
 softmax_focal_metric) = _gbdt.library_api(_unpack, lambda name, value: (name, value, False), __name__)
