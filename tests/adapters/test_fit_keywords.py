"""The scikit-learn classifiers take every ``fit`` keyword of the library classifier they wrap (issue 19,
item 13), and categorical frames as the libraries take them (item 15)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

pd = pytest.importorskip("pandas")


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.8 * rng.normal(size=n) > 0.8).astype(int)
    return X, y


LIBS = {
    "lightgbm": ("focalkit.adapters.lightgbm", "FocalLGBMClassifier", "LGBMClassifier", dict(num_leaves=7)),
    "xgboost": ("focalkit.adapters.xgboost", "FocalXGBClassifier", "XGBClassifier", dict(max_depth=3)),
    "catboost": ("focalkit.adapters.catboost", "FocalCatBoostClassifier", "CatBoostClassifier", dict(depth=3)),
}


def _cls(lib):
    pytest.importorskip(lib)
    import importlib

    mod, name, theirs, small = LIBS[lib]
    module = importlib.import_module(mod)
    return getattr(module, name), small


@pytest.mark.parametrize("lib", list(LIBS))
def test_unknown_fit_keyword_is_a_type_error_naming_it(lib):
    cls, small = _cls(lib)
    X, y = _data(200)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_thing'"):
        cls(n_estimators=3, **small).fit(X, y, no_such_thing=1)


@pytest.mark.parametrize("lib", list(LIBS))
def test_every_keyword_of_the_wrapped_fit_is_known(lib):
    """The accepted names are the wrapped classifier's own, read from its signature."""
    cls, small = _cls(lib)
    import importlib

    theirs = getattr(importlib.import_module(lib), LIBS[lib][2])
    names = set(inspect.signature(theirs.fit).parameters) - {"self", "X", "y"}
    assert cls()._library_fit_names() == names


# ---- LightGBM -----------------------------------------------------------------------------------

def test_lightgbm_eval_metric_names_and_callables_on_probabilities():
    import lightgbm as lgb
    from sklearn.metrics import log_loss, roc_auc_score

    from focalkit.adapters.lightgbm import FocalLGBMClassifier

    X, y = _data()
    Xt, yt, Xv, yv = X[:400], y[:400], X[400:], y[400:]
    seen = {}

    def mean_prob(y_true, y_prob):
        seen["shape"], seen["range"] = y_prob.shape, (float(y_prob.min()), float(y_prob.max()))
        return "mean_prob", float(np.mean(y_prob)), True

    res = {}
    clf = FocalLGBMClassifier(n_estimators=30, num_leaves=7).fit(
        Xt, yt, eval_set=[(Xv, yv)], eval_names=["val"], eval_metric=["auc", "binary_logloss", mean_prob],
        callbacks=[lgb.record_evaluation(res)])
    p = clf.predict_proba(Xv)[:, 1]
    assert set(res["val"]) == {"focal", "auc", "binary_logloss", "mean_prob"}
    assert res["val"]["auc"][-1] == pytest.approx(roc_auc_score(yv, p), rel=1e-9)
    # LightGBM's own binary_logloss would read the raw scores as probabilities (several times larger)
    assert res["val"]["binary_logloss"][-1] == pytest.approx(log_loss(yv, p), rel=1e-9)
    assert res["val"]["mean_prob"][-1] == pytest.approx(p.mean(), rel=1e-9)
    assert seen["shape"] == (len(yv),) and 0.0 <= seen["range"][0] <= seen["range"][1] <= 1.0


def test_lightgbm_weights_margins_and_categorical_feature():
    import lightgbm as lgb

    from focalkit.adapters.lightgbm import FocalLGBMClassifier

    X, y = _data()
    Xt, yt, Xv, yv = X[:400], y[:400], X[400:], y[400:]
    runs = {}
    for name, kw in {"plain": {}, "weighted": dict(eval_sample_weight=[np.where(yv == 1, 5.0, 1.0)]),
                     "class_weighted": dict(eval_class_weight=[{0: 1.0, 1: 5.0}]),
                     "margin": dict(eval_init_score=[np.full(len(yv), 1.0)])}.items():
        res = {}
        FocalLGBMClassifier(n_estimators=10, num_leaves=7, random_state=0).fit(
            Xt, yt, eval_set=[(Xv, yv)], callbacks=[lgb.record_evaluation(res)], **kw)
        runs[name] = res["valid_0"]["focal"][-1]
    assert runs["weighted"] == pytest.approx(runs["class_weighted"], rel=1e-9)
    assert runs["weighted"] != pytest.approx(runs["plain"]) and runs["margin"] != pytest.approx(runs["plain"])
    # init_score shifts the training start; categorical_feature / feature_name reach the Dataset
    Xc = X.copy()
    Xc[:, 3] = np.random.default_rng(1).integers(0, 4, size=len(X))
    clf = FocalLGBMClassifier(n_estimators=10, num_leaves=7).fit(
        Xc, y, init_score=np.full(len(y), 0.5), categorical_feature=[3], feature_name=["a", "b", "c", "cat"])
    assert clf.booster_.feature_name() == ["a", "b", "c", "cat"]
    assert clf.booster_.params.get("categorical_column") == [3] or \
        clf.booster_.dump_model()["feature_infos"]["cat"]["values"] == [0, 1, 2, 3]  # a categorical split set
    assert np.isfinite(clf.predict_proba(Xc)).all()


def test_lightgbm_init_model_continues_and_eval_x_spelling():
    from focalkit.adapters.lightgbm import FocalLGBMClassifier

    X, y = _data()
    first = FocalLGBMClassifier(n_estimators=5, num_leaves=7).fit(X, y)
    more = FocalLGBMClassifier(n_estimators=5, num_leaves=7).fit(X, y, init_model=first.booster_)
    assert more.booster_.num_trees() == 10
    es = FocalLGBMClassifier(n_estimators=200, learning_rate=0.5, early_stopping_rounds=3, num_leaves=7)
    es.fit(X[:400], y[:400], eval_X=(X[400:],), eval_y=(y[400:],))
    assert es.best_iteration_ < 200


