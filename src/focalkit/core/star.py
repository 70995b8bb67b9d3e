r"""FL* (Lin et al. 2017, Appendix A): :math:`-\log\sigma(\gamma x_t+\beta)/\gamma`.

For hard labels :math:`x_t=(2y-1)x`. Soft labels use the expected hard-label form
:math:`y\,\alpha\,L(x,1)+(1-y)(1-\alpha)\,L(x,0)`, which is linear in :math:`y`.

.. math::
    L_+=\frac{\operatorname{softplus}(-\gamma x-\beta)}{\gamma},\ L_+'=-\sigma(-\gamma x-\beta),\ 
    L_+''=\gamma\,\sigma(\gamma x+\beta)\,\sigma(-\gamma x-\beta),\qquad L_-(x)=L_+(-x).

FL* is convex in :math:`x` (its second derivative is non-negative), unlike FL.
"""

from __future__ import annotations

from typing import Optional, Union

import torch.nn.functional as F
from torch import Tensor

from focalkit.core.sigmoid import SigmoidFocalTerms


def focal_star(
    x: Tensor,
    y: Tensor,
    gamma: float,
    beta: float,
    alpha: Optional[Union[float, Tensor]] = None,
    *,
    hessian: bool = False,
) -> SigmoidFocalTerms:
    """Per-element FL*, its derivative and (optionally) second derivative. Needs ``gamma > 0``."""
    w_pos = y if alpha is None else y * alpha
    w_neg = 1.0 - y if alpha is None else (1.0 - y) * (1.0 - alpha)
    zp = gamma * x + beta
    zn = beta - gamma * x
    lp_pos, ln_pos = F.logsigmoid(zp), F.logsigmoid(-zp)
    lp_neg, ln_neg = F.logsigmoid(zn), F.logsigmoid(-zn)
    loss = -(w_pos * lp_pos + w_neg * lp_neg) / gamma
    s_pos, s_neg = ln_pos.exp(), ln_neg.exp()
    grad = w_neg * s_neg - w_pos * s_pos
    hess = None
    if hessian:
        hess = gamma * (w_pos * (lp_pos + ln_pos).exp() + w_neg * (lp_neg + ln_neg).exp())
    return SigmoidFocalTerms(loss, grad, hess)
