"""Calibration of focal-trained models: the focal calibration map and expected calibration error."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from focalkit import _checks

_checks.bind_torch()
from focalkit.core.calibration import log_inverse_slope

ArrayLike = Union[Tensor, np.ndarray]

__all__ = ["expected_calibration_error", "focal_calibration_map"]


def _as_float64(name: str, value) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(torch.float64)
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        _checks.fail(name, "to be an array of numbers", type(value).__name__, TypeError)


def _like(out: Tensor, ref) -> ArrayLike:
    if isinstance(ref, Tensor):
        return out.to(ref.dtype if ref.is_floating_point() else torch.float64)
    return out.numpy()


def focal_calibration_map(
    probs: ArrayLike,
    gamma: float,
    alpha: Union[float, Tensor, None] = None,
    *,
    dim: Optional[int] = None,
    eps: float = 1e-12,
) -> ArrayLike:
    r"""Map the probabilities of a focal-trained model to calibrated ones.

    Focal loss is not a proper scoring rule: the minimiser :math:`p^\star` of its expected value is
    not the true probability :math:`\eta` (at :math:`\gamma=2`, :math:`\eta=0.8` gives
    :math:`p^\star=0.627`). This function inverts that minimiser exactly. For sigmoid outputs
    (``dim=None``, each element a binary :math:`P(y=1)`, model trained with
    :func:`~focalkit.sigmoid_focal_loss` on hard labels or ``soft_target="linear"``):

    .. math::
        \eta=\frac{(1-\alpha)F'(1-p)}{\alpha F'(p)+(1-\alpha)F'(1-p)},\qquad
        F'(p)=\gamma(1-p)^{\gamma-1}\log p-\frac{(1-p)^\gamma}{p}.

    For softmax outputs (``dim`` = the class dimension, model trained with
    :func:`~focalkit.softmax_focal_loss` on class indices, ``alpha`` = its per-class ``weight`` or None), the
    same stationarity condition gives :math:`\eta_k\propto 1/(w_kF'(p_k))`, normalised over classes.
    Both are evaluated in log space with :math:`F'(p)=-(1-p)^\gamma(1+\gamma\psi(p))/p`,
    :math:`\psi(p)=-p\log p/(1-p)`, which has no negative power of :math:`1-p`.

    Args:
        probs: probabilities (tensor or NumPy array); clipped to ``[eps, 1 - eps]``.
        gamma: the focusing parameter the model was trained with, >= 0 (0 returns ``probs``).
        alpha: binary: the positive-class weight in [0, 1] (None = off, same as 0.5); may be a
            tensor broadcastable to ``probs``. Softmax: per-class weights, shape (C,), or None.
        dim: None for elementwise binary probabilities; the class dimension for softmax outputs.
        eps: clipping of ``probs`` away from 0 and 1.

    Returns:
        Calibrated probabilities, same type and shape as ``probs`` (float64 for NumPy input).

    Example:
        >>> import torch
        >>> from focalkit import focal_calibration_map
        >>> focal_calibration_map(torch.tensor([0.62661, 0.5, 0.2], dtype=torch.float64), 2.0)
        tensor([0.8000, 0.5000, 0.0235], dtype=torch.float64)
    """
    gamma = _checks.gamma(gamma)
    eps = _checks.number("eps", eps, lo=0.0, hi=0.5, hi_open=True)
    p = _as_float64("probs", probs).clamp(eps, 1 - eps)
    if dim is None:
        a = alpha
        if a is not None and not isinstance(a, Tensor):
            a = _checks.alpha(a)
        log_ratio = log_inverse_slope(p, gamma) - log_inverse_slope(1 - p, gamma)
        if a is not None:
            a = torch.as_tensor(a, dtype=torch.float64)
            log_ratio = log_ratio - torch.log(a) + torch.log1p(-a)
        out = torch.sigmoid(log_ratio)
    else:
        dim = _checks.integer("dim", dim)
        s = log_inverse_slope(p, gamma)
        if alpha is not None:
            w = _as_float64("alpha", alpha)
            if w.dim() != 1 or w.numel() != p.shape[dim]:
                _checks.fail("alpha", f"to have shape ({p.shape[dim]},) with dim={dim}", f"shape {tuple(w.shape)}")
            shape = [1] * p.dim()
            shape[dim] = -1
            s = s - torch.log(w).view(shape)
        out = torch.softmax(s, dim)
    return _like(out, probs)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    r"""Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    .. math::
        \mathrm{ECE}=\sum_b\frac{|B_b|}{n}\,\big|\operatorname{acc}(B_b)-\operatorname{conf}(B_b)\big|.

    * ``probs`` of shape (N, C): top-label ECE; confidence is the largest probability, accuracy
      whether its class equals ``labels`` (N,) (integers).
    * ``probs`` of shape (N,): binary ECE of :math:`P(y=1)` against ``labels`` in {0, 1}.

    Bins are right-closed ``(lo, hi]``, the first also holds 0.

    Example:
        >>> from focalkit import expected_calibration_error
        >>> round(expected_calibration_error([0.9, 0.9, 0.2, 0.2], [1, 0, 0, 0], n_bins=10), 6)
        0.3
    """
    n_bins = _checks.integer("n_bins", n_bins)
    if n_bins < 1:
        _checks.fail("n_bins", ">= 1", n_bins)
    p = _as_float64("probs", probs)
    y = _as_float64("labels", labels)
    if p.dim() == 2:
        if y.shape != p.shape[:1]:
            _checks.fail("labels", f"to have shape ({p.shape[0]},)", f"shape {tuple(y.shape)}")
        conf, pred = p.max(1)
        hit = (pred == y.long()).to(torch.float64)
    elif p.dim() == 1:
        if y.shape != p.shape:
            _checks.fail("labels", f"to have shape {tuple(p.shape)}", f"shape {tuple(y.shape)}")
        conf, hit = p, y
    else:
        _checks.fail("probs", "to have shape (N,) or (N, C)", f"shape {tuple(p.shape)}")
    if conf.numel() == 0:
        return 0.0
    idx = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    # Per bin, |sum(conf - hit)| / n = (|B|/n) |conf(B) - acc(B)|.
    gap = torch.bincount(idx, weights=conf - hit, minlength=n_bins).abs()
    return float(gap.sum() / conf.numel())
