"""scikit-learn classifiers on the focal objectives, shared by the XGBoost, LightGBM and CatBoost
adapters: ``predict_proba`` returns probabilities, ``predict`` labels, ``classes_`` holds any label
values, and the model starts from the prior margin (the constant raw score that minimises the focal
loss) and predicts with it added back, so nothing is forgotten between ``fit`` and ``predict``.

Parameters: ``gamma``, ``alpha`` (binary), ``class_balanced_beta`` (class-balanced weights of Cui et
al. from the training labels' counts, multiplied into the sample weights), ``hessian_floor``,
``n_estimators``, ``learning_rate``, ``early_stopping_rounds`` (on the focal metric of ``eval_set``),
``random_state``; every other keyword goes to the library's booster as a parameter.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (_check_sample_weight, assert_all_finite, check_consistent_length,
                                      check_is_fitted, column_or_1d, validate_data)

from focalkit import _checks
from focalkit.adapters import _gbdt
from focalkit.core.weights import class_balanced


class _Eval(NamedTuple):
    """One validation set: features, class indices, weights, a user's extra raw scores."""

    X: Any
    y: np.ndarray
    w: Optional[np.ndarray]
    margin: Optional[np.ndarray]


class _Fit(NamedTuple):
    """The user's extra raw scores for training, and the library's other fit keywords, as given."""

    margin: Optional[np.ndarray]
    params: Dict[str, Any]


def _plain_dtypes(dtypes):
    """numpy dtypes of a frame's columns; pandas' own (category, string) stand as object."""
    out = []
    for d in dtypes:
        try:
            out.append(np.dtype(d))
        except TypeError:
            out.append(np.dtype(object))
    return out


def no_keywords_left(params: Dict[str, Any], classifier: str) -> None:
    """A keyword of the wrapped classifier's ``fit`` that the adapter passed nowhere (a newer library's):
    said, never dropped silently."""
    if params:
        raise TypeError(f"focalkit does not pass {classifier}.fit's keyword(s) {sorted(params)} yet; "
                        "fit without them, or with the library's own classifier")


