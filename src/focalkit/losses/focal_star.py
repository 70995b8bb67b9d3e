"""FL*, the convex alternative to focal loss from Lin et al. 2017, Appendix A."""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from focalkit import _checks, _reduce, backends
from focalkit._reduce import Normalizer, Reduction
from focalkit.backends import eager
from focalkit.losses.sigmoid_focal import Alpha, _check_elementwise_weight, _check_targets


def focal_loss_star(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: float = 1.0,
    beta: float = 0.0,
    alpha: Alpha = None,
    reduction: Reduction = "mean",
    weight: Optional[Tensor] = None,
    normalizer: Normalizer = None,
    backend: str = "auto",
) -> Tensor:
    r"""FL*: :math:`-\log\sigma(\gamma x_t+\beta)/\gamma`, with :math:`x_t=(2y-1)\,x`.

    .. math::
        \mathrm{FL}^\star(x,y)=\frac{\alpha_t}{\gamma}\operatorname{softplus}(-\gamma x_t-\beta),
        \qquad \frac{\partial\,\mathrm{FL}^\star}{\partial x}=\alpha_t\,t\,(\sigma(\gamma x_t+\beta)-1).

    Unlike FL it is convex in :math:`x`. ``gamma=1, beta=0, alpha=None`` is plain BCE; the paper
    plots :math:`(\gamma,\beta)=(2,1)` and :math:`(4,0)`. Soft targets use the expected hard-label
    form :math:`y\,\mathrm{FL}^\star(x,1)+(1-y)\,\mathrm{FL}^\star(x,0)`. fvcore's
    ``sigmoid_focal_loss_star`` is the special case ``beta=0``.

    Args:
        logits: any shape, floating dtype.
        targets: same shape, floats in [0, 1].
        gamma: > 0. Default 1.
        beta: shift, any real. Default 0.
        alpha: positive-class weight in [0, 1], per-class tensor over the last dim, or None (off).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: per-element weight, broadcastable to ``logits``.
        normalizer: positive number or 0-dim tensor; the loss is then ``sum / normalizer``.

    Shape:
        - logits, targets: :math:`(*)`; output: scalar or :math:`(*)`.

    Example:
        >>> import torch
        >>> from focalkit import focal_loss_star
        >>> focal_loss_star(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]), gamma=2.0, beta=1.0)
        tensor(0.0138)

    References:
        Lin et al. Focal Loss for Dense Object Detection, Appendix A. https://arxiv.org/abs/1708.02002
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    backends.eager_only("focal_loss_star", backend)
    _check_targets(logits, targets)
    gamma = _checks.gamma(gamma, positive=True)
    beta = _checks.number("beta", beta)
    alpha = _checks.alpha(alpha, logits.shape[-1] if logits.dim() else 1)
    reduction = _checks.reduction(reduction)
    weight = _check_elementwise_weight("weight", weight, logits)
    normalizer = _checks.normalizer(normalizer, reduction)
    return eager.focal_loss_star(logits, targets, gamma=gamma, beta=beta, alpha=alpha, weight=weight,
                                 reduction=reduction, normalizer=normalizer)


class FocalLossStar(nn.Module):
    """FL* as a module. See :func:`focal_loss_star`.

    Args:
        gamma, beta, alpha, reduction: as in :func:`focal_loss_star`, validated once here.
    """

    def __init__(self, *, gamma: float = 1.0, beta: float = 0.0, alpha: Alpha = None,
                 reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("FocalLossStar", backend)
        self.gamma = _checks.gamma(gamma, positive=True)
        self.beta = _checks.number("beta", beta)
        alpha = _checks.alpha(alpha)
        self.reduction = _checks.reduction(reduction)
        self.alpha: Alpha
        if isinstance(alpha, Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha

    def forward(self, logits: Tensor, targets: Tensor, normalizer: Normalizer = None) -> Tensor:
        return focal_loss_star(logits, targets, gamma=self.gamma, beta=self.beta, alpha=self.alpha,
                               reduction=self.reduction, normalizer=normalizer, backend=self.backend)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, beta={self.beta}, reduction={self.reduction!r}"
