"""Keras 3 focal losses (torch backend here; every backend in principle: keras.ops only)."""

import os

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - the suite sets KERAS_BACKEND=torch
    pytest.skip("these tests feed torch tensors", allow_module_level=True)

import focalkit as fk  # noqa: E402
from focalkit.adapters.keras import BinaryFocalLoss, CategoricalFocalLoss, SparseCategoricalFocalLoss  # noqa: E402

D = torch.float64


@pytest.fixture(params=["kernels", "keras.ops"], autouse=True)
def loss_path(request, monkeypatch):
    """Every test twice: on the torch backend the losses call focalkit's kernels; the keras.ops code
    (what the JAX and TensorFlow backends run) is forced for the second pass."""
    if request.param == "keras.ops":
        import focalkit.adapters.keras as fkk

        monkeypatch.setattr(fkk, "_on_torch", lambda x: False)
    return request.param


def _data(n=6, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=D) * 4, torch.randint(0, c, (n,), generator=g)


def _grad(fn, x):
    x = x.clone().requires_grad_()
    out = fn(x)
    out.backward(torch.linspace(0.5, 1.5, out.numel(), dtype=D).view(out.shape))
    return out.detach(), x.grad


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("mode", ["pt", "linear"])
@pytest.mark.parametrize("soft", [False, True])
def test_binary_equals_focalkit(gamma, alpha, mode, soft):
    x, _ = _data()
    y = torch.rand(6, 4, dtype=D) if soft else (torch.rand(6, 4) < 0.4).to(D)
    k_out, k_grad = _grad(lambda t: BinaryFocalLoss(alpha, gamma, soft_target=mode, reduction=None, dtype="float64")(y, t), x)
    f_out, f_grad = _grad(lambda t: fk.sigmoid_focal_loss(t, y, alpha=alpha, gamma=gamma, soft_target=mode,
                                                          reduction="none").mean(-1), x)
    torch.testing.assert_close(k_out, f_out, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(k_grad, f_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_and_sparse_equal_focalkit(gamma, weighted, label_smoothing):
    z, t = _data()
    w = [0.5, 1.0, 2.0, 1.5] if weighted else None
    wt = None if w is None else torch.tensor(w, dtype=D)
    want_out, want_grad = _grad(lambda s: fk.softmax_focal_loss(s, t, gamma=gamma, weight=wt,
                                                                label_smoothing=label_smoothing,
                                                                reduction="none"), z)
    onehot = torch.nn.functional.one_hot(t, 4).to(D)
    for loss, target in [(CategoricalFocalLoss, onehot), (SparseCategoricalFocalLoss, t),
                         (SparseCategoricalFocalLoss, t[:, None])]:
        crit = loss(gamma, weight=w, label_smoothing=label_smoothing, reduction=None, dtype="float64")
        out, g = _grad(lambda s: crit(target, s), z)
        torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(g, want_grad, rtol=1e-10, atol=1e-13)


def test_categorical_soft_targets_equal_focalkit():
    z, _ = _data()
    q = torch.softmax(torch.randn(6, 4, dtype=D), 1)
    out, g = _grad(lambda s: CategoricalFocalLoss(1.5, reduction=None, dtype="float64")(q, s), z)
    want, want_g = _grad(lambda s: fk.softmax_focal_loss(s, q, gamma=1.5, reduction="none"), z)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g, want_g, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_confidently_wrong_example_keeps_gradient_and_no_nan(gamma):
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([[-30.0], [30.0], [1e4], [-1e4]], dtype=dtype, requires_grad=True)
        y = torch.tensor([[1.0], [0.0], [1.0], [0.0]], dtype=dtype)
        BinaryFocalLoss(0.25, gamma, reduction="sum", dtype=str(dtype).split(".")[1])(y, x).backward()
        g = x.grad.double()
        # CE's gradient alpha_t for the two wrong ones (Keras's own loss gives exactly 0 here).
        assert torch.isfinite(g).all() and abs(g[0].item() + 0.25) < 1e-5 and abs(g[1].item() - 0.75) < 1e-5
        z = torch.tensor([[0.0, 30.0, 0.0], [60.0, 0.0, -3.0], [1e4, -1e4, 0.0]], dtype=dtype)
        t = torch.tensor([0, 0, 0])
        for crit, target in [(SparseCategoricalFocalLoss(gamma, reduction="sum", dtype=str(dtype).split(".")[1]), t),
                             (CategoricalFocalLoss(gamma, reduction="sum", dtype=str(dtype).split(".")[1]),
                              torch.nn.functional.one_hot(t, 3).to(dtype))]:
            zz = z.clone().requires_grad_()
            crit(target, zz).backward()
            assert torch.isfinite(zz.grad).all()
            assert abs(zz.grad[0, 0].item() + 1.0) < 1e-5 and abs(zz.grad[0, 1].item() - 1.0) < 1e-5


def test_from_logits_false_and_class_counts():
    z, t = _data()
    p = torch.softmax(z, 1)
    a = SparseCategoricalFocalLoss(2.0, from_logits=False, dtype="float64")(t, p)
    b = SparseCategoricalFocalLoss(2.0, dtype="float64")(t, z)
    torch.testing.assert_close(a.double(), b.double(), rtol=1e-6, atol=1e-9)
    counts = [100, 10, 5, 1]
    crit = SparseCategoricalFocalLoss(2.0, class_counts=counts, beta=0.99, dtype="float64")
    want = fk.softmax_focal_loss(z, t, weight=fk.class_balanced_weights(counts, 0.99, dtype=D), reduction="sum") / 6
    # Keras's sum_over_batch_size is sum / N (focalkit's "mean" is F.cross_entropy's weighted mean); float32.
    torch.testing.assert_close(crit(t, z).double(), want, rtol=1e-6, atol=0)
    s = torch.sigmoid(z)
    y = (torch.rand(6, 4) < 0.4).to(D)
    torch.testing.assert_close(BinaryFocalLoss(from_logits=False, dtype="float64")(y, s).double(),
                               BinaryFocalLoss(dtype="float64")(y, z).double(), rtol=1e-5, atol=1e-8)


def test_get_config_round_trips():
    for loss in (BinaryFocalLoss(0.3, 1.5, label_smoothing=0.1, soft_target="linear", dtype="float64"),
                 CategoricalFocalLoss(0.5, weight=[1.0, 2.0, 3.0, 4.0], label_smoothing=0.05, dtype="float64"),
                 SparseCategoricalFocalLoss(3.0, class_counts=[10, 5, 2, 1], dtype="float64")):
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
        z, t = _data()
        target = t if isinstance(loss, SparseCategoricalFocalLoss) else (
            torch.nn.functional.one_hot(t, 4).to(D))
        torch.testing.assert_close(clone(target, z), loss(target, z))


@pytest.mark.parametrize("loss", ["binary", "sparse", "categorical"])
def test_model_compiles_and_fits(loss):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)).astype("float32")
    y = (X[:, 0] > 0.5).astype("int64")
    if loss == "binary":
        crit, target, units = BinaryFocalLoss(), y[:, None].astype("float32"), 1
    elif loss == "sparse":
        crit, target, units = SparseCategoricalFocalLoss(weight=[1.0, 3.0]), y, 2
    else:
        crit, target, units = CategoricalFocalLoss(class_counts=[48, 16]), np.eye(2, dtype="float32")[y], 2
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(units)])
    model.compile(optimizer="adam", loss=crit)
    hist = model.fit(X, target, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        BinaryFocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="soft_target"):
        BinaryFocalLoss(soft_target="q")
    with pytest.raises(ValueError, match="weight"):
        SparseCategoricalFocalLoss(weight=[1.0], class_counts=[1])
    assert os.environ.get("KERAS_BACKEND") == "torch"


