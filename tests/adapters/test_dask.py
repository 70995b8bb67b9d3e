"""Beyond one machine: ``xgboost.dask`` and ``lightgbm.dask`` with the focal objectives on a
``dask.distributed.LocalCluster`` of 2 workers, equal to single-process training to float rounding.

The features take few distinct values (fewer than the histogram bins), so every worker's bins are
the single process's and the comparison is exact up to the order of sums. LightGBM multi-class, like
its built-in multiclass, needs shuffled partitions (each worker holding every class); binary here."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as cl:
        yield cl


def _data(n=2000, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 8, size=(n, 4)).astype(np.float64)
    s = X[:, 0] - 0.7 * X[:, 1] + rng.normal(size=n)
    y = (s > 4).astype(np.float64) if k == 2 else np.digitize(s, [0.0, 3.0]).astype(np.float64)
    return X, y


@pytest.mark.parametrize("k", [2, 3])
def test_xgboost_dask_equals_single_process(client, k):
    xgb = pytest.importorskip("xgboost")
    from focalkit.adapters import xgboost as fx

    X, y = _data(k=k)
    if k == 2:
        obj = fx.focal_objective(gamma=2.0, alpha=0.25)
        margin = np.full(len(y), obj.init_margin(y))
        metric = fx.focal_metric(gamma=2.0, alpha=0.25)
    else:
        obj = fx.softmax_focal_objective(gamma=2.0)
        margin = np.zeros((len(y), k))
        metric = fx.softmax_focal_metric(gamma=2.0)
    params = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "disable_default_eval_metric": 1, "base_score": 0.0,
              **({"num_class": k} if k > 2 else {})}
    dX, dy = da.from_array(X, chunks=(len(y) // 2, 4)), da.from_array(y, chunks=len(y) // 2)
    dm = da.from_array(margin, chunks=(len(y) // 2,) + margin.shape[1:])
    dxgb = pytest.importorskip("xgboost.dask")
    dtrain = dxgb.DaskDMatrix(client, dX, dy, base_margin=dm)
    out = dxgb.train(client, params, dtrain, num_boost_round=10, obj=obj, custom_metric=metric,
                         evals=[(dtrain, "train")])
    dist = dxgb.predict(client, out["booster"], dX, output_margin=True).compute()
    single = xgb.train(params, xgb.DMatrix(X, y, base_margin=margin), 10, obj=obj)
    np.testing.assert_allclose(dist, single.predict(xgb.DMatrix(X), output_margin=True), rtol=1e-5, atol=1e-5)
    assert len(out["history"]["train"]["focal" if k == 2 else "softmax_focal"]) == 10


def test_lightgbm_dask_equals_single_process(client):
    lgb = pytest.importorskip("lightgbm")
    from lightgbm.dask import DaskLGBMClassifier

    from focalkit.adapters import lightgbm as fl

    X, y = _data()
    obj = fl.focal_objective(gamma=2.0, alpha=0.25)
    init = np.full(len(y), obj.init_margin(y))
    kw = dict(objective=obj, n_estimators=10, num_leaves=7, learning_rate=0.3, metric="None", verbose=-1,
              min_child_samples=5, deterministic=True, force_row_wise=True)
    dX, dy = da.from_array(X, chunks=(len(y) // 2, 4)), da.from_array(y, chunks=len(y) // 2)
    dinit = da.from_array(init, chunks=len(y) // 2)
    dist = DaskLGBMClassifier(client=client, tree_learner="data", **kw).fit(dX, dy, init_score=dinit)
    single = lgb.LGBMClassifier(**kw).fit(X, y, init_score=init)
    np.testing.assert_allclose(dist.to_local().predict(X, raw_score=True), single.predict(X, raw_score=True),
                               rtol=1e-5, atol=1e-5)
