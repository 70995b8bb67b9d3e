"""focalkit.compat.keras against Keras 3's own focal losses (torch backend here), where Keras does not
clip: logits in [-4, 4], probabilities in [0.01, 0.99]."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from focalkit.compat import keras as fkk  # noqa: E402


@pytest.fixture(params=["kernels", "keras.ops"], autouse=True)
def loss_path(request, monkeypatch):
    """On the torch backend the presets call focalkit's kernels; the keras.ops code (JAX, TensorFlow)
    is forced for the second pass."""
    if request.param == "keras.ops":
        import focalkit.adapters.keras as fk_adapter

        monkeypatch.setattr(fk_adapter, "_on_torch", lambda x: False)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(keras.ops.convert_to_numpy(a)), np.asarray(keras.ops.convert_to_numpy(b)),
                               rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("balance", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_binary_equals_keras(from_logits, balance, gamma, ls, reduction):
    rng = np.random.default_rng(0)
    y = (rng.random((6, 4)) < 0.4).astype("float32")
    pred = (rng.uniform(-4, 4, (6, 4)) if from_logits else rng.uniform(0.01, 0.99, (6, 4))).astype("float32")
    kw = dict(apply_class_balancing=balance, alpha=0.3, gamma=gamma, from_logits=from_logits, label_smoothing=ls,
              reduction=reduction)
    _close(fkk.BinaryFocalCrossentropy(**kw)(y, pred), keras.losses.BinaryFocalCrossentropy(**kw)(y, pred))
    fn = {k: v for k, v in kw.items() if k != "reduction"}
    _close(fkk.binary_focal_crossentropy(y, pred, **fn), keras.losses.binary_focal_crossentropy(y, pred, **fn))
    _close(fkk.binary_focal_crossentropy(y, pred, axis=0, **fn),
           keras.losses.binary_focal_crossentropy(y, pred, axis=0, **fn))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("ls", [0.0, 0.1])
@pytest.mark.parametrize("soft", [False, True])
def test_categorical_equals_keras(from_logits, gamma, ls, soft):
    rng = np.random.default_rng(1)
    y = rng.dirichlet(np.ones(5), 6).astype("float32") if soft else np.eye(5, dtype="float32")[rng.integers(0, 5, 6)]
    if from_logits:
        pred = rng.uniform(-3, 3, (6, 5)).astype("float32")
    else:
        pred = rng.uniform(0.05, 1, (6, 5)).astype("float32")
        pred /= pred.sum(1, keepdims=True)
    kw = dict(alpha=0.4, gamma=gamma, from_logits=from_logits, label_smoothing=ls)
    _close(fkk.CategoricalFocalCrossentropy(**kw)(y, pred), keras.losses.CategoricalFocalCrossentropy(**kw)(y, pred))
    _close(fkk.categorical_focal_crossentropy(y, pred, **kw), keras.losses.categorical_focal_crossentropy(y, pred, **kw))


def test_confidently_wrong_logits_keep_their_gradient():
    import torch

    x = torch.tensor([[30.0]], requires_grad=True)
    y = torch.tensor([[0.0]])
    fkk.BinaryFocalCrossentropy(from_logits=True)(y, x).backward()
    ours = x.grad.clone()
    x.grad = None
    keras.losses.BinaryFocalCrossentropy(from_logits=True)(y, x).backward()
    assert ours.abs().item() > 0.5 and x.grad.abs().item() < 1e-5  # Keras's clipped BCE: no gradient


def test_config_round_trip():
    loss = fkk.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=1.5)
    again = fkk.BinaryFocalCrossentropy.from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    cat = fkk.CategoricalFocalCrossentropy(alpha=0.4)
    assert fkk.CategoricalFocalCrossentropy.from_config(cat.get_config()).get_config() == cat.get_config()
