r"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019).

:math:`E_n=(1-\beta^n)/(1-\beta)`, :math:`w_c\propto 1/E_{n_c}`, normalised to :math:`\sum_c w_c=C`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def class_balanced(counts: Any, beta: float) -> Any:
    """Weights for float64 ``counts`` (non-negative), a torch tensor or a NumPy array (the torch-free
    adapters); classes with count 0 get weight 0."""
    xp: Any = np if isinstance(counts, np.ndarray) else __import__("torch")
    present = counts > 0
    # 1 - beta**n as -expm1(n log beta): exact for beta close to 1, where 1 - beta**n cancels.
    if beta == 0.0:
        inv_e = xp.ones_like(counts)
    else:
        inv_e = (1.0 - beta) / -xp.expm1(counts * math.log(beta))
    inv_e = xp.where(present, inv_e, xp.zeros_like(inv_e))
    n = counts.size if xp is np else counts.numel()
    return inv_e * (n / inv_e.sum())
