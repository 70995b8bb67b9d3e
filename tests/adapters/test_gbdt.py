"""XGBoost and LightGBM focal objectives: closed forms, safety of the Hessian, real fits."""

import importlib

import numpy as np
import pytest
import torch
from torch.func import grad, vmap

import reference as ref
from focalkit.data import load_page_blocks

LIBS = ["xgboost", "lightgbm"]


def _adapter(lib):
    pytest.importorskip(lib)
    return importlib.import_module(f"focalkit.adapters.{lib}")


@pytest.fixture(scope="module")
def page_blocks():
    X, y = load_page_blocks()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(y), 1500, replace=False)
    return np.sign(X[idx]) * np.log1p(np.abs(X[idx])), y[idx]


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_binary_grad_hess_equal_autodiff(lib, gamma, alpha):
    ad = _adapter(lib)
    margin = np.linspace(-8, 8, 33)
    label = np.tile([0.0, 1.0, 0.3], 11)
    w = np.linspace(0.5, 2.0, 33)
    g, h = ad.focal_objective(gamma, alpha, hessian_floor=1e-300)(label, margin, sample_weight=w)
    f = lambda x, y: ref.torch_sigmoid_focal(x, y, gamma, alpha, None, "linear")  # noqa: E731
    x, y = torch.tensor(margin), torch.tensor(label)
    g_ref = vmap(grad(f))(x, y).numpy() * w
    h_ref = vmap(grad(grad(f)))(x, y).numpy() * w
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h, np.maximum(h_ref, 1e-300), rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_finite_and_positive_hessian_at_extremes(lib, gamma):
    ad = _adapter(lib)
    margin = np.array([-100.0, 100.0, -100.0, 100.0, -30.0, 30.0, 0.0, -3.0])
    label = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    g, h = ad.focal_objective(gamma, 0.25)(label, margin)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(h)) and np.all(h > 0)
    # A confidently wrong positive keeps the gradient of CE, alpha in magnitude.
    assert abs(g[0] + 0.25) < 1e-12
    z = np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0], [0.0, 0.0, 0.0]])
    gs, hs = ad.softmax_focal_objective(gamma)(np.array([1, 1, 2]), z)
    assert np.all(np.isfinite(gs)) and np.all(hs > 0)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_grad_matches_autodiff(lib, gamma):
    ad = _adapter(lib)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 4)) * 3
    label = rng.integers(0, 4, 10).astype(float)
    cw = [1.0, 2.0, 0.5, 1.5]
    sw = rng.random(10) + 0.5
    g, h = ad.softmax_focal_objective(gamma, cw, hessian_floor=1e-300)(label, z, sample_weight=sw)
    zt = torch.tensor(z, requires_grad=True)
    c = torch.nn.functional.one_hot(torch.tensor(label).long(), 4).double() * torch.tensor(cw)[label.astype(int)][:, None]
    (ref.torch_softmax_focal(zt, c, gamma) * torch.tensor(sw)).sum().backward()
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-10, atol=1e-13)
    for i in range(10):
        hi = torch.func.hessian(lambda r: ref.torch_softmax_focal(r[None], c[i:i + 1], gamma).sum())(
            torch.tensor(z[i]))
        np.testing.assert_allclose(h[i], np.maximum(torch.diagonal(hi).numpy() * sw[i], 1e-300), rtol=1e-9,
                                   atol=1e-13)


def _binary_loss(margin, y, gamma=2.0, alpha=0.25):
    from focalkit.adapters import _gbdt
    return _gbdt.binary_loss(margin, y, gamma, alpha)


