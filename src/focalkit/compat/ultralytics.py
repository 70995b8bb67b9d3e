"""ultralytics' ``utils.loss`` focal losses (ultralytics 8.4 conventions) on focalkit: ``FocalLoss``,
``VarifocalLoss``, ``DFLoss``.

ultralytics' conventions, reproduced:

* ``FocalLoss(gamma=1.5, alpha=0.25)(pred, label)``: the ``p_t`` form for soft labels, ``alpha`` a number or
  a per-class sequence along the last dimension, off when no entry is > 0; the result is
  ``loss.mean(1).sum()``, the sum over the shape[1] dimension's mean (the sum divided by ``pred.shape[1]``).
* ``VarifocalLoss(gamma=2.0, alpha=0.75)(pred_score, gt_score, label)``: weight
  ``alpha sigmoid(x)^gamma (1 - label) + gt_score label`` (differentiated, as ultralytics does) times
  ``BCE(x, gt_score)``, computed in float32 at least, then ``.mean(1).sum()``.
* ``DFLoss(reg_max=16)(pred_dist, target)``: ``pred_dist (M * k, reg_max)`` logits, ``target (M, k)`` distances
  clamped to ``[0, reg_max - 1.01]``; the ``(M, 1)`` mean over the ``k`` sides.

Differences (``docs/compat.md``): ``DFLoss`` does not clamp the caller's ``target`` in place; gradients
are finite for every gamma >= 0 (ultralytics' ``(1 - p_t) ** gamma`` gives NaN for gamma < 1 once the
sigmoid saturates); bad shapes raise errors that are ``ValueError`` and the peer's type.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from focalkit import _checks, _device
from focalkit.compat._common import PeerIndexError
from focalkit.losses.quality import distribution_focal_loss, varifocal_loss
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss

__all__ = ["DFLoss", "FocalLoss", "VarifocalLoss"]


def _dim1(name: str, t: Tensor) -> int:
    if t.dim() < 2:
        raise PeerIndexError(f"Expected `{name}` to have a dimension 1 (.mean(1)), got shape {tuple(t.shape)}.")
    return t.shape[1]


class FocalLoss(nn.Module):
    """ultralytics' ``FocalLoss(gamma=1.5, alpha=0.25)``; ``forward(pred, label)``."""

    def __init__(self, gamma: float = 1.5, alpha=0.25) -> None:
        super().__init__()
        self.gamma = _checks.gamma(gamma)
        self.alpha = torch.tensor(alpha)

    def forward(self, pred: Tensor, label: Tensor) -> Tensor:
        _checks.float_tensor("pred", pred)
        n = _dim1("pred", pred)
        alpha = None
        if bool((self.alpha > 0).any()):
            alpha = float(self.alpha) if self.alpha.dim() == 0 else _device.constant(self.alpha, pred.device, pred.dtype)
        target = label if label.is_floating_point() else label.to(pred.dtype)
        return sigmoid_focal_loss(pred, target, alpha=alpha, gamma=self.gamma, soft_target="pt", reduction="sum",
                                  normalizer=float(n))


class VarifocalLoss(nn.Module):
    """ultralytics' ``VarifocalLoss(gamma=2.0, alpha=0.75)``; ``forward(pred_score, gt_score, label)``."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.75) -> None:
        super().__init__()
        self.gamma = _checks.gamma(gamma)
        self.alpha = _checks.number("alpha", alpha, lo=0.0)

    def forward(self, pred_score: Tensor, gt_score: Tensor, label: Tensor) -> Tensor:
        _checks.float_tensor("pred_score", pred_score)
        n = _dim1("pred_score", pred_score)
        weight_dtype = torch.result_type(pred_score, gt_score)
        out_dtype = torch.promote_types(torch.float32, torch.promote_types(weight_dtype, label.dtype)
                                        if label.is_floating_point() else weight_dtype)
        x = pred_score if pred_score.dtype in (torch.float32, torch.float64) else pred_score.float()
        loss = varifocal_loss(x, gt_score.to(x.dtype), alpha=self.alpha, gamma=self.gamma, labels=label,
                              reduction="sum", normalizer=float(n))
        return loss.to(out_dtype)


class DFLoss(nn.Module):
    """ultralytics' ``DFLoss(reg_max=16)``; ``forward(pred_dist, target)`` -> ``(M, 1)``."""

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max

    def forward(self, pred_dist: Tensor, target: Tensor) -> Tensor:
        _checks.float_tensor("pred_dist", pred_dist)
        _checks.float_tensor("target", target)
        if pred_dist.dim() != 2 or pred_dist.shape[0] != target.numel():
            _checks.fail("pred_dist", f"to have shape ({target.numel()}, reg_max) for target {tuple(target.shape)}",
                         f"shape {tuple(pred_dist.shape)}")
        t = target.clamp(0, self.reg_max - 1 - 0.01)  # ultralytics clamps the caller's tensor in place
        loss = distribution_focal_loss(pred_dist, t.reshape(-1).to(pred_dist.dtype), reduction="none")
        return loss.view(t.shape).to(torch.result_type(pred_dist, target)).mean(-1, keepdim=True)
