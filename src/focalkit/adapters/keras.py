"""Keras 3 focal losses written with ``keras.ops`` only, so they run on every backend.

* :class:`BinaryFocalLoss`: sigmoid focal loss, per sample the mean over the last axis (as Keras's
  binary losses).
* :class:`CategoricalFocalLoss`: softmax focal loss for one-hot / soft targets, summed over classes.
* :class:`SparseCategoricalFocalLoss`: softmax focal loss for integer class targets (Keras has none,
  keras-team/keras#23442).

Unlike ``keras.losses.BinaryFocalCrossentropy`` and ``CategoricalFocalCrossentropy``, with
``from_logits=True`` (the default here) nothing is clipped: the loss is formed from log-sigmoid /
log-softmax, ``(1-p)^gamma`` as ``exp(gamma * log(1-p))``, and ``log(1-p)`` of the most probable
class from a log-sum-exp over the other classes, so a confidently wrong example keeps its gradient
and ``gamma < 1`` gives no NaN. With ``from_logits=False`` the probabilities must be clipped to
``[epsilon, 1 - epsilon]`` to be turned into logits.

If ``KERAS_BACKEND`` is unset and TensorFlow is not installed, importing this module selects the
torch backend (JAX where torch is not installed) before importing Keras. Importing this module never
imports torch; on the torch backend the losses call focalkit's torch API (its native and Triton
kernels, loss and gradient in one pass), on the others they are written in ``keras.ops``.
"""

from __future__ import annotations

import importlib.util
import os
import sys



def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked install
        return False


if "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ and not _installed("tensorflow"):
    # Keras's default backend is TensorFlow; without it, torch where installed, else JAX
    os.environ["KERAS_BACKEND"] = "torch" if _installed("torch") else "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from focalkit import _checks  # noqa: E402

__all__ = ["BinaryFocalLoss", "CategoricalFocalLoss", "SparseCategoricalFocalLoss"]

_EPS = 1e-7


def _on_torch(x) -> bool:
    """The torch backend with a concrete torch tensor: focalkit's kernels can take it."""
    return keras.backend.backend() == "torch" and type(x).__module__.startswith("torch")


def _logits(y_pred, from_logits: bool, axis=None):
    if not _on_torch(y_pred) and keras.backend.standardize_dtype(y_pred.dtype) in ("float16", "bfloat16"):
        # halves computed in float32 (Keras's Loss casts the result back to its dtype); the NumPy
        # backend has no bfloat16 log-sum-exp, and float16 loses the (1-p)^gamma factor
        y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        return y_pred
    # where/full_like rather than ops.clip, which loses float64 precision on the torch backend.
    p = ops.where(y_pred < _EPS, ops.full_like(y_pred, _EPS), y_pred)
    p = ops.where(p > 1.0 - _EPS, ops.full_like(p, 1.0 - _EPS), p)
    if axis is None:
        return ops.log(p) - ops.log1p(-p)
    return ops.log(p)  # log-probabilities are logits up to a constant per row


def _weights(weight, class_counts, beta):
    if weight is not None and class_counts is not None:
        _checks.fail("weight", "to be None when class_counts is given", weight)
    if class_counts is not None:
        from focalkit.core.weights import class_balanced  # NumPy: no torch on the JAX / TensorFlow backends

        counts = np.asarray(list(class_counts), dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 0):
            _checks.fail("class_counts", "to be a non-empty sequence of counts >= 0", class_counts)
        return [float(v) for v in class_balanced(counts, beta)]
    if weight is None:
        return None
    w = [float(v) for v in weight]
    if any(not v >= 0 for v in w):
        _checks.fail("weight", "to hold values >= 0 (weights cannot be negative)", weight)
    return w


def _same_rank(y_true, y_pred):
    """Keras's own rule for a target and a prediction whose ranks differ by one (its losses'
    ``squeeze_or_expand_to_same_rank``): ``(N,)`` against ``(N, 1)`` becomes ``(N, 1)`` against
    ``(N, 1)``, a trailing axis of size 1 is squeezed otherwise. Any other mismatch is an error, never
    a broadcast (``(N,)`` against ``(N, 1)`` broadcast to ``(N, N)`` before)."""
    r_t, r_p = len(y_true.shape), len(y_pred.shape)
    if r_p == r_t + 1 and y_pred.shape[-1] == 1:
        y_true = ops.expand_dims(y_true, -1) if r_t == 1 else y_true
        y_pred = y_pred if r_t == 1 else ops.squeeze(y_pred, -1)
    elif r_t == r_p + 1 and y_true.shape[-1] == 1:
        y_pred = ops.expand_dims(y_pred, -1) if r_p == 1 else y_pred
        y_true = y_true if r_p == 1 else ops.squeeze(y_true, -1)
    if tuple(y_true.shape) != tuple(y_pred.shape) and None not in tuple(y_true.shape) + tuple(y_pred.shape):
        _checks.fail("y_true", f"to have y_pred's shape {tuple(y_pred.shape)}", f"shape {tuple(y_true.shape)}")
    return y_true, y_pred


