"""Keras 3's focal losses on focalkit's Keras losses: ``BinaryFocalCrossentropy``,
``CategoricalFocalCrossentropy``, ``binary_focal_crossentropy``, ``categorical_focal_crossentropy``, with
Keras's names, signatures and defaults (``from_logits=False``, ``apply_class_balancing=False``,
``alpha=0.25``, ``label_smoothing``, ``axis``, ``reduction``). The classes derive from
``keras.losses.Loss`` (the one preset that imports its peer: the base class is Keras's own).

Equal to Keras wherever Keras is finite and correct. Where Keras clips probabilities to
``[1e-7, 1 - 1e-7]`` before its cross-entropy (also with ``from_logits=True``), a confidently wrong
prediction gets a zero gradient there; here, with ``from_logits=True``, nothing is clipped
(``docs/compat.md``).
"""

from __future__ import annotations

import keras

from focalkit.adapters import keras as _fk

__all__ = ["BinaryFocalCrossentropy", "CategoricalFocalCrossentropy", "binary_focal_crossentropy",
           "categorical_focal_crossentropy"]


@keras.saving.register_keras_serializable(package="focalkit.compat")
class BinaryFocalCrossentropy(_fk.BinaryFocalLoss):
    """``keras.losses.BinaryFocalCrossentropy``'s signature; ``alpha`` applies only with
    ``apply_class_balancing=True``, as in Keras."""

    def __init__(self, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                 axis=-1, reduction="sum_over_batch_size", name="binary_focal_crossentropy", dtype=None):
        super().__init__(alpha=alpha if apply_class_balancing else None, gamma=gamma, from_logits=from_logits,
                         label_smoothing=label_smoothing, soft_target="pt", reduction=reduction, name=name,
                         dtype=dtype, axis=axis)
        self.apply_class_balancing = bool(apply_class_balancing)
        self.keras_alpha = alpha

    def get_config(self):
        base = keras.losses.Loss.get_config(self)
        return {**base, "apply_class_balancing": self.apply_class_balancing, "alpha": self.keras_alpha,
                "gamma": self.gamma, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing,
                "axis": self.axis}


@keras.saving.register_keras_serializable(package="focalkit.compat")
class CategoricalFocalCrossentropy(_fk.CategoricalFocalLoss):
    """``keras.losses.CategoricalFocalCrossentropy``'s signature: ``alpha`` (a number) multiplies every
    class's term, as in Keras."""

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_focal_crossentropy", dtype=None):
        self._alpha = float(alpha)
        super().__init__(gamma=gamma, weight=None, from_logits=from_logits, label_smoothing=label_smoothing,
                         axis=axis, reduction=reduction, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        return self._alpha * super().call(y_true, y_pred)

    def get_config(self):
        base = keras.losses.Loss.get_config(self)
        return {**base, "alpha": self._alpha, "gamma": self.gamma, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25, gamma=2.0, from_logits=False,
                              label_smoothing=0.0, axis=-1):
    """``keras.losses.binary_focal_crossentropy``: per-sample losses (no reduction), as Keras's function."""
    return BinaryFocalCrossentropy(apply_class_balancing, alpha, gamma, from_logits, label_smoothing, axis,
                                   reduction="none").call(y_true, y_pred)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
                                   axis=-1):
    """``keras.losses.categorical_focal_crossentropy``: per-sample losses (no reduction), as Keras's function."""
    return CategoricalFocalCrossentropy(alpha, gamma, from_logits, label_smoothing, axis,
                                        reduction="none").call(y_true, y_pred)
