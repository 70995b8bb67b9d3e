r"""Sigmoid (binary / multi-label) focal loss: value, gradient and Hessian in closed form.

Notation: :math:`p=\sigma(x)`, :math:`\ell(u)=\log\sigma(u)`, so :math:`\log p=\ell(x)` and
:math:`\log(1-p)=\ell(-x)`. Powers of probabilities are always formed as ``exp(gamma * log)``:
:math:`(1-p)^\gamma = e^{\gamma\ell(-x)}` has a finite derivative for every :math:`\gamma>0`,
whereas ``(1 - sigmoid(x)) ** gamma`` differentiates to :math:`0\cdot\infty` once the sigmoid
rounds to 1 (|x| > 16.6 in float32). No :math:`1-\sigma(x)` is ever computed.

Two generalisations to soft targets :math:`y\in[0,1]` exist; both equal the hard-label loss at
:math:`y\in\{0,1\}` (see ``docs/math.md`` for their minimisers):

* ``pt`` (torchvision / fvcore / YOLOv5): :math:`\alpha_t(y)\,(1-p_t)^\gamma\,\mathrm{BCE}(x,y)` with
  :math:`1-p_t=(1-y)p+y(1-p)`.
* ``linear`` (expected hard-label loss): :math:`y\,FL(x,1)+(1-y)\,FL(x,0)`.

A third, ``signed`` (MONAI), modulates by :math:`\sigma((1-2y)x)^\gamma`: the target's sign applied to
the logit, :math:`\alpha_t(y)\,\sigma((1-2y)x)^\gamma\,\mathrm{BCE}(x,y)`. A fourth, ``bce``
(segmentation_models_pytorch, pytorch-toolbelt), takes :math:`p_t=e^{-\mathrm{BCE}}`:
:math:`\alpha_t(y)\,(1-e^{-\mathrm{BCE}})^\gamma\,\mathrm{BCE}(x,y)`. A fifth, ``quality`` (QFL, YOLOv5's
``QFocalLoss``), modulates by the distance to the target, :math:`|y-\sigma(x)|^\gamma`.

``pos_weight`` multiplies the positive-label term, as in ``BCEWithLogitsLoss``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from focalkit.core._closed_form import ClosedForm3

Scalar = Union[float, Tensor]


class SigmoidFocalTerms(NamedTuple):
    """Per-element loss, dL/dx and (when asked) d²L/dx²."""

    loss: Tensor
    grad: Tensor
    hess: Optional[Tensor]


def _log_one_minus_pt(lp: Tensor, ln: Tensor, y: Tensor) -> Tensor:
    return torch.logaddexp(torch.log1p(-y) + lp, torch.log(y) + ln)


class _LogOneMinusPt(ClosedForm3):
    r""":func:`log_one_minus_pt` with its derivatives in closed form, for targets that need a gradient:
    with :math:`u=(1-y)p+yq`, :math:`\partial/\partial\log p=(1-y)p/u`, :math:`\partial/\partial\log q=yq/u`,
    :math:`\partial/\partial y=(q-p)/u`. Autograd through the log-add-exp would form
    :math:`\infty\cdot0` at :math:`y\in\{0,1\}` (the derivative of :math:`\log y`). The backward is
    made of differentiable ops, so second derivatives follow (autograd through the log-add-exp gives
    NaN second derivatives at hard labels)."""

    @staticmethod
    def forward(lp: Tensor, ln: Tensor, y: Tensor) -> Tensor:
        return _log_one_minus_pt(lp, ln, y)

    @staticmethod
    def partials(lp: Tensor, ln: Tensor, y: Tensor, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return (torch.exp(torch.log1p(-y) + lp - out), torch.exp(torch.log(y) + ln - out),
                torch.exp(ln - out) - torch.exp(lp - out))


def log_one_minus_pt(lp: Tensor, ln: Tensor, y: Tensor) -> Tensor:
    """log(1 - p_t) = log((1-y) p + y (1-p)) from log p = ``lp``, log(1-p) = ``ln``; log1p(-1) = log(0)
    = -inf picks one branch exactly, so for hard labels it is log sigmoid(-x_t) exactly."""
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in (lp, ln, y)):
        return _LogOneMinusPt.apply(lp, ln, y if isinstance(y, Tensor) else torch.as_tensor(y, dtype=lp.dtype))
    return _log_one_minus_pt(lp, ln, y)


def _alpha_weights(alpha: Optional[Scalar]) -> tuple[Scalar, Scalar]:
    """Weights of the positive and negative terms: (alpha, 1 - alpha), or (1, 1) when off."""
    if alpha is None:
        return 1.0, 1.0
    return alpha, 1.0 - alpha


def sigmoid_focal_pt(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[Scalar] = None,
    pos_weight: Optional[Tensor] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""The ``p_t`` form :math:`\alpha_t\,(1-p_t)^\gamma\,\mathrm{BCE}_{pw}(x,y)`.

    With :math:`u=1-p_t`, :math:`s=p(1-p)`, :math:`r=s/u\in[0,1]`, :math:`m=u^\gamma`,
    :math:`B=\mathrm{BCE}_{pw}`, :math:`c=1-y+w_+y`:

    .. math::
        L=\alpha_t m B,\quad
        L'=\alpha_t m\,[B'+\gamma(1-2y)\,r\,B],\quad
        L''=\alpha_t m\,[\gamma(1-2y)rB((\gamma-1)(1-2y)r+1-2p)+2\gamma(1-2y)rB'+c\,s]

    where :math:`B'=cp-w_+y=(1-y)p-w_+y(1-p)`, computed in the second form (the first cancels where
    :math:`y=1` and :math:`p` rounds to 1). :math:`\log u` is a log-add-exp of two log-sigmoids, exact for hard
    labels (it reduces to :math:`\ell(-x_t)`), so nothing here divides by a vanishing :math:`u`. This is
    :func:`_modulated_bce` with :math:`r=(1-2y)s/u` and :math:`r'=r(1-2p)-r^2`.
    """
    return _modulated_bce(x, y, gamma, alpha, pos_weight, hessian, _pt_factor)