def _check_class_indices(y, n_cls: int):
    """Class indices in [0, C): raised where the values can be read (eager); while a backend traces
    (jit, tf.function) the loss of a bad index is NaN instead, never a silent zero one-hot."""
    try:
        arr = np.asarray(ops.convert_to_numpy(y))
    except Exception:  # a symbolic tensor
        return ops.logical_and(y >= 0, y < n_cls)
    bad = (arr < 0) | (arr >= n_cls)
    if bad.any():
        _checks.fail("y_true", f"to hold class indices in [0, {n_cls - 1}]", f"a value {int(arr[bad][0])}")
    return None


def _logaddexp(a, b):
    """log(e^a + e^b), one argument may be -inf. (keras.ops.logaddexp on the torch backend returns
    float32 for float64 inputs in Keras 3.15, like ops.mean and ops.maximum.)"""
    m = ops.where(a > b, a, b)
    return m + ops.log1p(ops.exp(-ops.abs(a - b)))


def _log1m_softmax(z, logp, axis: int):
    """log(1 - p_k) for every class: exact LSE over the other classes for the arg-max class,
    log1p(-p) (with p <= 1/2) elsewhere; both branches have finite derivatives."""
    n_cls = ops.shape(z)[axis]
    is_max = ops.cast(ops.one_hot(ops.argmax(z, axis=axis), n_cls, axis=axis), "bool")
    neg_inf = ops.full_like(z, float("-inf"))
    lse = ops.logsumexp(z, axis=axis, keepdims=True)
    lse_rest = ops.logsumexp(ops.where(is_max, neg_inf, z), axis=axis, keepdims=True)
    p_safe = ops.where(is_max, ops.zeros_like(z), ops.exp(logp))
    return ops.where(is_max, lse_rest - lse + ops.zeros_like(z), ops.log1p(-p_safe))