@pytest.mark.parametrize("lib", LIBS)
def test_native_fit_lowers_focal_loss(lib, page_blocks):
    ad = _adapter(lib)
    X, y_cls = page_blocks
    y = (y_cls != 0).astype(float)  # the 10 % non-text blocks are the positives
    obj = ad.focal_objective(2.0, 0.25)
    base = obj.init_margin(y)
    start = _binary_loss(np.full(len(y), base), y)
    if lib == "xgboost":
        import xgboost as xgb
        d = xgb.DMatrix(X, y, base_margin=np.full(len(y), base))
        hist = {}
        bst = xgb.train({"disable_default_eval_metric": 1, "max_depth": 3}, d, 20, obj=obj,
                        custom_metric=ad.focal_metric(2.0, 0.25), evals=[(d, "train")], evals_result=hist,
                        verbose_eval=False)
        margin = bst.predict(d, output_margin=True)
        metric = hist["train"]["focal"]
    else:
        import lightgbm as lgb
        d = lgb.Dataset(X, y, init_score=np.full(len(y), base))
        hist = {}
        bst = lgb.train({"objective": obj, "verbose": -1, "num_leaves": 8}, d, 20, valid_sets=[d],
                        valid_names=["train"], feval=ad.focal_metric(2.0, 0.25),
                        callbacks=[lgb.record_evaluation(hist)])
        margin = bst.predict(X, raw_score=True) + base
        metric = hist["train"]["focal"]
    end = _binary_loss(margin, y)
    assert end < 0.5 * start
    assert abs(metric[-1] - end) < 1e-5 and metric[-1] < metric[0]  # xgboost records 6 digits


@pytest.mark.parametrize("lib", LIBS)
def test_sklearn_fit_binary_and_multiclass(lib, page_blocks):
    ad = _adapter(lib)
    X, y_cls = page_blocks
    y = (y_cls != 0).astype(int)
    if lib == "xgboost":
        import xgboost as xgb
        clf = xgb.XGBClassifier(n_estimators=20, max_depth=3, objective=ad.focal_objective(2.0, 0.25))
        clf.fit(X, y)
        margin = clf.predict(X, output_margin=True)
        multi = xgb.XGBClassifier(n_estimators=20, max_depth=3, objective=ad.softmax_focal_objective(2.0))
        multi.fit(X, y_cls, sample_weight=np.where(y_cls == 0, 0.5, 1.0))
        scores = multi.predict(X, output_margin=True)
    else:
        import lightgbm as lgb
        clf = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1, objective=ad.focal_objective(2.0, 0.25))
        clf.fit(X, y)
        margin = clf.predict(X, raw_score=True)
        multi = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1,
                                   objective=ad.softmax_focal_objective(2.0))
        multi.fit(X, y_cls, sample_weight=np.where(y_cls == 0, 0.5, 1.0))
        scores = multi.predict(X, raw_score=True)
    assert _binary_loss(margin, y) < 0.5 * _binary_loss(np.zeros(len(y)), y)
    from focalkit.adapters import _gbdt
    assert scores.shape == (len(y), 5)
    assert _gbdt.softmax_loss(scores, y_cls, 2.0, None) < 0.3 * _gbdt.softmax_loss(np.zeros_like(scores), y_cls, 2.0, None)


@pytest.mark.parametrize("lib", LIBS)
def test_sample_weight_honoured_and_bad_params(lib):
    ad = _adapter(lib)
    margin, label = np.array([0.3, -1.0]), np.array([1.0, 0.0])
    g1, h1 = ad.focal_objective(2.0)(label, margin)
    g2, h2 = ad.focal_objective(2.0)(label, margin, sample_weight=np.array([2.0, 3.0]))
    np.testing.assert_allclose(g2, g1 * [2.0, 3.0])
    np.testing.assert_allclose(h2, h1 * [2.0, 3.0])
    with pytest.raises(ValueError, match="gamma"):
        ad.focal_objective(-1.0)
    with pytest.raises(ValueError, match="hessian_floor"):
        ad.focal_objective(2.0, hessian_floor=0.0)
    with pytest.raises(ValueError, match="alpha"):
        ad.focal_objective(2.0, alpha=2.0)
    with pytest.raises(ValueError, match="weight"):
        ad.softmax_focal_objective(2.0, weight=[1.0, -1.0])


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("bad", [np.nan, 2.0, -1.0])
def test_binary_objective_and_metric_refuse_bad_labels(lib, bad):
    ad = _adapter(lib)
    margin, label = np.zeros(3), np.array([0.0, bad, 1.0])
    with pytest.raises(ValueError, match="`label`"):
        ad.focal_objective(2.0)(label, margin)
    with pytest.raises(ValueError, match="`label`"):
        ad.focal_objective(2.0).init_margin(label)


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_bad_sample_weights_are_refused(lib, bad):
    ad = _adapter(lib)
    with pytest.raises(ValueError, match="sample_weight"):
        ad.focal_objective(2.0)(np.array([1.0, 0.0]), np.zeros(2), sample_weight=np.array([1.0, bad]))
    with pytest.raises(ValueError, match="sample_weight"):
        ad.softmax_focal_objective(2.0)(np.array([1, 0]), np.zeros((2, 3)), sample_weight=np.array([bad, 1.0]))


