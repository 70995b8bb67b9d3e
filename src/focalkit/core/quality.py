r"""Quality focal modulation :math:`\alpha_t\,|y-\sigma(x)|^\beta\,\mathrm{BCE}_{pw}(x,y)`.

This is YOLOv5's ``QFocalLoss`` (and, with ``alpha`` off and ``beta=2``, GFL's QFL). Its minimiser
over :math:`\sigma` is exactly :math:`y`. With :math:`d=\sigma-y`:

.. math::
    L'=\alpha_t\big[|d|^\beta B'+\beta\operatorname{sgn}(d)|d|^{\beta-1}\sigma(1-\sigma)B\big].

:math:`|d|^{\beta-1}\sigma(1-\sigma)` is formed in log space (for hard labels :math:`|d|` is
:math:`\sigma(\mp x)`, taken from a log-sigmoid). For :math:`\beta<1` the derivative is infinite at
:math:`\sigma=y` exactly; there the sub-gradient 0 is returned.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit.core._closed_form import ClosedForm3


def _log_abs_diff(lp: Tensor, ln: Tensor, y: Tensor, p: Tensor) -> Tensor:
    """log|sigma(x) - y|: for hard labels from a log-sigmoid (no cancellation), else log|p - y|."""
    return torch.where(y == 1, ln, torch.where(y == 0, lp, torch.log((p - y).abs())))


class _LogAbsDiff(ClosedForm3):
    r""":func:`_log_abs_diff` with closed-form derivatives, for targets that need a gradient: the
    branches for hard labels hide the dependence on ``y`` (:math:`\partial/\partial y\log|p-y|=1/(y-p)`,
    i.e. :math:`-1/p` at 0 and :math:`1/(1-p)` at 1), which autograd through ``where`` would drop."""

    @staticmethod
    def forward(lp: Tensor, ln: Tensor, y: Tensor) -> Tensor:
        return _log_abs_diff(lp, ln, y, lp.exp())

    @staticmethod
    def partials(lp: Tensor, ln: Tensor, y: Tensor, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p = lp.exp()
        d = p - y
        safe = torch.where(d == 0, torch.ones_like(d), d)
        one, zero = torch.ones_like(d), torch.zeros_like(d)
        soft_lp = torch.where(d == 0, zero, p / safe)
        soft_y = torch.where(d == 0, zero, -1.0 / safe)
        d_lp = torch.where(y == 0, one, torch.where(y == 1, zero, soft_lp))
        d_ln = torch.where(y == 1, one, zero)
        d_y = torch.where(y == 0, -torch.exp(-lp), torch.where(y == 1, torch.exp(-ln), soft_y))
        return d_lp, d_ln, d_y


def log_abs_diff(lp: Tensor, ln: Tensor, y: Tensor, p: Tensor) -> Tensor:
    if torch.is_grad_enabled() and isinstance(y, Tensor) and y.requires_grad:
        return _LogAbsDiff.apply(lp, ln, y)
    return _log_abs_diff(lp, ln, y, p)


def quality_focal(
    x: Tensor,
    y: Tensor,
    beta: float,
    alpha: Optional[Union[float, Tensor]] = None,
    pos_weight: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Per-element loss and derivative w.r.t. ``x``."""
    lp = F.logsigmoid(x)
    ln = F.logsigmoid(-x)
    p = lp.exp()
    q = ln.exp()
    pw_y = y if pos_weight is None else pos_weight * y
    bce = -(pw_y * lp + (1.0 - y) * ln)
    dbce = (1.0 - y) * p - pw_y * q  # = (1 - y + w y) p - w y, without the p - 1 cancellation
    if beta == 0.0:
        loss, grad = bce, dbce
    else:
        d = p - y
        log_ad = log_abs_diff(lp, ln, y, p)
        m = torch.exp(beta * log_ad)
        slope = torch.exp((beta - 1.0) * log_ad + lp + ln)
        slope = torch.where(d == 0, torch.zeros_like(slope), torch.sign(d) * slope)
        loss = m * bce
        grad = m * dbce + beta * slope * bce
    if alpha is not None:
        a_t = y * alpha + (1.0 - y) * (1.0 - alpha)
        loss, grad = a_t * loss, a_t * grad
    return loss, grad


def varifocal(
    x: Tensor,
    q: Tensor,
    alpha: float,
    gamma: float,
    iou_weighted: bool = True,
    labels: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    r"""Varifocal Loss (Zhang et al. 2021) per element, and its derivative w.r.t. ``x``:

    .. math::
        L=w\,B,\quad w=\ell\,w_+ + (1-\ell)\,\alpha e^{\gamma\log\sigma(x)},\quad
        L'=w\,B'+(1-\ell)\,\gamma\,\sigma(-x)\,\alpha e^{\gamma\log\sigma(x)}\,B,

    :math:`B=\mathrm{BCE}(x,q)`, :math:`B'=(1-q)\sigma(x)-q\,\sigma(-x)`, :math:`w_+=q` (``iou_weighted``)
    or 1, :math:`\ell` the ``labels`` (default :math:`[q>0]`, mmdet's). Written in differentiable ops:
    it is the reference (targets and labels get their gradients through it) and the closed form the
    kernels compute."""
    lp = F.logsigmoid(x)
    ln = F.logsigmoid(-x)
    p = lp.exp()
    qn = ln.exp()
    bce = -(q * lp + (1.0 - q) * ln)
    dbce = (1.0 - q) * p - q * qn  # no p - 1 cancellation
    w_neg = alpha * torch.exp(gamma * lp) if gamma else torch.full_like(x, alpha)
    w_pos = q if iou_weighted else torch.ones_like(q)
    if labels is None:
        neg = (q <= 0) | (q != q)  # mmdet's q > 0 test; a NaN target stays NaN through bce
        w = torch.where(neg, w_neg, w_pos)
        d_neg = neg.to(x.dtype)
    else:
        lab = labels.to(x.dtype)
        w = lab * w_pos + (1.0 - lab) * w_neg
        d_neg = 1.0 - lab
    loss = w * bce
    grad = w * dbce + (d_neg * gamma) * (qn * w_neg) * bce
    return loss, grad


def distribution_focal(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Distribution Focal Loss per row of ``z`` (N, n+1) for distances ``y`` (N,) in bin units, and its
    gradient (N, n+1): softmax minus the two-hot target. ``y`` is clamped into [0, n]; a NaN target
    gives a NaN row (its loss and gradient), never an index."""
    n = z.shape[1] - 1
    nan = y != y
    yc = torch.where(nan, torch.zeros_like(y), y).clamp(0, n)
    left = yc.detach().floor().clamp(max=n - 1)
    w_left = torch.where(nan, y, left + 1 - yc)  # NaN where the target is NaN
    w_right = yc - left
    logp = torch.log_softmax(z, 1)
    idx = left.long().unsqueeze(1)
    loss = -(w_left * logp.gather(1, idx).squeeze(1) + w_right * logp.gather(1, idx + 1).squeeze(1))
    two_hot = torch.zeros_like(z).scatter(1, idx, w_left.unsqueeze(1)).scatter(1, idx + 1, w_right.unsqueeze(1))
    grad = logp.exp() - two_hot
    grad = torch.where(nan.unsqueeze(1), torch.full_like(grad, float("nan")), grad)
    return loss, grad
