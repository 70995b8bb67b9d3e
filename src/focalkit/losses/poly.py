"""Poly-1 losses (Leng et al., PolyLoss, ICLR 2022): cross-entropy and focal loss plus
:math:`\\varepsilon` times the first polynomial term."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from focalkit import _checks, _reduce, backends
from focalkit._reduce import Normalizer, Reduction, reduce_autograd
from focalkit.backends import eager
from focalkit.core.sigmoid import log_one_minus_pt
from focalkit.losses.sigmoid_focal import Alpha, sigmoid_focal_loss
from focalkit.losses.softmax_focal import softmax_focal_loss


def poly1_cross_entropy(logits: Tensor, targets: Tensor, *, epsilon: float = 1.0, weight: Optional[Tensor] = None,
                        ignore_index: int = -100, label_smoothing: float = 0.0,
                        reduction: Reduction = "mean", backend: str = "auto") -> Tensor:
    r"""Poly-1 cross-entropy :math:`\mathrm{CE}+\varepsilon(1-P_t)`, :math:`P_t=\sum_kq_kp_k` the
    probability given to the (smoothed) target.

    Conventions of ``F.cross_entropy`` (N-D, ``ignore_index``, ``label_smoothing``, probability
    targets); with class weights the poly term of a row is weighted like its CE, :math:`w_{y}`, and
    ``"mean"`` divides by :math:`\sum w_y` as CE does. :math:`\varepsilon\ge-1` keeps the leading
    coefficient :math:`1+\varepsilon` non-negative; there is no universal default (the paper tunes it
    per task; 1.0 as in common ports). ``epsilon=0`` is ``F.cross_entropy``.
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    backends.eager_only("poly1_cross_entropy", backend)
    epsilon = _checks.number("epsilon", epsilon, lo=-1.0)
    reduction = _checks.reduction(reduction)
    ce = softmax_focal_loss(logits, targets, gamma=0.0, weight=weight, ignore_index=ignore_index,
                            label_smoothing=label_smoothing, reduction="none")
    z = logits if logits.dim() > 1 else logits.unsqueeze(0)
    t = targets if logits.dim() > 1 else targets.unsqueeze(0)
    p = torch.softmax(z.to(eager.compute_dtype(z.dtype)), 1)
    n_cls = z.shape[1]
    if t.is_floating_point():
        q = t.to(p.dtype) * (1 - label_smoothing) + label_smoothing / n_cls
        p_t = (q * p).sum(1)
        coef = torch.ones_like(p_t)
        count = None
    else:
        valid = t != ignore_index
        y = torch.where(valid, t, torch.zeros_like(t))
        p_t = (1 - label_smoothing) * p.gather(1, y.unsqueeze(1)).squeeze(1) + label_smoothing / n_cls
        coef = valid.to(p.dtype) if weight is None else weight.to(p.dtype)[y] * valid
        count = coef.sum()
    loss = ce.to(p.dtype).reshape(p_t.shape) + epsilon * coef * (1 - p_t)
    if logits.dim() == 1:
        loss = loss.squeeze(0)
    return reduce_autograd(loss, reduction, None, count, logits.dtype)


def poly1_focal_loss(logits: Tensor, targets: Tensor, *, epsilon: float = 1.0, alpha: Alpha = 0.25,
                     gamma: float = 2.0, reduction: Reduction = "mean", weight: Optional[Tensor] = None,
                     normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""Poly-1 sigmoid focal loss :math:`\mathrm{FL}+\varepsilon\,\alpha_t(1-p_t)^{\gamma+1}`.

    :math:`\mathrm{FL}` is :func:`sigmoid_focal_loss` (``"pt"`` soft form); the poly term is formed as
    :math:`\alpha_te^{(\gamma+1)\log(1-p_t)}`, finite everywhere. ``epsilon=0`` is the focal loss;
    :math:`\varepsilon\ge-1`.
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    backends.eager_only("poly1_focal_loss", backend)
    epsilon = _checks.number("epsilon", epsilon, lo=-1.0)
    fl = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="none", weight=weight)
    reduction = _checks.reduction(reduction)
    normalizer = _checks.normalizer(normalizer, reduction)
    x = logits.to(eager.compute_dtype(logits.dtype))
    y = targets.to(x.dtype)
    log_u = log_one_minus_pt(F.logsigmoid(x), F.logsigmoid(-x), y)
    poly = torch.exp((gamma + 1) * log_u)
    if alpha is not None:
        a = alpha.to(x.dtype) if isinstance(alpha, Tensor) else alpha
        poly = (a * y + (1 - a) * (1 - y)) * poly
    if weight is not None:
        poly = poly * weight.to(x.dtype)
    return reduce_autograd(fl.to(x.dtype) + epsilon * poly, reduction, normalizer, dtype=logits.dtype)


class Poly1CrossEntropyLoss(nn.Module):
    """See :func:`poly1_cross_entropy`. Args: ``epsilon``, ``weight`` (buffer), ``ignore_index``,
    ``label_smoothing``, ``reduction``."""

    def __init__(self, *, epsilon: float = 1.0, weight: Optional[Tensor] = None, ignore_index: int = -100,
                 label_smoothing: float = 0.0, reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("Poly1CrossEntropyLoss", backend)
        self.epsilon = _checks.number("epsilon", epsilon, lo=-1.0)
        self.ignore_index = _checks.integer("ignore_index", ignore_index)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        self.reduction = _checks.reduction(reduction)
        self.register_buffer("weight", weight)

    def forward(self, logits, targets):
        return poly1_cross_entropy(logits, targets, backend=self.backend, epsilon=self.epsilon, weight=self.weight,
                                   ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                                   reduction=self.reduction)


class Poly1FocalLoss(nn.Module):
    """See :func:`poly1_focal_loss`. Args: ``epsilon``, ``alpha``, ``gamma``, ``reduction``."""

    def __init__(self, *, epsilon: float = 1.0, alpha: Alpha = 0.25, gamma: float = 2.0,
                 reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("Poly1FocalLoss", backend)
        self.epsilon = _checks.number("epsilon", epsilon, lo=-1.0)
        self.alpha = _checks.alpha(alpha)
        self.gamma = _checks.gamma(gamma)
        self.reduction = _checks.reduction(reduction)

    def forward(self, logits, targets, weight=None, normalizer=None):
        return poly1_focal_loss(logits, targets, epsilon=self.epsilon, alpha=self.alpha, gamma=self.gamma,
                                reduction=self.reduction, weight=weight, normalizer=normalizer, backend=self.backend)
