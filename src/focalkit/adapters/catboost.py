"""Focal objectives and metrics for CatBoost (``CatBoost`` / ``CatBoostClassifier`` with
``loss_function=`` and ``eval_metric=``), and :class:`FocalCatBoostClassifier`.

The binary objective implements ``calc_ders_range``: CatBoost hands it NumPy arrays of a block of
objects, and the whole block goes through the C kernel at once (no per-object Python loop). The
multi-class objective implements ``calc_ders_multi``, which CatBoost calls once per object (its API
for multi-dimensional custom losses has no batched form): correct, but far slower than CatBoost's
built-in ``MultiClass`` (``benchmarks/RESULTS.md``). CatBoost's own ``Focal:focal_alpha=..;focal_gamma=..``
loss is binary only; see ``docs/adapters.md`` for when it is the better choice.

CatBoost maximises: its derivatives are those of minus the loss, which these objects return.

Example:
    >>> import numpy as np, catboost as cb
    >>> from focalkit.adapters.catboost import focal_objective, focal_metric
    >>> X = np.random.default_rng(0).normal(size=(200, 3)); y = (X[:, 0] > 1.0).astype(int)
    >>> obj = focal_objective(gamma=2.0, alpha=0.25)
    >>> model = cb.CatBoost({"loss_function": obj, "eval_metric": focal_metric(2.0, 0.25), "iterations": 10,
    ...                      "verbose": 0}).fit(cb.Pool(X, y, baseline=np.full(len(y), obj.init_margin(y))))
"""

from __future__ import annotations

from typing import Optional, Sequence

import catboost as cb
import numpy as np

from focalkit.adapters import _gbdt, _sklearn

__all__ = ["FocalCatBoostClassifier", "FocalObjective", "SoftmaxFocalObjective", "focal_metric", "focal_objective",
           "softmax_focal_metric", "softmax_focal_objective"]


class FocalObjective:
    """Binary sigmoid focal loss for CatBoost (``calc_ders_range`` on whole blocks)."""

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 hessian_floor: float = _gbdt.DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, self.alpha, self.hessian_floor = _gbdt.check_params(gamma, alpha, hessian_floor)

    def calc_ders_range(self, approxes, targets, weights):
        # CatBoost calls this for blocks of about 1,000 objects, twice per iteration: the lean path
        # (one kernel call, no re-validation beyond the kernel's own label check) keeps its cost near
        # the kernel's. The result is (n, 2): minus the gradient, minus the floored Hessian.
        return _gbdt.binary_ders_block(approxes, targets, weights, self.gamma, self.alpha, self.hessian_floor)

    def init_margin(self, label, sample_weight=None) -> float:
        """The constant raw score minimising the focal loss (CatBoost's ``baseline``)."""
        return _gbdt.binary_init_margin(label, self.gamma, self.alpha, sample_weight)

    def __repr__(self) -> str:
        return f"FocalObjective(gamma={self.gamma}, alpha={self.alpha}, hessian_floor={self.hessian_floor})"


class SoftmaxFocalObjective:
    """Multi-class softmax focal loss for CatBoost (``calc_ders_multi``, one object a call: CatBoost's
    API). The Hessian is the exact diagonal, floored, as for XGBoost and LightGBM."""

    def __init__(self, gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                 hessian_floor: float = _gbdt.DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, _, self.hessian_floor = _gbdt.check_params(gamma, None, hessian_floor)
        self.weight = _gbdt.check_class_weight(weight)

    def calc_ders_multi(self, approxes, target, weight):
        z = np.asarray(approxes, dtype=np.float64).reshape(1, -1)
        g, h = _gbdt.softmax_grad_hess(z, [target], self.gamma, self.weight,
                                       None if weight is None else [weight], self.hessian_floor)
        return -g[0], np.diag(-h[0])

    def init_margin(self, label, n_cls: int, sample_weight=None) -> np.ndarray:
        return _gbdt.softmax_init_margin(label, n_cls, self.gamma, self.weight, sample_weight)

    def __repr__(self) -> str:
        return f"SoftmaxFocalObjective(gamma={self.gamma}, hessian_floor={self.hessian_floor})"


class _Metric:
    """A CatBoost ``eval_metric`` object: the (weighted) mean focal loss, lower is better."""

    def __init__(self, binary: bool, gamma: float, alpha: Optional[float], weight) -> None:
        self.binary, self.gamma, self.alpha, self.weight = binary, gamma, alpha, weight

    def is_max_optimal(self) -> bool:
        return False

    def evaluate(self, approxes, target, weight):
        w = None if weight is None else np.asarray(weight, dtype=np.float64)
        if self.binary:
            loss = _gbdt._binary(np.asarray(approxes[0]), target, self.gamma, self.alpha, None, 1.0, True, False)[0]
        else:
            z = np.stack([np.asarray(a, dtype=np.float64) for a in approxes], axis=1)
            loss = _gbdt._softmax(z, target, self.gamma, self.weight, None, 1.0, True, False)[0]
        wsum = float(loss.size if w is None else w.sum())
        return float(loss.sum() if w is None else (loss * w).sum()), wsum

    def get_final_error(self, error, weight):
        return error / weight if weight else 0.0


def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                    hessian_floor: float = _gbdt.DEFAULT_HESSIAN_FLOOR) -> FocalObjective:
    """Binary focal objective on raw scores. See :class:`FocalObjective` and docs/adapters.md."""
    return FocalObjective(gamma, alpha, hessian_floor)