# ---- XGBoost ------------------------------------------------------------------------------------

def test_xgboost_margins_weights_feature_weights_and_continued_training():
    from focalkit.adapters.xgboost import FocalXGBClassifier

    X, y = _data()
    Xt, yt, Xv, yv = X[:400], y[:400], X[400:], y[400:]
    a = FocalXGBClassifier(n_estimators=10, max_depth=3).fit(Xt, yt)
    b = FocalXGBClassifier(n_estimators=10, max_depth=3).fit(Xt, yt, base_margin=np.full(len(yt), 2.0))
    assert not np.allclose(a.predict_proba(Xv), b.predict_proba(Xv))
    c = FocalXGBClassifier(n_estimators=5, max_depth=3, colsample_bynode=0.5).fit(
        Xt, yt, eval_set=[(Xv, yv)], sample_weight_eval_set=[np.ones(len(yv))],
        base_margin_eval_set=[np.zeros(len(yv))], feature_weights=np.array([1.0, 0.0, 0.0, 0.0]))
    assert np.isfinite(c.predict_proba(Xv)).all()
    more = FocalXGBClassifier(n_estimators=5, max_depth=3).fit(Xt, yt, xgb_model=c.booster_)
    assert more.booster_.num_boosted_rounds() == 10


# ---- categorical frames (item 15) ---------------------------------------------------------------

def _frame(n=600, ints=False):
    X, y = _data(n)
    rng = np.random.default_rng(2)
    cats = np.array(["red", "green", "blue", "grey"])[rng.integers(0, 4, size=n)]
    y = np.where(cats == "red", 1, y)  # the category carries signal
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1]})
    df["colour"] = rng.integers(0, 4, size=n) if ints else cats
    if ints:
        y = np.where(df["colour"].to_numpy() == 0, 1, _data(n)[1])
    return df, y


def test_xgboost_enable_categorical_with_string_categories():
    from focalkit.adapters.xgboost import FocalXGBClassifier

    df, y = _frame()
    df["colour"] = df["colour"].astype("category")
    clf = FocalXGBClassifier(n_estimators=20, max_depth=3, enable_categorical=True, tree_method="hist").fit(df, y)
    p = clf.predict_proba(df)
    assert p.shape == (len(df), 2) and np.isfinite(p).all()
    assert clf.feature_names_in_.tolist() == ["a", "b", "colour"]
    assert p[df["colour"] == "red", 1].mean() > p[df["colour"] != "red", 1].mean()


def test_lightgbm_category_columns():
    from focalkit.adapters.lightgbm import FocalLGBMClassifier

    df, y = _frame()
    df["colour"] = df["colour"].astype("category")
    p = FocalLGBMClassifier(n_estimators=20, num_leaves=7).fit(df, y).predict_proba(df)
    assert p[df["colour"] == "red", 1].mean() > p[df["colour"] != "red", 1].mean()


@pytest.mark.parametrize("ints", [False, True])
@pytest.mark.parametrize("where", ["fit", "init"])
def test_catboost_cat_features_strings_and_integers(ints, where):
    pytest.importorskip("catboost")
    from focalkit.adapters.catboost import FocalCatBoostClassifier

    df, y = _frame(ints=ints)
    kw = dict(cat_features=["colour"])
    clf = FocalCatBoostClassifier(n_estimators=30, depth=3, **(kw if where == "init" else {}))
    clf.fit(df, y, **(kw if where == "fit" else {}))
    p = clf.predict_proba(df)
    hot = (df["colour"] == 0) if ints else (df["colour"] == "red")
    assert np.isfinite(p).all() and p[hot, 1].mean() > p[~hot, 1].mean()
    # numpy input (an object array) with the categories by column index
    Xn = df.to_numpy(dtype=object)
    p2 = FocalCatBoostClassifier(n_estimators=10, depth=3).fit(Xn, y, cat_features=[2]).predict_proba(Xn)
    assert np.isfinite(p2).all()


def test_catboost_other_fit_keywords():
    pytest.importorskip("catboost")
    from focalkit.adapters.catboost import FocalCatBoostClassifier

    X, y = _data()
    clf = FocalCatBoostClassifier(n_estimators=50, depth=3, learning_rate=0.5).fit(
        X[:400], y[:400], eval_set=[(X[400:], y[400:])], early_stopping_rounds=3, metric_period=5,
        baseline=np.zeros(400), logging_level="Silent")
    assert clf.best_iteration_ <= 50
    assert np.isfinite(clf.predict_proba(X)).all()


def test_nan_labels_are_refused_with_a_categorical_frame_too():
    from focalkit.adapters.lightgbm import FocalLGBMClassifier

    df, y = _frame()
    df["colour"] = df["colour"].astype("category")
    y = y.astype(float)
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FocalLGBMClassifier(n_estimators=3).fit(df, y)


def test_a_wrapped_fit_keyword_the_adapter_does_not_pass_is_said(monkeypatch):
    """A newer library's fit keyword that the adapter does not know: a TypeError, never dropped."""
    from focalkit.adapters.xgboost import FocalXGBClassifier

    X, y = _data(200)
    clf = FocalXGBClassifier(n_estimators=3)
    monkeypatch.setattr(type(clf), "_library_fit_names", lambda self: {"brand_new"})
    with pytest.raises(TypeError, match="brand_new"):
        clf.fit(X, y, brand_new=1)