def _pt_factor(x, y, lp, ln, p, q, gamma, hessian):
    """u = 1 - p_t = (1-y) p + y q, from a log-add-exp of the log-sigmoids: r = (1-2y) p q / u,
    r' = r (1 - 2p) - r^2."""
    log_u = log_one_minus_pt(lp, ln, y)
    r = (1.0 - 2.0 * y) * torch.exp(lp + ln - log_u)
    return torch.exp(gamma * log_u), r, (r * (1.0 - 2.0 * p) - r * r) if hessian else None


def _modulated_bce(x: Tensor, y: Tensor, gamma: float, alpha: Optional[Scalar], pos_weight: Optional[Tensor],
                   hessian: bool, factor) -> SigmoidFocalTerms:
    r""":math:`\alpha_t\,u^\gamma\,\mathrm{BCE}_{pw}(x,y)` for a modulating base :math:`u(x,y)` given by
    ``factor(x, y, lp, ln, p, q, gamma, hessian) -> (m, r, r')``, :math:`m=u^\gamma`,
    :math:`r=\partial\log u/\partial x` (so :math:`m'=\gamma rm`), :math:`r'=\partial r/\partial x`:

    .. math::
        L=\alpha_t mB,\quad L'=\alpha_t m\,[B'+\gamma rB],\quad
        L''=\alpha_t m\,[\gamma^2r^2B+2\gamma rB'+\gamma r'B+c\,pq],

    with :math:`B'=(1-y)p-w_+yq` and :math:`c=1-y+w_+y`, as in :func:`sigmoid_focal_pt`."""
    lp = F.logsigmoid(x)
    ln = F.logsigmoid(-x)
    p = lp.exp()
    q = ln.exp()
    a_t = None if alpha is None else y * alpha + (1.0 - y) * (1.0 - alpha)
    pw_y = y if pos_weight is None else pos_weight * y
    c = 1.0 - y + pw_y
    bce = -(pw_y * lp + (1.0 - y) * ln)
    dbce = (1.0 - y) * p - pw_y * q
    if gamma == 0.0:
        loss, grad = bce, dbce
        hess = c * p * q if hessian else None
    else:
        m, r, dr = factor(x, y, lp, ln, p, q, gamma, hessian)
        loss = m * bce
        grad = m * (dbce + gamma * r * bce)
        hess = None
        if hessian:
            hess = m * (gamma * gamma * r * r * bce + 2.0 * gamma * r * dbce + gamma * dr * bce + c * p * q)
    if a_t is not None:
        loss = a_t * loss
        grad = a_t * grad
        hess = a_t * hess if hess is not None else None
    return SigmoidFocalTerms(loss, grad, hess)


