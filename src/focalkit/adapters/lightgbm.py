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

from sklearn.utils.class_weight import compute_sample_weight

from focalkit import _checks
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
    _MARGIN_KEYS = ("init_score", "eval_sample_weight", "eval_init_score")

    def _library_classifier(self):
        return lgb.LGBMClassifier

    def _objective_classes(self):
        return FocalObjective, SoftmaxFocalObjective

    def _fit_booster(self, X, y, w, evals, n_estimators, verbose, fit):
        params = self._booster_params({"objective": self.objective_, "learning_rate": self.learning_rate,
                                       "verbose": -1, "metric": "None", "num_threads": 0}, "num_class", "seed")
        kw = dict(fit.params)
        ds = {k: kw.pop(k) for k in ("feature_name", "categorical_feature") if k in kw}
        train = lgb.Dataset(X, y, weight=w, init_score=self._start(len(y), fit.margin),
                            params={"verbose": -1, "feature_pre_filter": False}, **ds)
        class_weights = list(kw.pop("eval_class_weight", None) or [])
        valid = []
        for i, ev in enumerate(evals):
            wv = ev.w
            if i < len(class_weights) and class_weights[i] is not None:
                cw = compute_sample_weight(_class_weight_by_index(class_weights[i], self.classes_), ev.y)
                wv = cw if wv is None else wv * cw
            valid.append(lgb.Dataset(ev.X, ev.y, weight=wv, init_score=self._start(len(ev.y), ev.margin),
                                     reference=train))
        metric = self._metric()
        fevals = [lambda preds, data: ("focal", metric(preds, data.get_label().astype(np.int64), data.get_weight()),
                                       False)]
        fevals += [self._lgb_metric(m) for m in _as_list(kw.pop("eval_metric", None))]
        callbacks = list(kw.pop("callbacks", None) or [])
        if self.early_stopping_rounds is not None and valid:
            callbacks.append(lgb.early_stopping(int(self.early_stopping_rounds), verbose=verbose))
        self.booster_ = lgb.train(params, train, n_estimators, valid_sets=valid, feval=fevals if valid else None,
                                  valid_names=kw.pop("eval_names", None), callbacks=callbacks,
                                  init_model=kw.pop("init_model", None))
        _sklearn.no_keywords_left(kw, "LGBMClassifier")
        self.best_iteration_ = self.booster_.best_iteration or n_estimators
        self.n_features_in_ = X.shape[1]

    def _lgb_metric(self, m):
        """``eval_metric`` as LGBMClassifier takes it: a metric name, computed here on the probabilities
        (LightGBM's built-in metrics would read the focal objective's raw scores as probabilities), or a
        callable ``f(y_true, y_prob[, weight[, group]]) -> (name, value, is_higher_better)``."""
        if callable(m):
            import inspect

            n_args = len(inspect.signature(m).parameters)

            def feval(preds, data):
                p = self._proba(preds)
                args = (data.get_label().astype(np.int64), p, data.get_weight(), data.get_group())[:max(2, n_args)]
                return m(*args)
            return feval
        name = _checks.choice("eval_metric", m, tuple(_NAMED))
        fn, higher = _NAMED[name]

        def feval(preds, data):
            return name, float(fn(data.get_label().astype(np.int64), self._proba(preds), data.get_weight(),
                                  len(self.classes_))), higher
        return feval

    def _raw_scores(self, X):
        return self.booster_.predict(X, raw_score=True, num_iteration=self.best_iteration_)


def _as_list(value):
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _class_weight_by_index(cw, classes):
    """An ``eval_class_weight`` entry keyed by class label, re-keyed by class index; "balanced" as is."""
    return cw if isinstance(cw, str) else {int(np.searchsorted(classes, k)): v for k, v in cw.items()}


def _logloss(y, p, w, k):
    from sklearn.metrics import log_loss

    return log_loss(y, p, sample_weight=w, labels=list(range(k)))


def _error(y, p, w, k):
    pred = (p > 0.5).astype(np.int64) if p.ndim == 1 else p.argmax(1)
    return np.average(pred != y, weights=w)


def _auc(y, p, w, k):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, p, sample_weight=w, multi_class="ovr", labels=list(range(k)) if k > 2 else None)


def _average_precision(y, p, w, k):
    from sklearn.metrics import average_precision_score

    return average_precision_score(y, p, sample_weight=w)


# LightGBM's metric names (and aliases) for classification, computed on probabilities: (function, higher is better)
_NAMED = {"binary_logloss": (_logloss, False), "binary": (_logloss, False), "multi_logloss": (_logloss, False),
          "multiclass": (_logloss, False), "softmax": (_logloss, False), "logloss": (_logloss, False),
          "binary_error": (_error, False), "multi_error": (_error, False), "error": (_error, False),
          "auc": (_auc, True), "auc_mu": (_auc, True), "average_precision": (_average_precision, True)}
