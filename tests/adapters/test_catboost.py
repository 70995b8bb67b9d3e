"""The CatBoost adapter: derivatives (γ = 0 equals CatBoost's Logloss / MultiClass), training, and
CatBoost's own binary Focal loss at matching α, γ."""

from __future__ import annotations

import numpy as np
import pytest

cb = pytest.importorskip("catboost")

from focalkit.adapters import _gbdt  # noqa: E402
from focalkit.adapters import catboost as fc  # noqa: E402


def _data(n=600, seed=0, k=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    s = X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    y = (s > 1.0).astype(int) if k == 2 else np.digitize(s, [-0.3, 0.6])
    return X, y


def test_binary_derivatives_at_gamma_0_equal_logloss():
    a = np.array([-30.0, -2.0, 0.0, 0.7, 25.0])
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0])
    ders = fc.focal_objective(gamma=0.0).calc_ders_range(a, t, w)
    p, q = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(a))  # y - p as t q - (1 - t) p: no 1 - p cancellation
    np.testing.assert_allclose(ders[:, 0], w * (t * q - (1 - t) * p), rtol=1e-12, atol=1e-300)
    # the Hessian floor applies after the sample weights
    np.testing.assert_allclose(ders[:, 1], np.minimum(-w * p * q, -1e-6), rtol=1e-12)


def test_multiclass_derivatives_at_gamma_0_equal_multiclass():
    a = np.array([0.3, -1.0, 2.0])
    g, h = fc.softmax_focal_objective(gamma=0.0).calc_ders_multi(a, 2.0, 1.5)
    p = np.exp(a) / np.exp(a).sum()
    np.testing.assert_allclose(g, 1.5 * (np.eye(3)[2] - p), rtol=1e-12)
    np.testing.assert_allclose(np.diag(h), -1.5 * p * (1 - p), rtol=1e-12)


def test_gamma_0_trains_like_logloss():
    X, y = _data()
    params = {"iterations": 30, "depth": 3, "learning_rate": 0.2, "verbose": 0, "allow_writing_files": False,
              "random_seed": 0, "boost_from_average": False, "leaf_estimation_method": "Newton"}
    ours = cb.CatBoost({**params, "loss_function": fc.focal_objective(gamma=0.0), "eval_metric": "Logloss"})
    ours.fit(cb.Pool(X, y))
    ref = cb.CatBoost({**params, "loss_function": "Logloss"}).fit(cb.Pool(X, y))
    np.testing.assert_allclose(ours.predict(X, prediction_type="RawFormulaVal"),
                               ref.predict(X, prediction_type="RawFormulaVal"), rtol=1e-5, atol=1e-6)


def test_gamma_0_metrics_equal_logloss_and_multiclass():
    """CatBoost's built-in MultiClass trains differently from any custom multi-class objective (even an
    exact cross-entropy one with the full Hessian: 0.35 apart in raw score after 10 rounds here), so
    the multi-class comparison is of derivatives (above) and of the loss values."""
    from catboost.utils import eval_metric

    rng = np.random.default_rng(4)
    z = rng.normal(0, 2, (150, 3))
    y = rng.integers(0, 3, 150).astype(float)
    ours = _gbdt.softmax_loss(z, y, 0.0, None)
    np.testing.assert_allclose(ours, eval_metric(y, z, "MultiClass")[0], rtol=1e-6)  # approx as (n, K)
    yb = (y > 1).astype(float)
    np.testing.assert_allclose(_gbdt.binary_loss(z[:, 0], yb, 0.0, None), eval_metric(yb, z[:, 0], "Logloss")[0],
                               rtol=1e-6)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.75, 0.5)])
def test_metric_equals_catboost_own_focal_at_matching_alpha_gamma(alpha, gamma):
    from catboost.utils import eval_metric

    rng = np.random.default_rng(3)
    approx = rng.normal(0, 2, 200)
    y = (rng.random(200) < 0.3).astype(float)
    theirs = eval_metric(y, approx, f"Focal:focal_alpha={alpha};focal_gamma={gamma}")[0]
    ours = _gbdt.binary_loss(approx, y, gamma, alpha)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_focal_training_lowers_the_focal_metric_and_early_stops():
    X, y = _data(800)
    obj = fc.focal_objective(gamma=2.0, alpha=0.25)
    base = np.full(len(y), obj.init_margin(y))
    model = cb.CatBoost({"loss_function": obj, "eval_metric": fc.focal_metric(2.0, 0.25), "iterations": 40,
                         "depth": 3, "verbose": 0, "allow_writing_files": False})
    model.fit(cb.Pool(X[:600], y[:600], baseline=base[:600]), eval_set=cb.Pool(X[600:], y[600:], baseline=base[600:]))
    curve = next(iter(model.get_evals_result()["validation"].values()))
    assert curve[-1] < curve[0]
