"""IoU-family box-regression losses (IoU, GIoU, DIoU, CIoU, EIoU, Focal-EIoU) and Focal-L1.

Boxes are ``(x1, y1, x2, y2)`` in the last dimension, shape ``(..., 4)``; the loss of each pair is
reduced over the leading dimensions. Geometry and eps follow torchvision's ``generalized_box_iou_loss``,
``distance_box_iou_loss`` and ``complete_box_iou_loss`` (equal values for valid boxes), with these
documented differences:

* the default reduction is ``"mean"`` (torch.nn convention); torchvision's is ``"none"``;
* degenerate boxes (zero or negative width or height) have area 0 and give a finite loss and
  gradient; torchvision's CIoU divides by a zero height and gives NaN;
* ``complete_box_iou_loss`` in torchvision computes its IoU and DIoU part with the default
  ``eps=1e-7`` whatever ``eps`` is passed; here ``eps`` is used throughout (same values at 1e-7);
* integer boxes are computed in float32 (as torchvision); float16 / bfloat16 in float32, returned in
  the input dtype.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
from torch import Tensor, nn

from focalkit import _checks, backends
from focalkit._reduce import Normalizer, Reduction, reduce_autograd
from focalkit.core import box as geo

_HALF = (torch.float16, torch.bfloat16)


def _prepare(pred: Tensor, target: Tensor, weight: Optional[Tensor], *, boxes: bool = True):
    for name, t in (("pred", pred), ("target", target)):
        _checks.tensor(name, t)
        if t.is_complex() or t.dtype == torch.bool:
            _checks.fail(name, "to hold real coordinates", t.dtype, TypeError)
    if boxes and (pred.dim() == 0 or pred.shape[-1] != 4):
        _checks.fail("pred", "to have shape (..., 4): (x1, y1, x2, y2) boxes", f"shape {tuple(pred.shape)}")
    if target.shape != pred.shape:
        _checks.fail("target", f"to have pred's shape {tuple(pred.shape)}", f"shape {tuple(target.shape)}")
    _checks.same_device("target", target, pred, "pred")
    out_dtype = pred.dtype if pred.is_floating_point() else torch.get_default_dtype()
    ct = torch.float32 if (out_dtype in _HALF or not pred.is_floating_point()) else pred.dtype
    if weight is not None:
        _checks.float_tensor("weight", weight)
        _checks.broadcastable("weight", weight, pred.shape[:-1] if boxes else pred.shape, "the per-box loss")
        _checks.same_device("weight", weight, pred, "pred")
        weight = weight.to(ct)
    return pred.to(ct), target.to(ct), weight, out_dtype


def _finish(loss: Tensor, weight: Optional[Tensor], reduction: str, normalizer: Normalizer, out_dtype,
            count=None) -> Tensor:
    if weight is not None:
        loss = loss * weight
    return reduce_autograd(loss, reduction, normalizer, count, out_dtype)


def _check_common(eps: float, reduction: str, normalizer: Normalizer):
    eps = _checks.number("eps", eps, lo=0.0)
    reduction = _checks.reduction(reduction)
    return eps, reduction, _checks.normalizer(normalizer, reduction)


IOU_MODES = ("linear", "square", "log")


def _iou_family(kind: str, pred: Tensor, target: Tensor, eps: float, reduction: str, weight, normalizer,
                mode: str = "linear", iou_gate: Optional[float] = None) -> Tensor:
    eps, reduction, normalizer = _check_common(eps, reduction, normalizer)
    p, t, weight, out_dtype = _prepare(pred, target, weight)
    g = geo.geometry(p, t)
    iou = geo.iou(g, eps)
    if mode == "linear":
        loss = 1 - iou
    elif mode == "square":
        loss = 1 - iou * iou
    else:  # "log": -log IoU, the IoU clamped at eps so that disjoint boxes give a finite loss (mmdet)
        loss = -torch.log(iou.clamp(min=max(eps, 1e-12)))
    if kind == "giou":
        loss = loss + geo.giou_penalty(g, eps)
    elif kind in ("diou", "ciou"):
        loss = loss + geo.diou_penalty(g, eps)
        if kind == "ciou":
            v = geo.ciou_v(g)
            with torch.no_grad():  # identical boxes with eps=0 give 0/0: the clamp makes alpha 0, not NaN
                a = v / (1 - iou + v + eps).clamp(min=1e-30)
                if iou_gate is not None:
                    a = a * (iou > iou_gate).to(a.dtype)
            loss = loss + a * v
    elif kind == "eiou":
        loss = loss + geo.eiou_penalty(g, eps)
    return _finish(loss, weight, reduction, normalizer, out_dtype)


_ARGS = """
    Args:
        pred: predicted boxes ``(..., 4)`` as ``(x1, y1, x2, y2)``; float, half or integer dtype.
        target: target boxes, same shape.
        eps: added to denominators. Default 1e-7 (torchvision's).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the boxes. ``"mean"`` of no boxes is 0.
        weight: per-box weight, broadcastable to ``pred.shape[:-1]``.
        normalizer: positive number or 0-dim tensor; the loss is then ``sum / normalizer``.

    Shape:
        pred, target: :math:`(*, 4)`; output: scalar, or :math:`(*)` for ``reduction="none"``.
"""


def iou_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean",
             weight: Optional[Tensor] = None, normalizer: Normalizer = None, mode: str = "linear",
             backend: str = "auto") -> Tensor:
    r""":math:`1-\mathrm{IoU}`, with :math:`\mathrm{IoU}=I/(U+\varepsilon)`.

    ``mode``: ``"linear"`` (default) :math:`1-\mathrm{IoU}`; ``"square"`` :math:`1-\mathrm{IoU}^2`;
    ``"log"`` :math:`-\log\max(\mathrm{IoU},\varepsilon)` (UnitBox; mmdet's ``IoULoss`` default), finite
    for disjoint boxes.

    Example:
        >>> import torch
        >>> from focalkit import iou_loss
        >>> iou_loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
        tensor(0.8571)
    """
    backends.eager_only("iou_loss", backend)
    mode = _checks.choice("mode", mode, IOU_MODES)
    return _iou_family("iou", pred, target, eps, reduction, weight, normalizer, mode)


def giou_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean",
              weight: Optional[Tensor] = None, normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""Generalised IoU loss :math:`1-\mathrm{IoU}+(|C|-U)/|C|` (Rezatofighi et al. 2019,
    arXiv:1902.09630); equals ``torchvision.ops.generalized_box_iou_loss``."""
    backends.eager_only("giou_loss", backend)
    return _iou_family("giou", pred, target, eps, reduction, weight, normalizer)


def diou_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean",
              weight: Optional[Tensor] = None, normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""Distance IoU loss :math:`1-\mathrm{IoU}+\rho^2/(c_w^2+c_h^2+\varepsilon)` (Zheng et al. 2020,
    arXiv:1911.08287); equals ``torchvision.ops.distance_box_iou_loss``."""
    backends.eager_only("diou_loss", backend)
    return _iou_family("diou", pred, target, eps, reduction, weight, normalizer)


def ciou_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean",
              weight: Optional[Tensor] = None, normalizer: Normalizer = None, iou_gate: Optional[float] = None,
              backend: str = "auto") -> Tensor:
    r"""Complete IoU loss: DIoU + :math:`\alpha v`, :math:`v=\frac4{\pi^2}(\arctan\frac{w_g}{h_g}-\arctan\frac wh)^2`,
    :math:`\alpha=v/(1-\mathrm{IoU}+v+\varepsilon)` treated as a constant (no gradient), torchvision's
    convention. ``iou_gate=0.5`` counts the aspect term only where IoU > 0.5, as mmdet 3 and Zheng et
    al.'s own code do (YOLO uses ``v/(v-IoU+1+eps)``)."""
    backends.eager_only("ciou_loss", backend)
    if iou_gate is not None:
        iou_gate = _checks.number("iou_gate", iou_gate, lo=0.0, hi=1.0)
    return _iou_family("ciou", pred, target, eps, reduction, weight, normalizer, iou_gate=iou_gate)


def eiou_loss(pred: Tensor, target: Tensor, *, eps: float = 1e-7, reduction: Reduction = "mean",
              weight: Optional[Tensor] = None, normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""Efficient IoU loss (Zhang et al., arXiv:2101.08158):

    .. math::
        1-\mathrm{IoU}+\frac{\rho^2}{c_w^2+c_h^2}+\frac{(w-w_g)^2}{c_w^2}+\frac{(h-h_g)^2}{c_h^2}.

    Not mmdet's ``EIoULoss``, which is the different *Extended*-IoU loss of Peng and Yu.
    """
    backends.eager_only("eiou_loss", backend)
    return _iou_family("eiou", pred, target, eps, reduction, weight, normalizer)


for _f in (iou_loss, giou_loss, diou_loss, ciou_loss, eiou_loss):
    _f.__doc__ += _ARGS


def focal_eiou_loss(pred: Tensor, target: Tensor, *, gamma: float = 0.5, eps: float = 1e-7,
                    normalize: Literal["mean", "weight_sum"] = "mean", reduction: Reduction = "mean",
                    weight: Optional[Tensor] = None, backend: str = "auto") -> Tensor:
    r"""Focal-EIoU :math:`\mathrm{IoU}^\gamma\,\mathcal L_{EIoU}` with the weight **detached**.

    The weight grows with IoU: it focuses on high-quality boxes. Differentiating through it would
    make gradient descent *lower* the IoU of poor boxes toward the degenerate minimum at IoU = 0
    whenever :math:`\mathrm{IoU}<\gamma(1+R)/(1+\gamma)` (``docs/math.md``), so it is a constant,
    as in the YOLO implementations. ``reduction="mean"`` divides by the number of boxes
    (``normalize="mean"``, the YOLO convention) or by :math:`\sum\mathrm{IoU}^\gamma`
    (``normalize="weight_sum"``, the paper's).

    Args:
        gamma: >= 0. Default 0.5.
        normalize: ``"mean"`` or ``"weight_sum"``, see above.
        pred, target, eps, reduction, weight: as :func:`eiou_loss`.
    """
    backends.eager_only("focal_eiou_loss", backend)
    gamma = _checks.gamma(gamma)
    normalize = _checks.choice("normalize", normalize, ("mean", "weight_sum"))
    eps, reduction, _ = _check_common(eps, reduction, None)
    p, t, weight, out_dtype = _prepare(pred, target, weight)
    g = geo.geometry(p, t)
    iou = geo.iou(g, eps)
    w_iou = iou.detach() ** gamma if gamma else torch.ones_like(iou)
    loss = w_iou * (1 - iou + geo.eiou_penalty(g, eps))
    count = None
    if reduction == "mean" and normalize == "weight_sum":
        count = (w_iou if weight is None else w_iou * weight).sum()
    return _finish(loss, weight, reduction, None, out_dtype, count)


def focal_l1_loss(pred: Tensor, target: Tensor, *, alpha: float = 1.0, beta: float = 1 / math.e,
                  reduction: Reduction = "mean", weight: Optional[Tensor] = None,
                  normalizer: Normalizer = None, backend: str = "auto") -> Tensor:
    r"""Focal-L1 (Zhang et al., arXiv:2101.08158, §3.2) of the elementwise error :math:`x=|p-t|`:

    .. math::
        \mathcal L_f(x)=\begin{cases}-\frac{\alpha x^2(2\ln(\beta x)-1)}{4},&x\le1\\
        -\alpha\ln(\beta)\,x+\frac{2\alpha\ln\beta+\alpha}{4},&x>1\end{cases}

    Its gradient :math:`-\alpha x\ln(\beta x)` rises for small errors, peaks at :math:`x=1/(e\beta)`
    with value :math:`\alpha/(e\beta)`, and is :math:`-\alpha\ln\beta` for outliers. The defaults
    :math:`\beta=1/e,\ \alpha=1` (an L1 loss with a smooth head, :math:`x-\tfrac14` beyond 1) satisfy
    both readings of the paper's normalisation (:math:`\alpha=e\beta`, or tail gradient 1).
    Requires :math:`\beta\in[1/e,1]`.

    Args:
        pred, target: any shape (e.g. box deltas), same shape.
        alpha: > 0. beta: in [1/e, 1].
        reduction, weight (broadcastable to ``pred``), normalizer: as elsewhere.
    """
    backends.eager_only("focal_l1_loss", backend)
    alpha = _checks.number("alpha", alpha, lo=0.0, lo_open=True)
    beta = _checks.number("beta", beta, lo=1 / math.e - 1e-12, hi=1.0)
    reduction = _checks.reduction(reduction)
    normalizer = _checks.normalizer(normalizer, reduction)
    p, t, weight, out_dtype = _prepare(pred, target, weight, boxes=False)
    loss = geo.focal_l1((p - t).abs(), alpha, beta)
    return _finish(loss, weight, reduction, normalizer, out_dtype)


class _BoxLoss(nn.Module):
    _fn = staticmethod(iou_loss)

    def __init__(self, *, eps: float = 1e-7, reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only(type(self).__name__, backend)
        self.eps, self.reduction, _ = _check_common(eps, reduction, None)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                normalizer: Normalizer = None) -> Tensor:
        return type(self)._fn(pred, target, backend=self.backend, eps=self.eps, reduction=self.reduction, weight=weight,
                              normalizer=normalizer)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"


class IoULoss(_BoxLoss):
    """See :func:`iou_loss`. Args: ``eps``, ``reduction``, ``mode``; ``forward(pred, target, weight=None,
    normalizer=None)``."""
    _fn = staticmethod(iou_loss)

    def __init__(self, *, eps: float = 1e-7, reduction: Reduction = "mean", mode: str = "linear",
                 backend: str = "auto") -> None:
        super().__init__(eps=eps, reduction=reduction, backend=backend)
        self.mode = _checks.choice("mode", mode, IOU_MODES)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                normalizer: Normalizer = None) -> Tensor:
        return iou_loss(pred, target, backend=self.backend, eps=self.eps, reduction=self.reduction, weight=weight,
                        normalizer=normalizer, mode=self.mode)


class GIoULoss(_BoxLoss):
    """See :func:`giou_loss`. Args: ``eps``, ``reduction``; ``forward(pred, target, weight=None, normalizer=None)``."""
    _fn = staticmethod(giou_loss)


class DIoULoss(_BoxLoss):
    """See :func:`diou_loss`. Args: ``eps``, ``reduction``; ``forward(pred, target, weight=None, normalizer=None)``."""
    _fn = staticmethod(diou_loss)


class CIoULoss(_BoxLoss):
    """See :func:`ciou_loss`. Args: ``eps``, ``reduction``; ``forward(pred, target, weight=None, normalizer=None)``."""
    _fn = staticmethod(ciou_loss)


class EIoULoss(_BoxLoss):
    """See :func:`eiou_loss`. Args: ``eps``, ``reduction``; ``forward(pred, target, weight=None, normalizer=None)``."""
    _fn = staticmethod(eiou_loss)


class FocalEIoULoss(nn.Module):
    """See :func:`focal_eiou_loss`. Args: ``gamma``, ``eps``, ``normalize``, ``reduction``."""

    def __init__(self, *, gamma: float = 0.5, eps: float = 1e-7, normalize: str = "mean",
                 reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("FocalEIoULoss", backend)
        self.gamma = _checks.gamma(gamma)
        self.normalize = _checks.choice("normalize", normalize, ("mean", "weight_sum"))
        self.eps, self.reduction, _ = _check_common(eps, reduction, None)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None) -> Tensor:
        return focal_eiou_loss(pred, target, gamma=self.gamma, eps=self.eps, normalize=self.normalize,
                               reduction=self.reduction, weight=weight, backend=self.backend)


class FocalL1Loss(nn.Module):
    """See :func:`focal_l1_loss`. Args: ``alpha``, ``beta``, ``reduction``."""

    def __init__(self, *, alpha: float = 1.0, beta: float = 1 / math.e, reduction: Reduction = "mean",
                 backend: str = "auto") -> None:
        super().__init__()
        self.backend = backends.eager_only("FocalL1Loss", backend)
        self.alpha = _checks.number("alpha", alpha, lo=0.0, lo_open=True)
        self.beta = _checks.number("beta", beta, lo=1 / math.e - 1e-12, hi=1.0)
        self.reduction = _checks.reduction(reduction)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                normalizer: Normalizer = None) -> Tensor:
        return focal_l1_loss(pred, target, alpha=self.alpha, beta=self.beta, reduction=self.reduction,
                             weight=weight, normalizer=normalizer, backend=self.backend)