@keras.saving.register_keras_serializable(package="focalkit")
class BinaryFocalLoss(keras.losses.Loss):
    r"""Sigmoid focal loss :math:`-\alpha_t(1-p_t)^\gamma\log p_t`, see :func:`focalkit.sigmoid_focal_loss`.

    Args:
        alpha: positive-class weight in [0, 1], or None (off). Default 0.25.
        gamma: >= 0. Default 2.
        from_logits: whether ``y_pred`` holds logits (default True) or probabilities.
        label_smoothing: in [0, 1]; targets become ``y (1 - ls) + 0.5 ls`` (Keras's convention).
        soft_target: ``"pt"`` or ``"linear"``, the two meanings of a soft target (docs/math.md).
        reduction, name, dtype: as for every ``keras.losses.Loss``.
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=True, label_smoothing=0.0, soft_target="pt",
                 reduction="sum_over_batch_size", name="binary_focal_loss", dtype=None, axis=-1):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.axis = _checks.integer("axis", axis)
        self.alpha = _checks.alpha(alpha)
        self.gamma = _checks.gamma(gamma)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        self.soft_target = _checks.choice("soft_target", soft_target, ("pt", "linear"))

    def call(self, y_true, y_pred):
        x = _logits(ops.convert_to_tensor(y_pred), self.from_logits)
        y, x = _same_rank(ops.cast(y_true, x.dtype), x)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if _on_torch(x):  # the same loss on focalkit's kernels
            from focalkit.losses.sigmoid_focal import sigmoid_focal_loss

            loss = sigmoid_focal_loss(x, y, alpha=self.alpha, gamma=self.gamma, soft_target=self.soft_target,
                                      reduction="none")
            return loss.sum(self.axis) / loss.shape[self.axis]
        lp, ln = ops.log_sigmoid(x), ops.log_sigmoid(-x)
        g, a = self.gamma, self.alpha
        if self.soft_target == "linear":
            w_pos = y if a is None else y * a
            w_neg = (1.0 - y) if a is None else (1.0 - y) * (1.0 - a)
            loss = -(w_pos * ops.exp(g * ln) * lp + w_neg * ops.exp(g * lp) * ln)
        else:
            bce = -(y * lp + (1.0 - y) * ln)
            # log(1 - p_t) = log((1-y) p + y (1-p)); log(0) = -inf selects one branch for hard labels.
            log_u = _logaddexp(ops.log1p(-y) + lp, ops.log(y) + ln)
            loss = ops.exp(g * log_u) * bce if g else bce
            if a is not None:
                loss = (a * y + (1.0 - a) * (1.0 - y)) * loss
        # sum / n rather than ops.mean, which computes float64 in float32 on the torch backend (3.15).
        return ops.sum(loss, axis=self.axis) / ops.shape(loss)[self.axis]

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "soft_target": self.soft_target, "axis": self.axis}


class _SoftmaxFocalBase(keras.losses.Loss):
    def __init__(self, gamma, weight, class_counts, beta, from_logits, label_smoothing, axis, reduction, name,
                 dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = _checks.gamma(gamma)
        self.beta = _checks.number("beta", beta, lo=0.0, hi=1.0, hi_open=True)
        self.weight = _weights(weight, class_counts, self.beta)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        self.axis = _checks.integer("axis", axis)

    def _dense(self, q, z):
        """-sum_k w_k q_k (1-p_k)^gamma log p_k over the class axis."""
        if _on_torch(z):  # the same loss on focalkit's kernels, the classes moved to dim 1
            from focalkit.losses.softmax_focal import softmax_focal_loss

            w = None if self.weight is None else ops.convert_to_tensor(self.weight, dtype=z.dtype)
            return softmax_focal_loss(z.movedim(self.axis, 1), q.movedim(self.axis, 1), gamma=self.gamma,
                                      label_smoothing=self.label_smoothing, alpha=w, reduction="none")
        n_cls = ops.shape(z)[self.axis]
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / n_cls
        if self.weight is not None:
            q = q * self._broadcast_weight(z)
        logp = ops.log_softmax(z, axis=self.axis)
        m = ops.exp(self.gamma * _log1m_softmax(z, logp, self.axis)) if self.gamma else 1.0
        return -ops.sum(q * m * logp, axis=self.axis)

    def _broadcast_weight(self, z):
        w = ops.convert_to_tensor(self.weight, dtype=z.dtype)
        shape = [1] * len(ops.shape(z))
        shape[self.axis] = -1
        return ops.reshape(w, shape)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "weight": self.weight, "beta": self.beta,
                "from_logits": self.from_logits, "label_smoothing": self.label_smoothing, "axis": self.axis}


@keras.saving.register_keras_serializable(package="focalkit")
class CategoricalFocalLoss(_SoftmaxFocalBase):
    r"""Softmax focal loss for one-hot or soft targets, see :func:`focalkit.softmax_focal_loss`.

    :math:`-\sum_kw_kq_k(1-p_k)^\gamma\log p_k` per sample, ``q`` the (smoothed) target.

    Args:
        gamma: >= 0. Default 2.
        weight: per-class weights (the multi-class alpha), a list of C numbers, or None.
        class_counts: per-class sample counts: use class-balanced weights with ``beta`` instead.
        beta: effective-number parameter for ``class_counts``. Default 0.999.
        from_logits: logits (default) or probabilities.
        label_smoothing: in [0, 1]; ``q (1 - ls) + ls / C``.
        axis: the class axis. Default -1.
    """

    def __init__(self, gamma=2.0, weight=None, class_counts=None, beta=0.999, from_logits=True,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name="categorical_focal_loss",
                 dtype=None):
        super().__init__(gamma, weight, class_counts, beta, from_logits, label_smoothing, axis, reduction, name,
                         dtype)

    def call(self, y_true, y_pred):
        z = _logits(ops.convert_to_tensor(y_pred), self.from_logits, axis=self.axis)
        return self._dense(ops.cast(y_true, z.dtype), z)


@keras.saving.register_keras_serializable(package="focalkit")
class SparseCategoricalFocalLoss(_SoftmaxFocalBase):
    r"""Softmax focal loss for integer class targets: :math:`-w_y(1-p_y)^\gamma\log p_y`.

    Arguments as :class:`CategoricalFocalLoss`; ``y_true`` holds class indices of ``y_pred``'s shape
    without the class axis (a trailing axis of size 1 is accepted). :math:`\log(1-p_y)` is the
    log-sum-exp of the other classes minus that of all classes.
    """

    def __init__(self, gamma=2.0, weight=None, class_counts=None, beta=0.999, from_logits=True,
                 label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="sparse_categorical_focal_loss", dtype=None):
        super().__init__(gamma, weight, class_counts, beta, from_logits, label_smoothing, axis, reduction, name,
                         dtype)

    def call(self, y_true, y_pred):
        z = _logits(ops.convert_to_tensor(y_pred), self.from_logits, axis=self.axis)
        y = ops.cast(y_true, "int32")
        if len(ops.shape(y)) == len(ops.shape(z)):
            y = ops.squeeze(y, axis=self.axis)
        n_cls = ops.shape(z)[self.axis]
        valid = _check_class_indices(y, n_cls)
        onehot = ops.one_hot(y, n_cls, axis=self.axis, dtype=z.dtype)
        if valid is not None:
            return ops.where(valid, self._sparse(onehot, z), ops.full_like(valid, float("nan"), dtype=z.dtype))
        return self._sparse(onehot, z)

    def _sparse(self, onehot, z):
        if self.label_smoothing:
            return self._dense(onehot, z)
        lse = ops.logsumexp(z, axis=self.axis)
        is_y = ops.cast(onehot, "bool")
        lse_rest = ops.logsumexp(ops.where(is_y, ops.full_like(z, float("-inf")), z), axis=self.axis)
        logp_y = ops.sum(onehot * z, axis=self.axis) - lse
        loss = -logp_y * (ops.exp(self.gamma * (lse_rest - lse)) if self.gamma else 1.0)
        if self.weight is not None:
            loss = loss * ops.sum(onehot * self._broadcast_weight(z), axis=self.axis)
        return loss
