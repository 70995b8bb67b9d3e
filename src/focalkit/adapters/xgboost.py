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

import numpy as np
import xgboost as xgb

from focalkit.adapters import _gbdt, _sklearn

__all__ = ["FocalObjective", "FocalXGBClassifier", "SoftmaxFocalObjective", "focal_metric", "focal_objective", "softmax_focal_metric",
           "softmax_focal_objective"]


def _unpack(a, b, sample_weight):
    """(margin, label, weight) from the native (preds, DMatrix) or sklearn (y, preds, sample_weight) call."""
    if isinstance(b, xgb.DMatrix):
        w = b.get_weight()
        return a, b.get_label(), (w if w.size else None)
    return b, a, sample_weight


# The public objectives and metrics, bound to XGBoost's argument order; the metrics return
# (name, mean focal loss) as ``xgb.train``'s ``custom_metric`` and the number alone as
# ``XGBClassifier(eval_metric=...)`` (its scikit-learn API), on raw margins.
(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
 softmax_focal_metric) = _gbdt.library_api(
    _unpack, lambda name, value, native: (name, value) if native else value, __name__)


class FocalXGBClassifier(_sklearn.FocalClassifier):
    """A scikit-learn classifier: XGBoost with the focal objective (binary sigmoid or multi-class
    softmax focal loss, chosen by the number of classes), starting from the prior margin.

    ``gamma`` and ``alpha`` are the focal loss's (as in the LightGBM and CatBoost classifiers); XGBoost's
    own are reached as ``min_split_loss`` and ``reg_alpha``. The booster is trained with
    ``base_score=0`` and the prior as ``base_margin``, and the prior is added back at prediction: with
    the raw objectives, a ``base_margin`` given to ``fit`` and forgotten at predict time shifts every
    probability (docs/adapters.md). Every other keyword (``max_depth=4``, ...) is an XGBoost parameter.

    Example:
        >>> import numpy as np
        >>> from focalkit.adapters.xgboost import FocalXGBClassifier
        >>> X = np.random.default_rng(0).normal(size=(300, 3)); y = (X[:, 0] > 1.0).astype(int)
        >>> clf = FocalXGBClassifier(gamma=2.0, n_estimators=20, max_depth=3).fit(X, y)
        >>> clf.predict_proba(X[:2]).shape
        (2, 2)
    """

    _library = "xgboost"
    _MARGIN_KEYS = ("base_margin", "sample_weight_eval_set", "base_margin_eval_set")

    def _library_classifier(self):
        return xgb.XGBClassifier

    def _objective_classes(self):
        return FocalObjective, SoftmaxFocalObjective

    def _fit_booster(self, X, y, w, evals, n_estimators, verbose, fit):
        params = self._booster_params({"learning_rate": self.learning_rate, "disable_default_eval_metric": 1,
                                       "base_score": 0.0, "verbosity": 0}, "num_class", "seed")
        # XGBClassifier's DMatrix arguments, not booster parameters
        self.enable_categorical_ = bool(params.pop("enable_categorical", False))
        kw = dict(fit.params)
        dm = dict(enable_categorical=self.enable_categorical_)
        train = xgb.DMatrix(X, y, weight=w, base_margin=self._start(len(y), fit.margin),
                            feature_weights=kw.pop("feature_weights", None), **dm)
        valid = [(xgb.DMatrix(ev.X, ev.y, weight=ev.w, base_margin=self._start(len(ev.y), ev.margin), **dm),
                  f"valid_{i}") for i, ev in enumerate(evals)]
        metric = self._metric()

        def custom_metric(preds, data):
            wt = data.get_weight()
            return "focal", metric(preds, data.get_label().astype(np.int64), wt if wt.size else None)

        es = int(self.early_stopping_rounds) if self.early_stopping_rounds is not None and valid else None
        self.booster_ = xgb.train(params, train, n_estimators, evals=valid, obj=self.objective_,
                                  custom_metric=custom_metric if valid else None, early_stopping_rounds=es,
                                  verbose_eval=verbose, xgb_model=kw.pop("xgb_model", None))
        _sklearn.no_keywords_left(kw, "XGBClassifier")
        self.best_iteration_ = (self.booster_.best_iteration + 1) if es is not None else \
            self.booster_.num_boosted_rounds()

    def _raw_scores(self, X):
        return self.booster_.predict(xgb.DMatrix(X, enable_categorical=self.enable_categorical_), output_margin=True,
                                     iteration_range=(0, self.best_iteration_))