@pytest.mark.parametrize("lib", LIBS)
def test_init_margin_of_nothing_is_an_error(lib):
    ad = _adapter(lib)
    with pytest.raises(ValueError, match="non-empty"):
        ad.focal_objective(2.0).init_margin([])
    with pytest.raises(ValueError, match="`label`"):
        ad.focal_objective(2.0).init_margin([np.nan, np.nan])


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("bad", [3.0, -1.0, 1.7])
def test_softmax_labels_must_be_class_indices(lib, bad):
    ad = _adapter(lib)
    obj = ad.softmax_focal_objective(2.0)
    with pytest.raises(ValueError, match="class indices"):
        obj(np.array([0.0, bad]), np.zeros((2, 3)))


@pytest.mark.parametrize("lib", LIBS)
def test_softmax_without_num_class_names_it(lib):
    ad = _adapter(lib)
    with pytest.raises(ValueError, match="num_class"):
        ad.softmax_focal_objective(2.0)(np.array([0.0, 1.0, 2.0]), np.zeros(3))


# ---- the C kernel the torch-free adapters call, against focalkit.core ------------------------------

from focalkit import _native  # noqa: E402
from focalkit.adapters import _gbdt  # noqa: E402
from focalkit.core import (sigmoid_focal_linear, softmax_focal_hard,  # noqa: E402
                           softmax_focal_hard_hess_diag)


@pytest.mark.skipif(_native.LIB is None, reason="the native kernel is built in CI")
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.7])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("soft", [False, True])
def test_c_binary_kernel_equals_core(gamma, alpha, soft):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 4, 500), [-700, -40, -17, 0, 17, 40, 700]])
    y = rng.random(x.size) if soft else (rng.random(x.size) < 0.3).astype(float)
    w = rng.random(x.size) + 0.1
    loss, g, h = _gbdt._binary(x, y, gamma, alpha, w, 1e-300, True, True)
    t = sigmoid_focal_linear(torch.tensor(x), torch.tensor(y), gamma, alpha, hessian=True)
    wt = torch.tensor(w)
    np.testing.assert_allclose(loss, (t.loss * wt).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(g, (t.grad * wt).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(h, (t.hess * wt).clamp_min(1e-300).numpy(), rtol=1e-10, atol=1e-300)


@pytest.mark.skipif(_native.LIB is None, reason="the native kernel is built in CI")
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_c_softmax_kernel_equals_core(gamma):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, (300, 5))
    z[0] = [80, -80, 0, 1, 2]
    z[1] = [1e4, 1e4 - 0.5, 0, 0, 0]
    y = rng.integers(0, 5, 300)
    cw = np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    sw = rng.random(300) + 0.1
    loss, g, h = _gbdt._softmax(z, y, gamma, cw, sw, 1e-300, True, True)
    coef = torch.tensor(cw[y] * sw)
    lt, gt = softmax_focal_hard(torch.tensor(z), torch.tensor(y), gamma, coef)
    ht = softmax_focal_hard_hess_diag(torch.tensor(z), torch.tensor(y), gamma, coef)
    np.testing.assert_allclose(loss, lt.numpy(), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(g, gt.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h, ht.clamp_min(1e-300).numpy(), rtol=1e-8, atol=1e-14)


def test_torch_fallback_where_the_kernel_is_absent(monkeypatch):
    x, y = np.array([0.3, -2.0, 5.0]), np.array([1.0, 0.0, 0.4])
    want = _gbdt.binary_grad_hess(x, y, 2.0, 0.25)
    wants = _gbdt.softmax_grad_hess(np.eye(3), [0, 1, 2], 2.0, None)
    monkeypatch.setattr(_native, "LIB", None)
    for a, b in zip(_gbdt.binary_grad_hess(x, y, 2.0, 0.25), want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(_gbdt.softmax_grad_hess(np.eye(3), [0, 1, 2], 2.0, None), wants):
        np.testing.assert_allclose(a, b, rtol=1e-12)
