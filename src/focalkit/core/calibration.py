r"""Inverse of the focal minimiser (the focal calibration map).

For hard-label focal loss with per-class weights :math:`w_k` and true class probabilities
:math:`\eta_k`, the expected loss :math:`\sum_k\eta_kw_kF(p_k)` with :math:`F(p)=-(1-p)^\gamma\log p`
is stationary on the simplex (binary: on [0, 1] with the two terms) where
:math:`\eta_kw_kF'(p_k)=\lambda` for every :math:`k`. Since :math:`F'(p)=-K(p)/p` with
:math:`K(p)=(1-p)^\gamma(1+\gamma\psi(p))`, :math:`\psi(p)=-p\log p/(1-p)`, this inverts to

.. math::
    \eta_k\propto\frac{p_k}{w_k\,K(p_k)},\qquad
    \log\frac{p}{K(p)}=\log p-\gamma\log(1-p)-\log(1+\gamma\psi(p)).
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_inverse_slope(p: Tensor, gamma: float) -> Tensor:
    """:math:`\\log(p/K(p))`, i.e. :math:`\\log(-1/F'(p))`, for p in (0, 1)."""
    logp = torch.log(p)
    log1mp = torch.log1p(-p)
    psi = torch.where(p < 1, -p * logp / torch.where(p < 1, 1 - p, torch.ones_like(p)), torch.ones_like(p))
    return logp - gamma * log1mp - torch.log1p(gamma * psi)
