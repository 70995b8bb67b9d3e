"""Asymmetric Loss for multi-label classification (Ridnik, Ben-Baruch et al., ICCV 2021)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from focalkit import _checks, _reduce, backends
from focalkit._reduce import Normalizer, Reduction, reduce_autograd
from focalkit.backends import eager
from focalkit.losses.sigmoid_focal import _check_elementwise_weight, _check_targets


def asymmetric_loss(logits: Tensor, targets: Tensor, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0,
                    clip: float = 0.05, detach_weight: bool = False, reduction: Reduction = "mean",
                    weight: Optional[Tensor] = None, normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""ASL: asymmetric focusing plus a probability margin on the negatives.

    .. math::
        p_m=\max(\sigma(x)-m,0),\qquad
        \mathrm{ASL}=-y\,(1-p)^{\gamma_+}\log p-(1-y)\,p_m^{\gamma_-}\log(1-p_m).

    Negatives with :math:`p\le m` give exactly 0 (loss and gradient). ``detach_weight=False`` is the
    official ``AsymmetricLoss`` (whose detach flag is commented out: the weights are differentiated);
    ``detach_weight=True`` is ``AsymmetricLossOptimized`` (weights constant): same values, different
    gradients. With :math:`\gamma_\pm=0,\ m=0` it is BCE. Formed in log space
    (:math:`(1-p)^{\gamma_+}=e^{\gamma_+\log\sigma(-x)}`), finite for every logit. The official code
    reduces with ``-loss.sum()``: use ``reduction="sum"`` to match it.

    Args:
        gamma_pos, gamma_neg: >= 0. Paper: 0 and 4. clip: margin :math:`m\in[0,1)`. Default 0.05.
        logits, targets, reduction, weight, normalizer: as :func:`sigmoid_focal_loss` (targets of the
            logits' shape, in [0, 1]).
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    backends.eager_only("asymmetric_loss", backend)
    _check_targets(logits, targets)
    gp, gn = _checks.gamma(gamma_pos, "gamma_pos"), _checks.gamma(gamma_neg, "gamma_neg")
    m = _checks.number("clip", clip, lo=0.0, hi=1.0, hi_open=True)
    reduction = _checks.reduction(reduction)
    weight = _check_elementwise_weight("weight", weight, logits)
    normalizer = _checks.normalizer(normalizer, reduction)
    x = logits.to(eager.compute_dtype(logits.dtype))
    y = targets.to(x.dtype)
    lp, ln = F.logsigmoid(x), F.logsigmoid(-x)
    w_pos = torch.exp(gp * ln) if gp else torch.ones_like(x)
    if m > 0:
        pm = (lp.exp() - m).clamp(min=0)
        live = pm > 0
        safe = torch.where(live, pm, torch.ones_like(pm))  # no 0 ** (gamma - 1) in the backward pass
        w_neg = torch.where(live, torch.exp(gn * torch.log(safe)), torch.zeros_like(pm)) if gn else torch.ones_like(x)
        log_neg = torch.log1p(-pm)
    else:
        w_neg = torch.exp(gn * lp) if gn else torch.ones_like(x)
        log_neg = ln
    if detach_weight:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    loss = -(y * w_pos * lp + (1 - y) * w_neg * log_neg)
    if weight is not None:
        loss = loss * weight.to(x.dtype)
    return reduce_autograd(loss, reduction, normalizer, dtype=logits.dtype)


class AsymmetricLoss(nn.Module):
    """See :func:`asymmetric_loss`. Args: ``gamma_pos``, ``gamma_neg``, ``clip``, ``detach_weight``, ``reduction``."""

    def __init__(self, *, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
                 detach_weight: bool = False, reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("AsymmetricLoss", backend)
        self.gamma_pos = _checks.gamma(gamma_pos, "gamma_pos")
        self.gamma_neg = _checks.gamma(gamma_neg, "gamma_neg")
        self.clip = _checks.number("clip", clip, lo=0.0, hi=1.0, hi_open=True)
        self.detach_weight = bool(detach_weight)
        self.reduction = _checks.reduction(reduction)

    def forward(self, logits, targets, weight=None, normalizer=None):
        return asymmetric_loss(logits, targets, gamma_pos=self.gamma_pos, gamma_neg=self.gamma_neg, clip=self.clip,
                               detach_weight=self.detach_weight, reduction=self.reduction, weight=weight,
                               normalizer=normalizer, backend=self.backend)