def _signed_factor(x, y, lp, ln, p, q, gamma, hessian):
    """u = sigmoid(v), v = (1-2y) x: r = (1-2y) sigmoid(-v), r' = -(1-2y)^2 sigmoid(v) sigmoid(-v)."""
    s = 1.0 - 2.0 * y
    v = s * x
    lv, lnv = F.logsigmoid(v), F.logsigmoid(-v)
    dr = -s * s * torch.exp(lv + lnv) if hessian else None
    return torch.exp(gamma * lv), s * lnv.exp(), dr


def sigmoid_focal_signed(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[Scalar] = None,
    pos_weight: Optional[Tensor] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""The ``signed`` form (MONAI's) :math:`\alpha_t\,\sigma(v)^\gamma\,\mathrm{BCE}_{pw}(x,y)`, :math:`v=(1-2y)x`:
    :func:`_modulated_bce` with :math:`r=(1-2y)\sigma(-v)`, :math:`r'=-(1-2y)^2\sigma(v)\sigma(-v)`.
    Equal to the ``pt`` form for hard labels."""
    return _modulated_bce(x, y, gamma, alpha, pos_weight, hessian, _signed_factor)


def _bce_log_u(b0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B0 > 0, B0 made safe where it is 0, log(1 - exp(-B0))) for the ``bce`` form's modulator."""
    live = b0 > 0
    bs = torch.where(live, b0, torch.ones_like(b0))  # no 0/0 in either branch's gradient
    log_u = torch.where(bs > math.log(2.0), torch.log1p(-torch.exp(-bs)), torch.log(-torch.expm1(-bs)))
    return live, bs, log_u


def bce_modulator(x: Tensor, y: Tensor, gamma: float, threshold: Optional[float] = None) -> Tensor:
    r"""The ``bce`` form's modulating factor :math:`(1-p_t)^\gamma`, :math:`p_t=e^{-\mathrm{BCE}(x,y)}`, as
    differentiable ops; with ``threshold`` :math:`t_r` the *reduced* focal factor (Sergievskiy and
    Ponamarev 2019, segmentation_models_pytorch's ``reduced_threshold``): :math:`((1-p_t)/t_r)^\gamma`
    where :math:`p_t\ge t_r`, 1 (a constant) below."""
    b0 = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    live, bs, log_u = _bce_log_u(b0)
    if threshold is None:
        return torch.where(live, torch.exp(gamma * log_u), torch.zeros_like(b0)) if gamma else torch.ones_like(b0)
    reduced = torch.where(live, torch.exp(gamma * (log_u - math.log(threshold))), torch.zeros_like(b0))
    return torch.where(-b0 < math.log(threshold), torch.ones_like(b0), reduced)  # p_t < t_r: 1


def _bce_factor(x, y, lp, ln, p, q, gamma, hessian):
    """u = 1 - exp(-B0), B0 the BCE without pos_weight: r = B0' / expm1(B0),
    r' = B0'' / expm1(B0) - B0'^2 e^B0 / expm1(B0)^2 (B0'' = pq); all 0 where B0 = 0 (u = 0)."""
    b0 = -(y * lp + (1.0 - y) * ln)
    db0 = (1.0 - y) * p - y * q
    live, bs, log_u = _bce_log_u(b0)
    em = torch.expm1(bs)
    zero = torch.zeros_like(b0)
    m = torch.where(live, torch.exp(gamma * log_u), zero)
    r = torch.where(live, db0 / em, zero)
    dr = torch.where(live, p * q / em - db0 * db0 * torch.exp(bs) / (em * em), zero) if hessian else None
    return m, r, dr


def sigmoid_focal_bce(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[Scalar] = None,
    pos_weight: Optional[Tensor] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""The ``bce`` form (segmentation_models_pytorch's) :math:`\alpha_t\,(1-e^{-B_0})^\gamma B`,
    :math:`B=\mathrm{BCE}_{pw}`, :math:`B_0` the BCE without ``pos_weight`` (so that :math:`e^{-B_0}=p_t`
    for hard labels): :func:`_modulated_bce` with :math:`r=B_0'/(e^{B_0}-1)`. Where :math:`B_0=0` (a hard
    label the logit has saturated) :math:`m=0` and loss, gradient and Hessian are 0. Equal to the
    ``pt`` form for hard labels."""
    return _modulated_bce(x, y, gamma, alpha, pos_weight, hessian, _bce_factor)


def sigmoid_focal_quality(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[Scalar] = None,
    pos_weight: Optional[Tensor] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""The ``quality`` form :math:`\alpha_t\,|y-\sigma(x)|^\gamma\,\mathrm{BCE}_{pw}(x,y)`: Quality Focal
    Loss (Li et al. 2020; YOLOv5's ``QFocalLoss``), the focal loss whose modulator is the distance to
    the soft target (``1 - p_t`` for hard labels). Value and gradient are :func:`focalkit.core.quality.
    quality_focal`'s (no Hessian)."""
    if hessian:
        raise NotImplementedError("the quality form has no closed-form Hessian here")
    from focalkit.core.quality import quality_focal

    loss, grad = quality_focal(x, y, gamma, alpha, pos_weight)
    return SigmoidFocalTerms(loss, grad, None)


def sigmoid_focal_linear(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[Scalar] = None,
    pos_weight: Optional[Tensor] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""The ``linear`` form :math:`y\,w_+\alpha F_+(x)+(1-y)(1-\alpha)F_-(x)`.

    .. math::
        F_+=-(1-p)^\gamma\log p,\quad F_+'=-(1-p)^\gamma(1-p-\gamma p\log p),\quad
        F_+''=p(1-p)^\gamma[(2\gamma+1)(1-p)+\gamma(1-p-\gamma p)\log p]

    and :math:`F_-(x)=F_+(-x)`. Linear in :math:`y`: the population risk of hard-label FL when
    :math:`P(y=1)=y`.
    """
    lp = F.logsigmoid(x)
    ln = F.logsigmoid(-x)
    p = lp.exp()
    q = ln.exp()
    a_pos, a_neg = _alpha_weights(alpha)
    w_pos = y * a_pos if pos_weight is None else y * a_pos * pos_weight
    w_neg = (1.0 - y) * a_neg

    if gamma == 0.0:
        m_pos = m_neg = 1.0
    else:
        m_pos = torch.exp(gamma * ln)  # (1-p)^gamma
        m_neg = torch.exp(gamma * lp)  # p^gamma
    loss = -(w_pos * m_pos * lp + w_neg * m_neg * ln)
    grad = w_neg * m_neg * (p - gamma * q * ln) - w_pos * m_pos * (q - gamma * p * lp)
    hess = None
    if hessian:
        h_pos = p * m_pos * ((2.0 * gamma + 1.0) * q + gamma * (q - gamma * p) * lp)
        h_neg = q * m_neg * ((2.0 * gamma + 1.0) * p + gamma * (p - gamma * q) * ln)
        hess = w_pos * h_pos + w_neg * h_neg
    return SigmoidFocalTerms(loss, grad, hess)


def sigmoid_focal_hard(
    x: Tensor,
    y: Tensor,
    gamma: float,
    alpha: Optional[float] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    r"""Hard labels :math:`y\in\{0,1\}` only: the one live term of either soft form, half the work.

    With :math:`t=2y-1`, :math:`x_t=tx`, :math:`\log q_t=\log p_t-x_t`:

    .. math::
        L=-\alpha_tq_t^\gamma\log p_t,\quad L'=-t\alpha_tq_t^\gamma(q_t-\gamma p_t\log p_t),\quad
        L''=\alpha_tp_tq_t^\gamma[(2\gamma+1)q_t+\gamma(q_t-\gamma p_t)\log p_t].
    """
    t = 2.0 * y - 1.0
    xt = t * x
    lp = F.logsigmoid(xt)
    lq = lp - xt
    p = lp.exp()
    q = lq.exp()
    m = torch.exp(gamma * lq) if gamma else torch.ones_like(q)
    a_t = None if alpha is None else y * (2.0 * alpha - 1.0) + (1.0 - alpha)
    loss = -m * lp
    gp = gamma * p * lp
    grad = -t * m * (q - gp)
    hess = p * m * ((2.0 * gamma + 1.0) * q + (q - gamma * p) * gamma * lp) if hessian else None
    if a_t is not None:
        loss, grad = a_t * loss, a_t * grad
        hess = a_t * hess if hess is not None else None
    return SigmoidFocalTerms(loss, grad, hess)