def test_binary_rank_one_targets_follow_keras():
    """(N,) targets against (N, 1) predictions: Keras's own rule, not a broadcast to (N, N)."""
    yt = np.array([0.0, 1.0, 1.0, 0.0])
    yp = np.array([[0.3], [2.0], [-1.0], [0.5]], dtype="float32")
    ours = float(BinaryFocalLoss(from_logits=True, alpha=None, gamma=2.0)(yt, yp))
    theirs = float(keras.losses.BinaryFocalCrossentropy(from_logits=True, gamma=2.0)(yt, yp))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    with pytest.raises(ValueError, match="y_true"):
        BinaryFocalLoss()(np.zeros((4, 2)), np.zeros((4, 3), dtype="float32"))


@pytest.mark.parametrize("bad", [-1, 3])
def test_sparse_labels_out_of_range_raise(bad):
    with pytest.raises(ValueError, match="class indices"):
        SparseCategoricalFocalLoss()(np.array([0, bad]), np.zeros((2, 3), dtype="float32"))


def test_negative_class_weights_refused_like_the_torch_api():
    with pytest.raises(ValueError, match=">= 0"):
        CategoricalFocalLoss(weight=[1.0, -1.0])
    with pytest.raises(ValueError, match=">= 0"):
        fk.softmax_focal_loss(torch.zeros(2, 2), torch.tensor([0, 1]), weight=torch.tensor([1.0, -1.0]))
