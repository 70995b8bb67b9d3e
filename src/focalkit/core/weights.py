r"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019).

:math:`E_n=(1-\beta^n)/(1-\beta)`, :math:`w_c\propto 1/E_{n_c}`, normalised to :math:`\sum_c w_c=C`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_balanced(counts: Tensor, beta: float) -> Tensor:
    """Weights for float64 ``counts`` (non-negative); classes with count 0 get weight 0."""
    present = counts > 0
    # 1 - beta**n as -expm1(n log beta): exact for beta close to 1, where 1 - beta**n cancels.
    if beta == 0.0:
        inv_e = torch.ones_like(counts)
    else:
        inv_e = (1.0 - beta) / -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=counts.dtype)))
    inv_e = torch.where(present, inv_e, torch.zeros_like(inv_e))
    return inv_e * (counts.numel() / inv_e.sum())
