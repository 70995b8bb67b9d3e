"""MONAI's ``monai.losses.FocalLoss`` (MONAI 1.6 conventions) on focalkit.

MONAI's conventions, reproduced:

* ``input`` is ``(B, C, *spatial)`` logits; ``target`` is ``(B, C, *)`` (one-hot, multi-label or soft)
  or, with ``to_onehot_y=True``, ``(B, 1, *)`` class labels. Computed in float32 (MONAI's
  ``input.float()``): the result is float32 for half and float64 inputs alike.
* ``include_background=False`` drops channel 0 of input and target before the loss (so the softmax is
  over the other channels, and a scalar softmax ``alpha`` is ignored with MONAI's warning).
* Sigmoid (default): soft targets in MONAI's form, ``sigmoid((1-2t)x)^gamma BCE(x, t)``
  (focalkit's ``soft_target="signed"``); a scalar ``alpha`` gives ``t alpha + (1-t)(1-alpha)``, a
  sequence gives ``alpha[c]`` where ``t == 1`` and 1 elsewhere.
* Softmax (``use_softmax=True``): ``-t_k (1-p_k)^gamma log p_k`` per class; a scalar ``alpha`` is
  ``[1-alpha, alpha, ...]``, a sequence is per class.
* ``weight``: one value, or one per channel, >= 0, multiplying the loss map.
* ``ignore_index``: a label (``(B, 1, *)`` targets) or a channel (one-hot targets) whose pixels count
  for nothing; a value outside ``[0, C)`` with one-hot targets ignores the all-zero pixels.
* ``reduction="none"``: the ``(B, C, *)`` map; ``"mean"``: its mean, or with ``ignore_index`` its sum
  over the number of valid *pixels* (not pixels times channels); ``"sum"``: per ``(B, C)`` the mean
  over the spatial dims (over the valid pixels with ``ignore_index``), summed.

Differences (``docs/compat.md``): labels outside ``[0, C)`` raise ``ValueError`` (MONAI: an index
error from ``scatter``); gradients are finite for every gamma >= 0 where MONAI's softmax path gives
NaN; float64 inputs are computed in float64 and returned as float32.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.loss import _Loss

from focalkit import _checks, _device
from focalkit.compat._common import PeerAssertionError
from focalkit.core.softmax import softmax_focal_classwise
from focalkit.losses.sigmoid_focal import sigmoid_focal_loss
from focalkit.losses.softmax_focal import softmax_focal_loss

__all__ = ["FocalLoss"]

_EPS = torch.finfo(torch.float32).eps  # MONAI's clamp of the mask's count (its mask is float32)


class FocalLoss(_Loss):
    """MONAI's ``FocalLoss(include_background=True, to_onehot_y=False, gamma=2.0, alpha=None, weight=None,
    reduction="mean", use_softmax=False, ignore_index=None)``: see the module docstring.

    Not TorchScript-scriptable (MONAI's is): ``torch.jit.script`` raises a ``TypeError`` that says what
    to use instead (``torch.compile`` or ``torch.export``; ``docs/compat.md``)."""

    def __prepare_scriptable__(self):  # called by torch.jit.script before it compiles a module
        raise TypeError("focalkit.compat.monai.FocalLoss is not TorchScript-scriptable: it runs focalkit's "
                        "kernels (autograd Functions and custom ops), which TorchScript cannot compile or save. "
                        "Use torch.compile(loss) or torch.export instead, or monai.losses.FocalLoss where "
                        "TorchScript is required.")

    def __init__(self, include_background: bool = True, to_onehot_y: bool = False, gamma: float = 2.0,
                 alpha: Union[float, Sequence[float], None] = None,
                 weight: Union[Sequence[float], float, int, Tensor, None] = None, reduction: str = "mean",
                 use_softmax: bool = False, ignore_index: Optional[int] = None) -> None:
        super().__init__(reduction=_checks.reduction(str(getattr(reduction, "value", reduction))))
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.gamma = _checks.gamma(gamma)
        self.use_softmax = use_softmax
        self.ignore_index = ignore_index
        self.alpha: Union[float, Tensor, None]
        if alpha is None:
            self.alpha = None
        elif _checks.is_number(alpha):
            self.alpha = float(alpha)
        else:
            self.alpha = torch.as_tensor(alpha)
        self.weight = weight
        self.register_buffer("class_weight", None if weight is None else torch.as_tensor(weight))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - MONAI's argument name
        _checks.float_tensor("input", input)
        if input.dim() < 2:
            _checks.fail("input", "to have shape (B, C, *spatial)", f"shape {tuple(input.shape)}")
        n = input.shape[1]
        x = input if input.dtype == torch.float64 else input.float()
        ii = self.ignore_index
        labels = None  # (B, *) class indices, when the target is labels made one-hot
        if self.to_onehot_y:
            if n == 1:
                warnings.warn("single channel prediction, `to_onehot_y=True` ignored.", stacklevel=2)
            else:
                if target.dim() < 2 or target.shape[1] != 1:
                    raise PeerAssertionError("labels should have a channel with length equal to one.")
                labels = target[:, 0].long()
                if ii is not None and not 0 <= ii < n:
                    labels = torch.where(labels == ii, torch.zeros_like(labels), labels)
                if _checks.can_read(labels) and bool(((labels < 0) | (labels >= n)).any()):
                    _checks.fail("target", f"as labels to lie in [0, {n})", labels)
        start = 0
        if not self.include_background:
            if n == 1:
                warnings.warn("single channel prediction, `include_background=False` ignored.", stacklevel=2)
            else:
                start = 1
        mask = None if ii is None else _ignore_mask(target, ii, x.dtype)
        t_shape = (labels.shape[:1] + (n,) + labels.shape[1:]) if labels is not None else target.shape
        t_shape = t_shape[:1] + (t_shape[1] - start,) + t_shape[2:] if len(t_shape) > 1 else t_shape
        xs = x[:, start:]
        if tuple(t_shape) != tuple(xs.shape):
            raise ValueError(f"ground truth has different shape ({torch.Size(t_shape)}) from input ({xs.shape})")
        cw = self._class_weight(xs)
        if self.use_softmax:
            loss = self._softmax(xs, target, labels, start, mask, cw)
        else:
            loss = self._sigmoid(xs, target, labels, start, mask, cw)
        # MONAI's loss is float32, promoted by its ignore mask (the target's dtype for a one-hot channel)
        out_dtype = torch.float32
        if ii is not None and target.shape[1] > 1 and 0 <= ii < target.shape[1] and target.is_floating_point():
            out_dtype = torch.promote_types(torch.float32, target.dtype)
        return loss.to(out_dtype)

    # ---- helpers -----------------------------------------------------------------------------------

    def _class_weight(self, xs: Tensor) -> Optional[Tensor]:
        cw = self.class_weight
        if cw is None:
            return None
        cw = _device.constant(cw, xs.device, xs.dtype)  # not moved with the module: copied once, not every step
        c = xs.shape[1]
        if cw.dim() > 0:
            if c == 1:
                _checks.fail("weight", "to be one value for single-channel outputs (per-class weights need C > 1)",
                             cw)
            if cw.numel() != c:
                _checks.fail("weight", f"to hold one value per output channel ({c})", f"{cw.numel()} values")
        if _checks.can_read(cw) and bool((cw < 0).any()):
            _checks.fail("weight", "to be >= 0", cw)
        return cw

    def _alpha_vector(self, c: int, like: Tensor) -> Tensor:
        a = _device.constant(self.alpha, like.device, like.dtype)  # type: ignore[arg-type]
        if a.dim() == 0 or a.shape[0] != c:
            _checks.fail("alpha", f"to hold one value per class ({c})", f"{a.numel()} values")
        return a

    def _spatial_norm(self, xs: Tensor, mask: Optional[Tensor]) -> tuple[Optional[Tensor], object]:
        """(per-pixel factor, normalizer) that turn the loss's plain sum into MONAI's reduction."""
        spatial = list(range(2, xs.dim()))
        if self.reduction == "mean" or not spatial:  # MONAI's "sum" over no spatial dims is its mean
            if mask is None:
                return None, float(max(1, xs.numel()))
            return None, mask.sum().clamp(min=_EPS)
        if mask is None:  # "sum": the spatial mean per (B, C), summed
            size = 1
            for d in spatial:
                size *= xs.shape[d]
            return None, float(max(1, size))
        per_b = mask.sum(dim=spatial, keepdim=True).clamp(min=_EPS)
        return 1.0 / per_b, None

    def _sigmoid(self, xs: Tensor, target: Tensor, labels: Optional[Tensor], start: int, mask: Optional[Tensor],
                 cw: Optional[Tensor]) -> Tensor:
        n = xs.shape[1] + start
        if labels is not None:
            t = F.one_hot(labels, n).movedim(-1, 1)[:, start:].to(xs.dtype)
        else:
            t = target[:, start:].to(xs.dtype)
        w = None
        if mask is not None:  # MONAI scales input and target by the mask (fractional for soft targets)
            t = t * mask
            w = mask
            if labels is None:
                xs = xs * mask
        alpha: Optional[float] = None
        if isinstance(self.alpha, Tensor):
            a = self._alpha_vector(xs.shape[1], xs).view((1, -1) + (1,) * (xs.dim() - 2))
            f = torch.where(t == 1, a, torch.ones_like(a))
            w = f if w is None else w * f
        elif self.alpha is not None:
            alpha = self.alpha
        if cw is not None:
            cwv = cw if cw.dim() == 0 else cw.view((1, -1) + (1,) * (xs.dim() - 2))
            w = cwv if w is None else w * cwv
        if self.reduction == "none":
            return sigmoid_focal_loss(xs, t, alpha=alpha, gamma=self.gamma, weight=w, soft_target="signed",
                                      reduction="none")
        factor, norm = self._spatial_norm(xs, mask)
        if factor is not None:
            w = factor if w is None else w * factor
        return sigmoid_focal_loss(xs, t, alpha=alpha, gamma=self.gamma, weight=w, soft_target="signed",
                                  reduction="sum", normalizer=norm)

    def _softmax(self, xs: Tensor, target: Tensor, labels: Optional[Tensor], start: int, mask: Optional[Tensor],
                 cw: Optional[Tensor]) -> Tensor:
        c = xs.shape[1]
        f: Optional[Tensor] = None  # the per-class factor: alpha times the class weight
        if isinstance(self.alpha, Tensor):
            f = self._alpha_vector(c, xs)
        elif self.alpha is not None:
            if start:
                warnings.warn("`include_background=False`, scalar `alpha` ignored when using softmax.", stacklevel=3)
            else:
                f = torch.full((c,), self.alpha, dtype=xs.dtype, device=xs.device)
                f[0] = 1.0 - self.alpha
        if cw is not None:
            f = (cw.expand(c) if f is None else f * cw).to(xs.dtype)
        shape = (1, c) + (1,) * (xs.dim() - 2)
        factor, norm = (None, None) if self.reduction == "none" else self._spatial_norm(xs, mask)
        red = "none" if self.reduction == "none" or factor is not None else "sum"
        if labels is not None:
            ignore = -1
            lab = labels - start  # with the background dropped its pixels have no target: ignored
            if mask is not None:
                lab = torch.where(mask[:, 0] > 0, lab, torch.full_like(lab, ignore))
            out = softmax_focal_loss(xs, lab, gamma=self.gamma, ignore_index=ignore, reduction=red, alpha=f,
                                     normalizer=norm if red == "sum" else None)
            if self.reduction == "none":
                idx = lab.clamp(min=0).unsqueeze(1)
                return torch.zeros_like(xs).scatter(1, idx, out.unsqueeze(1).to(xs.dtype))
        else:
            t = target[:, start:].to(xs.dtype)
            if mask is not None:  # MONAI scales input, target and loss by the mask (fractional for soft
                t = t * (mask * mask)  # targets); the loss is linear in the target
                xs = xs * mask
            if self.reduction == "none":
                return softmax_focal_classwise(xs, t if f is None else t * f.view(shape), self.gamma, dim=1)
            out = softmax_focal_loss(xs, t, gamma=self.gamma, reduction=red, alpha=f,
                                     normalizer=norm if red == "sum" else None)
        if factor is None:
            return out
        return (out.unsqueeze(1) * factor).sum()  # "sum" with ignore_index: per-batch valid-pixel means


def _ignore_mask(target: Tensor, ignore_index: int, dtype: torch.dtype) -> Tensor:
    """MONAI's ``create_ignore_mask``: (B, 1, *), 1 = counted."""
    if target.shape[1] == 1:
        return (target != ignore_index).to(dtype)
    if 0 <= ignore_index < target.shape[1]:
        return 1.0 - target[:, ignore_index:ignore_index + 1].to(dtype)
    return (target.sum(dim=1, keepdim=True) > 0).to(dtype)
