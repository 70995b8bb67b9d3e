"""Focal objectives and metrics for LightGBM (``lgb.train`` with a callable objective, and
``LGBMClassifier(objective=...)``).

LightGBM starts custom objectives from raw score 0; pass ``init_score`` (e.g.
``obj.init_margin(y)``) to start from the best constant, and add it back to ``predict(raw_score=True)``.
With a callable objective, ``LGBMClassifier.predict_proba`` returns raw scores: use
:class:`FocalLGBMClassifier`, which does all of this (and is a scikit-learn classifier).

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
import numpy as np

from focalkit.adapters import _gbdt, _sklearn

__all__ = ["FocalLGBMClassifier", "FocalObjective", "SoftmaxFocalObjective", "focal_metric", "focal_objective", "softmax_focal_metric",
           "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(raw score, label, weight) from the native (preds, Dataset) or sklearn (y, preds, weight) call."""
    if isinstance(b, lgb.Dataset):
        return a, b.get_label(), b.get_weight()
    return b, a, sample_weight


# The public objectives and metrics, bound to LightGBM's argument order; the metrics are ``feval`` /
# ``eval_metric`` callables returning (name, mean focal loss, higher is better).
(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
 softmax_focal_metric) = _gbdt.library_api(
    _unpack, lambda name, value, native: (name, value, False), __name__)


class FocalLGBMClassifier(_sklearn.FocalClassifier):
    """A scikit-learn classifier: LightGBM with the focal objective (binary sigmoid or multi-class
    softmax focal loss, chosen by the number of classes), starting from the prior margin.

    ``predict_proba`` gives probabilities (LightGBM's own ``LGBMClassifier`` with a callable objective
    returns raw scores), no built-in metric is computed on raw scores (``metric="None"``), and
    ``eval_set`` is scored with the focal loss (early stopping with ``early_stopping_rounds``). Every
    other keyword (``num_leaves=15``, ``min_child_samples=5``, ...) is a LightGBM parameter.

    Example:
        >>> import numpy as np
        >>> from focalkit.adapters.lightgbm import FocalLGBMClassifier
        >>> X = np.random.default_rng(0).normal(size=(300, 3)); y = np.where(X[:, 0] > 1.0, "fraud", "ok")
        >>> clf = FocalLGBMClassifier(gamma=2.0, n_estimators=20, num_leaves=7).fit(X, y)
        >>> clf.classes_.tolist(), clf.predict_proba(X[:2]).shape
        (['fraud', 'ok'], (2, 2))
    """

    _library = "lightgbm"

    def _objective_classes(self):
        return FocalObjective, SoftmaxFocalObjective

    def _fit_booster(self, X, y, w, evals, n_estimators, verbose):
        params = self._booster_params({"objective": self.objective_, "learning_rate": self.learning_rate,
                                       "verbose": -1, "metric": "None", "num_threads": 0}, "num_class", "seed")
        train = lgb.Dataset(X, y, weight=w, init_score=self._margin(len(y)), params={"verbose": -1, "feature_pre_filter": False})
        valid = [lgb.Dataset(Xv, yv, init_score=self._margin(len(yv)), reference=train) for Xv, yv in evals]
        metric = self._metric()

        def feval(preds, data):
            return "focal", metric(preds, data.get_label().astype(np.int64), data.get_weight()), False

        callbacks = []
        if self.early_stopping_rounds is not None and valid:
            callbacks.append(lgb.early_stopping(int(self.early_stopping_rounds), verbose=verbose))
        self.booster_ = lgb.train(params, train, n_estimators, valid_sets=valid, feval=feval if valid else None,
                                  callbacks=callbacks)
        self.best_iteration_ = self.booster_.best_iteration or n_estimators
        self.n_features_in_ = X.shape[1]

    def _raw_scores(self, X):
        return self.booster_.predict(X, raw_score=True, num_iteration=self.best_iteration_)
