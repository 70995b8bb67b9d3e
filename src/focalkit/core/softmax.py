r"""Softmax (multi-class) focal loss: per-position value and gradient w.r.t. all logits.

For logits :math:`z` along ``dim`` with :math:`p=\operatorname{softmax}(z)`, per-class coefficients
:math:`c_k` (class weight times target mass) and :math:`\gamma\ge0`:

.. math::
    L=\sum_k c_k(1-p_k)^\gamma(-\log p_k),\qquad
    \frac{\partial L}{\partial z_j}=p_j S-c_jK_j,\quad S=\sum_k c_kK_k,\quad
    K(p)=(1-p)^\gamma\big(1+\gamma\,\psi(p)\big),\quad \psi(p)=\frac{-p\log p}{1-p}\in[0,1].

:math:`K` is :math:`-H` of the usual derivation with :math:`(1-p)^{\gamma-1}` folded into the
bounded :math:`\psi`, so no negative power of a vanishing :math:`1-p` is ever formed. With a
single target class :math:`y` this is :math:`\partial L/\partial z=c_yK_y\,(p-e_y)`.

:math:`\log(1-p_k)` is computed exactly: for the arg-max class (the only one that can be near 1)
as :math:`\operatorname{LSE}(z_{-k})-\operatorname{LSE}(z)`, for the others as
:math:`\log(1-e^{\log p_k})` with :math:`p_k\le\tfrac12`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LN2 = math.log(2.0)



def _scatter(t: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """``t.scatter_(...)`` on a buffer this module made (no second buffer); out of place under a
    ``torch.func`` transform (``vmap`` has a batching rule for ``scatter`` only)."""
    if not torch.compiler.is_compiling() and torch._C._functorch.peek_interpreter_stack() is not None:
        return t.scatter(dim, index, src)
    return t.scatter_(dim, index, src)

def _log1m_exp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a <= 0, accurate on both sides of -log 2."""
    return torch.where(a > -_LN2, torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def _psi(logp: Tensor, log1mp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Return (log p, 1 - p, psi) with log p refined from 1 - p where p > 1/2."""
    u = log1mp.exp()
    big = logp > -_LN2
    # Where p > 1/2, log1p(-u) from the exact u beats z - LSE(z), which cancels.
    logp = torch.where(big, torch.log1p(-u), logp)
    safe_u = torch.where(u > 0, u, torch.ones_like(u))
    psi = -logp.exp() * logp / safe_u
    return logp, u, psi


def _modulator(log1mp: Tensor, gamma: float | Tensor) -> Tensor | float:
    """(1 - p)^gamma; ``gamma`` may be a tensor broadcastable to ``log1mp`` (a per-sample schedule)."""
    if not isinstance(gamma, Tensor) and gamma == 0.0:
        return 1.0
    return torch.exp(gamma * log1mp)


def softmax_focal_hard(
    z: Tensor, y: Tensor, gamma: float, coef: Tensor | float, dim: int = 1
) -> tuple[Tensor, Tensor]:
    """Loss per position and gradient for one target class per position.

    Args:
        z: logits, class dimension ``dim``.
        y: int64 class indices, ``z``'s shape without ``dim``, every entry in ``[0, C)``.
        gamma: focusing parameter >= 0.
        coef: per-position weight :math:`c_y` (class weight, 0 for ignored rows), or a float.

    Returns:
        ``(loss, grad)``: loss of ``y``'s shape, gradient of ``z``'s shape.
    """
    z = _shift(z, dim)
    yi = y.unsqueeze(dim)
    lse = torch.logsumexp(z, dim, keepdim=True)
    z_y = z.gather(dim, yi)
    # log(1 - p_y) = LSE over the other classes minus LSE over all: no 1 - p_y cancellation.
    z_rest = z.scatter(dim, yi, float("-inf"))
    log1mp = torch.logsumexp(z_rest, dim, keepdim=True) - lse
    del z_rest
    logp_y, u_y, psi_y = _psi(z_y - lse, log1mp)
    m = _modulator(log1mp, gamma)
    coef = _expand(coef, dim)
    loss = coef * m * -logp_y
    ck = coef * m * (1.0 + gamma * psi_y)
    grad = torch.exp(z - lse) * ck
    # d/dz_y = c_y K_y (p_y - 1) = -c_y K_y (1 - p_y), with 1 - p_y exact.
    grad = _scatter(grad, dim, yi, -ck * u_y)
    return loss.squeeze(dim), grad


def softmax_focal_dense(z: Tensor, coef: Tensor, gamma: float, dim: int = 1) -> tuple[Tensor, Tensor]:
    """Loss per position and gradient for a per-class coefficient tensor ``coef`` of ``z``'s shape.

    ``coef[k] = weight[k] * q[k]`` where ``q`` is the (smoothed or probability) target.
    """
    logp, m, psi = _dense_parts(z, gamma, dim)
    loss = (coef * m * -logp).sum(dim)
    ck = coef * m * (1.0 + gamma * psi)
    grad = logp.exp() * ck.sum(dim, keepdim=True) - ck
    return loss, grad


def softmax_focal_classwise(z: Tensor, coef: Tensor, gamma: float, dim: int = 1) -> Tensor:
    r"""The per-class terms :math:`c_k(1-p_k)^\gamma(-\log p_k)` of :func:`softmax_focal_dense`, unsummed
    (their sum over ``dim`` is its loss): differentiable ops, for per-class loss maps (MONAI's)."""
    logp, m, _ = _dense_parts(z, gamma, dim)
    return coef * m * -logp


def _dense_parts(z: Tensor, gamma: float, dim: int) -> tuple[Tensor, Tensor | float, Tensor]:
    """(log p, (1-p)^gamma, psi) along ``dim``, each exact (see the module docstring)."""
    z = _shift(z, dim)
    lse = torch.logsumexp(z, dim, keepdim=True)
    logp = z - lse
    log1mp = _log1m_exp(logp.clamp(max=0.0))
    # The arg-max class is the only one whose p can approach 1: take it exactly.
    idx = z.argmax(dim, keepdim=True)
    z_rest = z.scatter(dim, idx, float("-inf"))
    log1mp = _scatter(log1mp, dim, idx, torch.logsumexp(z_rest, dim, keepdim=True) - lse)
    del z_rest
    logp, _, psi = _psi(logp, log1mp)
    return logp, _modulator(log1mp, gamma), psi


def _shift(z: Tensor, dim: int) -> Tensor:
    """``z`` minus its (detached) maximum along ``dim``: the loss is shift-invariant, and in the shifted
    logits ``z - LSE(z)`` no longer rounds at the scale of the largest logit (``[1e4, 1e4 - 0.5, 0]``
    kept 4e-4 relative error in float32; ``[1e8, 1e8, 0]`` gave inf). The subtraction itself is exact
    for the logits near the maximum (Sterbenz), the only ones whose probabilities matter."""
    if z.shape[dim] == 0:
        return z
    return z - z.detach().amax(dim, keepdim=True)


def _expand(coef: Tensor | float, dim: int) -> Tensor | float:
    return coef.unsqueeze(dim) if isinstance(coef, Tensor) else coef


def softmax_focal_hard_hess_diag(z: Tensor, y: Tensor, gamma: float, coef: Tensor | float, dim: int = 1) -> Tensor:
    r"""Diagonal of the Hessian :math:`\partial^2L/\partial z_j^2` for one target class per position.

    With :math:`u=1-p_y`, :math:`r_j=(p_j-\delta_{jy})/u\in[-1,1]` and :math:`K` as above,

    .. math::
        \frac{\partial^2L}{\partial z_j^2}=c_y\Big[\gamma\,p_y\,r_j^2\,u^\gamma\big(u(2+\log p_y)
        -(\gamma-1)\,p_y\log p_y\big)+K(p_y)\,p_j(1-p_j)\Big],

    which is :math:`c_yp_j(1-p_j)` (cross-entropy's) at :math:`\gamma=0` and can be negative where
    :math:`p_y` is small (focal loss is not convex there).
    """
    z = _shift(z, dim)
    yi = y.unsqueeze(dim)
    lse = torch.logsumexp(z, dim, keepdim=True)
    z_rest = z.scatter(dim, yi, float("-inf"))
    lse_rest = torch.logsumexp(z_rest, dim, keepdim=True)
    del z_rest
    log1mp = lse_rest - lse
    logp_y, u, psi = _psi(z.gather(dim, yi) - lse, log1mp)
    p_y = logp_y.exp()
    m = _modulator(log1mp, gamma)
    k = m * (1.0 + gamma * psi)
    # r_j = p_j / (1 - p_y) = softmax over the other classes; r_y = -1.
    r = torch.exp(z - lse_rest).scatter(dim, yi, -1.0)
    p = torch.exp(z - lse)
    curv = gamma * p_y * m * (u * (2.0 + logp_y) - (gamma - 1.0) * p_y * logp_y)
    return _expand(coef, dim) * (curv * r * r + k * p * (1.0 - p))
