"""The scikit-learn classifiers of the GBDT adapters, used as scikit-learn users do: check_estimator,
cross_val_score, GridSearchCV(n_jobs=2), CalibratedClassifierCV, pickling, early stopping on the focal
metric, any label values, and the prior margin kept from fit to predict."""

from __future__ import annotations

import importlib
import pickle

import numpy as np
import pytest

from focalkit.data import load_page_blocks

CLASSIFIERS = {"xgboost": "FocalXGBClassifier", "lightgbm": "FocalLGBMClassifier", "catboost": "FocalCatBoostClassifier"}
# Checks that cannot apply, and why (each fails for the library's own classifier as well).
EXPECTED_FAILURES = {
    "xgboost": {"check_sample_weight_equivalence_on_dense_data":
                "XGBoost's own XGBClassifier fails it too: its trees differ between weights and repeated rows"},
    "catboost": {"check_sample_weight_equivalence_on_dense_data":
                 "CatBoost's own CatBoostClassifier fails it too: its ordered boosting permutes the rows"},
}
SMALL = {"xgboost": dict(max_depth=3), "lightgbm": dict(num_leaves=7, min_child_samples=5),
         "catboost": dict(depth=3)}


def _cls(lib):
    pytest.importorskip(lib)
    return getattr(importlib.import_module(f"focalkit.adapters.{lib}"), CLASSIFIERS[lib])


@pytest.fixture(scope="module")
def binary_data():
    X, y = load_page_blocks()
    X = np.sign(X) * np.log1p(np.abs(X))
    yb = np.where(y == 0, "text", "other")  # string labels, 10 % minority
    rng = np.random.default_rng(0)
    idx = rng.choice(len(y), 1200, replace=False)
    return X[idx], yb[idx], y[idx]


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_check_estimator(lib):
    from sklearn.utils.estimator_checks import check_estimator

    cls = _cls(lib)
    res = check_estimator(cls(n_estimators=10), on_fail=None, expected_failed_checks=EXPECTED_FAILURES.get(lib, {}))
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in res if r["status"] == "failed"]
    assert not failed, failed
    assert len(res) > 40


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_cross_val_score_grid_search_calibration(lib, binary_data):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV, cross_val_score

    cls = _cls(lib)
    X, y, _ = binary_data
    clf = cls(gamma=2.0, n_estimators=30, **SMALL[lib])
    acc = cross_val_score(clf, X, y, cv=3, scoring="accuracy")
    auc = cross_val_score(clf, X, y, cv=3, scoring="roc_auc")
    assert acc.mean() > 0.9 and auc.mean() > 0.9
    grid = GridSearchCV(clf, {"gamma": [0.0, 2.0], "learning_rate": [0.1, 0.3]}, cv=2, n_jobs=2, scoring="roc_auc")
    grid.fit(X, y)
    assert set(grid.best_params_) == {"gamma", "learning_rate"}
    cal = CalibratedClassifierCV(cls(gamma=2.0, n_estimators=20, **SMALL[lib]), cv=3).fit(X, y)
    p = cal.predict_proba(X)
    assert p.shape == (len(y), 2) and np.allclose(p.sum(1), 1)


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_probabilities_labels_pickle_and_prior(lib, binary_data):
    cls = _cls(lib)
    X, y, _ = binary_data
    clf = cls(gamma=2.0, alpha=0.25, n_estimators=25, random_state=0, **SMALL[lib]).fit(X, y)
    assert clf.classes_.tolist() == ["other", "text"]
    p = clf.predict_proba(X)
    assert ((p >= 0) & (p <= 1)).all() and np.allclose(p.sum(1), 1)
    assert set(clf.predict(X)) <= {"other", "text"}
    assert (clf.predict(X) == clf.classes_[p.argmax(1)]).all()
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), p)
    # the prior margin is where training starts and what an empty model predicts
    from focalkit.adapters import _gbdt

    yi = (y == "text").astype(float)
    np.testing.assert_allclose(clf.init_margin_[0], _gbdt.binary_init_margin(yi, 2.0, 0.25))
    lazy = cls(gamma=2.0, alpha=0.25, n_estimators=1, learning_rate=1e-6, **SMALL[lib]).fit(X, y)
    np.testing.assert_allclose(lazy.decision_function(X), clf.init_margin_[0], atol=1e-4)


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_multiclass_class_balanced(lib, binary_data):
    cls = _cls(lib)
    X, _, y5 = binary_data
    clf = cls(gamma=2.0, class_balanced_beta=0.999, n_estimators=20, **SMALL[lib]).fit(X, y5)
    p = clf.predict_proba(X)
    assert p.shape == (len(y5), len(np.unique(y5))) and np.allclose(p.sum(1), 1)
    assert (clf.predict(X) == y5).mean() > 0.85


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_early_stopping_on_the_focal_metric(lib, binary_data):
    cls = _cls(lib)
    X, y, _ = binary_data
    Xtr, ytr, Xva, yva = X[:800], y[:800], X[800:], y[800:]
    clf = cls(gamma=2.0, n_estimators=500, learning_rate=0.5, early_stopping_rounds=5, **SMALL[lib])
    clf.fit(Xtr, ytr, eval_set=[(Xva, yva)])
    assert clf.best_iteration_ < 500
    full = cls(gamma=2.0, n_estimators=500, learning_rate=0.5, **SMALL[lib]).fit(Xtr, ytr)
    assert full.best_iteration_ == 500


@pytest.mark.parametrize("lib", list(CLASSIFIERS))
def test_keywords_pass_through_and_clone(lib):
    from sklearn.base import clone

    cls = _cls(lib)
    key, value = next(iter(SMALL[lib].items()))
    clf = cls(gamma=1.0, **{key: value})
    assert clf.get_params()[key] == value
    assert clone(clf).get_params()[key] == value
    clf.set_params(**{key: value + 1, "gamma": 0.5})
    assert clf.get_params()[key] == value + 1 and clf.gamma == 0.5


def test_raw_xgboost_metric_works_in_xgbclassifier(binary_data):
    """``XGBClassifier(objective=focal_objective(), eval_metric=focal_metric())`` with early stopping:
    the metric returns a number there (a (name, value) pair in xgb.train)."""
    xgb = pytest.importorskip("xgboost")
    from focalkit.adapters.xgboost import focal_metric, focal_objective

    X, y, _ = binary_data
    yi = (y == "text").astype(int)
    clf = xgb.XGBClassifier(objective=focal_objective(2.0), eval_metric=focal_metric(2.0), n_estimators=200,
                            learning_rate=0.5, max_depth=3, early_stopping_rounds=5)
    clf.fit(X[:800], yi[:800], eval_set=[(X[800:], yi[800:])], verbose=False)
    curve = clf.evals_result()["validation_0"]["focal"]
    assert clf.best_iteration < 199 and min(curve) < curve[0]


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "catboost"])
def test_early_stopping_without_an_eval_set_raises(name):
    """Issue 19, item 14: XGBoost's and LightGBM's own classifiers refuse this; it used to train every
    round silently."""
    pytest.importorskip(name)
    import importlib

    mod = importlib.import_module(f"focalkit.adapters.{name}")
    cls = {"xgboost": "FocalXGBClassifier", "lightgbm": "FocalLGBMClassifier", "catboost": "FocalCatBoostClassifier"}
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = getattr(mod, cls[name])(n_estimators=5, early_stopping_rounds=2)
    with pytest.raises(ValueError, match="eval_set"):
        clf.fit(X, y)
    clf.fit(X, y, eval_set=[(X, y)])  # with one it trains