class FocalClassifier(ClassifierMixin, BaseEstimator):
    """Base class: a library adapter implements ``_fit_booster`` and ``_raw_scores``."""

    _library = ""

    def __init__(self, *, gamma: float = 2.0, alpha: Optional[float] = None,
                 class_balanced_beta: Optional[float] = None, hessian_floor: float = _gbdt.DEFAULT_HESSIAN_FLOOR,
                 n_estimators: int = 100, learning_rate: float = 0.1, early_stopping_rounds: Optional[int] = None,
                 random_state: Optional[int] = None, **params: Any) -> None:
        self.gamma = gamma
        self.alpha = alpha
        self.class_balanced_beta = class_balanced_beta
        self.hessian_floor = hessian_floor
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self._extra_params = dict(params)

    # every other keyword is a parameter too (clone, GridSearchCV)
    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        out = super().get_params(deep)
        out.update(self._extra_params)
        return out

    def set_params(self, **params: Any) -> "FocalClassifier":
        own = set(super().get_params(deep=False))
        for key, value in params.items():
            if key in own:
                setattr(self, key, value)
            else:
                self._extra_params[key] = value
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # the boosters route missing values
        return tags

    def _objective(self, n_cls: int):
        """The library's own objective class (bound to its argument order)."""
        gamma, alpha, floor = _gbdt.check_params(self.gamma, self.alpha, self.hessian_floor)
        binary, softmax = self._objective_classes()
        return binary(gamma, alpha, floor) if n_cls == 2 else softmax(gamma, None, floor)

    def _objective_classes(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _weights(self, y: np.ndarray, sample_weight, X) -> Optional[np.ndarray]:
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
        if w is not None:
            _gbdt._sample_weight(w, len(y))  # one rule for weights: finite, >= 0
        if self.class_balanced_beta is not None:
            beta = _checks.number("class_balanced_beta", self.class_balanced_beta, lo=0.0, hi=1.0, hi_open=True)
            cb = class_balanced(np.bincount(y, minlength=len(self.classes_)).astype(np.float64), beta)[y]
            w = cb if w is None else w * cb
        return w

    def _prior(self, y: np.ndarray, w: Optional[np.ndarray]) -> np.ndarray:
        gamma, alpha, _ = _gbdt.check_params(self.gamma, self.alpha, self.hessian_floor)
        if len(self.classes_) == 2:
            return np.array([_gbdt.binary_init_margin(y, gamma, alpha, w)])
        return _gbdt.softmax_init_margin(y, len(self.classes_), gamma, None, w)

    # A wrapped library's own fit keywords, by role: (train margin, eval weights, eval margins) under the
    # library's names; the rest go to _fit_booster as they are.
    _MARGIN_KEYS: tuple = (None, None, None)

    def _library_fit_names(self) -> set:
        """The keywords of the wrapped library's own classifier ``fit`` (LGBMClassifier, XGBClassifier,
        CatBoostClassifier): each one is accepted here too."""
        import inspect

        return set(inspect.signature(self._library_classifier().fit).parameters) - {"self", "X", "y"}

    def _library_classifier(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _keeps_frame(self, X, fit_params: Dict[str, Any]) -> bool:
        """Whether X goes to the library as it is, not as float64: a frame with categorical or string
        columns (XGBoost's ``enable_categorical``, LightGBM's category dtype, CatBoost's
        ``cat_features``), or categorical features named for CatBoost."""
        dtypes = getattr(X, "dtypes", None)
        if dtypes is not None and hasattr(dtypes, "__iter__") and not all(
                np.issubdtype(d, np.number) or d == bool for d in _plain_dtypes(dtypes)):
            return True
        return any(fit_params.get(k) is not None or self._extra_params.get(k) is not None
                   for k in ("cat_features", "text_features", "embedding_features"))

    def _validate_X(self, X, reset: bool):
        if getattr(self, "keeps_frame_", False):
            validate_data(self, X, reset=reset, skip_check_array=True)  # n_features_in_, feature names
            if not reset and np.ndim(X) != 2:
                _checks.fail("X", "to be 2-D", f"shape {np.shape(X)}")
            return X
        return validate_data(self, X, reset=reset, ensure_all_finite="allow-nan", dtype=np.float64)

    def fit(self, X, y, sample_weight=None, eval_set=None, verbose: bool = False, **fit_params: Any):
        """Fit on (X, y); ``eval_set`` = [(X_val, y_val), ...] is scored with the focal metric, and with
        ``early_stopping_rounds`` the last one decides when to stop. Every other keyword of the wrapped
        library's own classifier ``fit`` is accepted (``eval_metric``, ``callbacks``,
        ``categorical_feature``, ``cat_features``, ``init_score`` / ``base_margin`` / ``baseline``, ...);
        docs/adapters.md lists how each is used. A frame with categorical or string columns goes to the
        library as it is."""
        known = self._library_fit_names()
        for key in fit_params:
            if key not in known:
                raise TypeError(f"{type(self).__name__}.fit() got an unexpected keyword argument {key!r} (the "
                                f"keywords of {self._library_classifier().__name__}.fit are accepted: "
                                f"{', '.join(sorted(known))})")
        if self._library == "lightgbm" and fit_params.get("eval_X") is not None:  # LightGBM 4.7's other spelling
            ex, ey = fit_params.pop("eval_X"), fit_params.pop("eval_y", None)
            ex, ey = (ex, ey) if isinstance(ex, (list, tuple)) else ([ex], [ey])
            eval_set = list(eval_set or []) + list(zip(ex, ey))
        self.keeps_frame_ = self._keeps_frame(X, fit_params)
        X = self._validate_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(X, y)
        if np.issubdtype(y.dtype, np.number):  # NaN / inf labels are refused, whatever X is
            assert_all_finite(y, input_name="y")
        check_classification_targets(y)
        self.classes_, yi = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"Expected `y` to hold at least 2 classes, got only one class "
                             f"{self.classes_.tolist()!r} ({len(y)} sample(s)).")
        k = len(self.classes_)
        n_est = _checks.integer("n_estimators", self.n_estimators)
        if n_est < 1:
            _checks.fail("n_estimators", ">= 1", n_est)
        _checks.number("learning_rate", self.learning_rate, lo=0.0, lo_open=True)
        if self.early_stopping_rounds is not None and not eval_set:
            # XGBoost's and LightGBM's own classifiers raise here too: never train every round silently
            _checks.fail("eval_set", f"to hold at least one validation set when early_stopping_rounds="
                         f"{self.early_stopping_rounds!r} (early stopping watches it)", eval_set)
        w = self._weights(yi, sample_weight, X)
        if w is not None and np.count_nonzero(np.bincount(yi, weights=w, minlength=k)) < 2:
            raise ValueError("Expected the samples of at least 2 classes to have a positive weight, got one class "
                             "only after sample_weight.")
        self.objective_ = self._objective(k)
        self.init_margin_ = self._prior(yi, w)
        margin_key, eval_w_key, eval_m_key = self._MARGIN_KEYS
        extra = self._margin_extra(fit_params.pop(margin_key, None) if margin_key else None, len(yi), margin_key)
        eval_ws = list(fit_params.pop(eval_w_key, None) or []) if eval_w_key else []
        eval_ms = list(fit_params.pop(eval_m_key, None) or []) if eval_m_key else []
        evals = []
        for i, (Xv, yv) in enumerate(eval_set or []):
            Xv = self._validate_X(Xv, reset=False)
            yv = column_or_1d(yv)
            known_labels = np.isin(yv, self.classes_)
            if not known_labels.all():
                _checks.fail("eval_set", f"labels among classes_ {self.classes_.tolist()}", np.asarray(yv)[~known_labels][0])
            wv = None if i >= len(eval_ws) or eval_ws[i] is None else _check_sample_weight(eval_ws[i], Xv, dtype=np.float64)
            mv = self._margin_extra(eval_ms[i] if i < len(eval_ms) else None, len(yv), eval_m_key)
            evals.append(_Eval(Xv, np.searchsorted(self.classes_, yv), wv, mv))
        self._fit_booster(X, yi, w, evals, n_est, bool(verbose), _Fit(extra, fit_params))
        return self

    def _margin_extra(self, value, n: int, name: Optional[str]):
        """A user's own raw scores (``init_score`` / ``base_margin`` / ``baseline``), added to the prior."""
        if value is None:
            return None
        m = np.asarray(value, dtype=np.float64)
        want = (n,) if len(self.classes_) == 2 else (n, len(self.classes_))
        if m.size != int(np.prod(want)):
            _checks.fail(str(name), f"to hold {int(np.prod(want))} raw scores (shape {want})", f"shape {m.shape}")
        return m.reshape(want)

    def _start(self, n: int, extra) -> np.ndarray:
        """The starting raw scores: the prior margin, plus a user's own where given."""
        m = self._margin(n)
        return m if extra is None else m + extra

    def _booster_params(self, base: Dict[str, Any], num_class: str, seed: str) -> Dict[str, Any]:
        """The library's parameters: ``base``, the class count and seed under the library's names, then
        every keyword the user passed through."""
        params = dict(base)
        if len(self.classes_) > 2:
            params[num_class] = len(self.classes_)
        if self.random_state is not None:
            params[seed] = int(self.random_state)
        params.update(self._extra_params)
        return params

    def _margin(self, n: int) -> np.ndarray:
        k = len(self.classes_)
        return np.full(n, self.init_margin_[0]) if k == 2 else np.tile(self.init_margin_, (n, 1))

    def _metric(self):
        gamma, alpha, _ = _gbdt.check_params(self.gamma, self.alpha, self.hessian_floor)
        if len(self.classes_) == 2:
            return lambda score, y, w=None: _gbdt.binary_loss(score, y, gamma, alpha, w)
        return lambda score, y, w=None: _gbdt.softmax_loss(np.asarray(score).reshape(len(y), -1), y, gamma, None, w)

    def decision_function(self, X):
        """Raw scores with the prior margin added: (n,) for two classes, (n, K) otherwise."""
        check_is_fitted(self, "init_margin_")
        X = self._validate_X(X, reset=False)
        raw = np.asarray(self._raw_scores(X), dtype=np.float64)
        n = np.shape(X)[0]
        return raw.reshape(n) + self.init_margin_[0] if len(self.classes_) == 2 else \
            raw.reshape(n, -1) + self.init_margin_

    def predict_proba(self, X):
        s = self.decision_function(X)
        if len(self.classes_) == 2:
            p = 0.5 * (1.0 + np.tanh(0.5 * s))  # sigmoid without overflow
            return np.column_stack([1.0 - p, p])
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        s = self.decision_function(X)
        return self.classes_[(s > 0).astype(np.int64) if s.ndim == 1 else np.argmax(s, axis=1)]

    def _proba(self, margin: np.ndarray) -> np.ndarray:
        """Probabilities from total raw scores: the positive class's (n,) for two classes, (n, K) otherwise
        (what the libraries' own classifiers give their callable eval metrics)."""
        if len(self.classes_) == 2:
            return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(margin).reshape(-1)))
        s = np.asarray(margin).reshape(-1, len(self.classes_))
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _fit_booster(self, X, y, w, evals, n_estimators, verbose, fit):  # pragma: no cover - abstract
        raise NotImplementedError

    def _raw_scores(self, X):  # pragma: no cover - abstract
        raise NotImplementedError