def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                            hessian_floor: float = _gbdt.DEFAULT_HESSIAN_FLOOR) -> SoftmaxFocalObjective:
    """Multi-class softmax focal objective (``classes_count`` = K). See :class:`SoftmaxFocalObjective`."""
    return SoftmaxFocalObjective(gamma, weight, hessian_floor)


def focal_metric(gamma: float = 2.0, alpha: Optional[float] = None) -> _Metric:
    """The binary focal loss as a CatBoost ``eval_metric`` object (weighted mean, lower is better)."""
    gamma, alpha, _ = _gbdt.check_params(gamma, alpha, 1.0)
    return _Metric(True, gamma, alpha, None)


def softmax_focal_metric(gamma: float = 2.0, weight: Optional[Sequence[float]] = None) -> _Metric:
    """The softmax focal loss as a CatBoost ``eval_metric`` object (``classes_count`` = K)."""
    gamma, _, _ = _gbdt.check_params(gamma, None, 1.0)
    return _Metric(False, gamma, None, _gbdt.check_class_weight(weight))


class FocalCatBoostClassifier(_sklearn.FocalClassifier):
    """A scikit-learn classifier: CatBoost with the focal objective (binary sigmoid, or multi-class
    softmax through CatBoost's per-object API), starting from the prior margin (``baseline``). Every
    other keyword (``depth=4``, ...) is a CatBoost parameter.

    Example:
        >>> import numpy as np
        >>> from focalkit.adapters.catboost import FocalCatBoostClassifier
        >>> X = np.random.default_rng(0).normal(size=(300, 3)); y = (X[:, 0] > 1.0).astype(int)
        >>> FocalCatBoostClassifier(gamma=2.0, n_estimators=20, depth=3).fit(X, y).predict_proba(X[:2]).shape
        (2, 2)
    """

    _library = "catboost"
    _MARGIN_KEYS = ("baseline", None, None)
    _POOL = ("cat_features", "text_features", "embedding_features", "graph")

    def _library_classifier(self):
        return cb.CatBoostClassifier

    def _objective_classes(self):
        return FocalObjective, SoftmaxFocalObjective

    def _fit_booster(self, X, y, w, evals, n_estimators, verbose, fit):
        k = len(self.classes_)
        gamma, alpha, _ = _gbdt.check_params(self.gamma, self.alpha, self.hessian_floor)
        metric = focal_metric(gamma, alpha) if k == 2 else softmax_focal_metric(gamma)
        params = self._booster_params({"loss_function": self.objective_, "eval_metric": metric,
                                       "learning_rate": self.learning_rate, "iterations": n_estimators,
                                       "verbose": bool(verbose), "allow_writing_files": False, "thread_count": -1},
                                      "classes_count", "random_seed")
        kw = dict(fit.params)
        # the Pool's arguments, given to fit or to the constructor (as CatBoostClassifier takes them)
        self.pool_args_ = {name: kw.pop(name, None) if kw.get(name) is not None else params.pop(name, None)
                           for name in self._POOL}
        self.pool_args_ = {name: v for name, v in self.pool_args_.items() if v is not None}
        for name in self._POOL:
            params.pop(name, None)
        pool_eval = {n: v for n, v in self.pool_args_.items() if n != "graph"}
        train = cb.Pool(X, y, weight=w, baseline=self._start(len(y), fit.margin), **self.pool_args_)
        valid = [cb.Pool(ev.X, ev.y, weight=ev.w, baseline=self._start(len(ev.y), ev.margin), **pool_eval)
                 for ev in evals]
        es = int(self.early_stopping_rounds) if self.early_stopping_rounds is not None and valid else None
        es = kw.pop("early_stopping_rounds", None) if kw.get("early_stopping_rounds") is not None and valid else es
        kw.pop("early_stopping_rounds", None)
        use_best = kw.pop("use_best_model", None)
        self.booster_ = cb.CatBoost(params)
        self.booster_.fit(train, eval_set=valid[-1] if valid else None, early_stopping_rounds=es,
                          use_best_model=(es is not None) if use_best is None else bool(use_best) and bool(valid),
                          **kw)  # every other CatBoostClassifier.fit keyword, as CatBoost takes it
        self.best_iteration_ = self.booster_.tree_count_

    def _raw_scores(self, X):
        pool = cb.Pool(X, **{n: v for n, v in getattr(self, "pool_args_", {}).items() if n != "graph"}) \
            if getattr(self, "pool_args_", None) else X
        return self.booster_.predict(pool, prediction_type="RawFormulaVal")
