"""Generalized Focal Loss (QFL, DFL; Li et al. 2020) and Varifocal Loss (Zhang et al. 2021)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn

from focalkit import _checks, _reduce, backends
from focalkit._reduce import Normalizer, Reduction
from focalkit.backends import eager, native, triton
from focalkit.losses.sigmoid_focal import _check_elementwise_weight, sigmoid_focal_loss

QualityTargets = Union[Tensor, Tuple[Tensor, Tensor]]


def _dense_quality(logits: Tensor, targets: QualityTargets) -> Tensor:
    """Soft targets (N, C): given, or built from (labels (N,), scores (N,)) with background = C."""
    _checks.float_tensor("logits", logits)
    if isinstance(targets, tuple):
        if len(targets) != 2:
            _checks.fail("targets", "to be a tensor or a (labels, scores) pair", f"a tuple of {len(targets)}", TypeError)
        labels, scores = targets
        _checks.tensor("targets[0]", labels)
        _checks.float_tensor("targets[1]", scores)
        if logits.dim() != 2 or labels.shape != logits.shape[:1] or scores.shape != labels.shape:
            _checks.fail("targets", f"as (labels, scores) to have shapes ({logits.shape[0]},) for logits (N, C)",
                         f"shapes {tuple(labels.shape)}, {tuple(scores.shape)}")
        n_cls = logits.shape[1]
        if _checks.can_read(labels) and bool(((labels < 0) | (labels > n_cls)).any()):
            _checks.fail("targets[0]", f"to hold labels in [0, {n_cls}] ({n_cls} = background)", labels)
        pos = labels < n_cls
        q = torch.zeros_like(logits, dtype=scores.dtype)
        idx = torch.where(pos, labels, torch.zeros_like(labels)).long().unsqueeze(1)
        return q.scatter_(1, idx, (scores * pos).unsqueeze(1))
    _checks.float_tensor("targets", targets)
    if targets.shape != logits.shape:
        _checks.fail("targets", f"to have the logits' shape {tuple(logits.shape)}", f"shape {tuple(targets.shape)}")
    return targets


def _kernel_backend(op: str, backend: str, logits: Tensor, native_reason: Optional[str],
                    triton_reason: Optional[str]) -> object:
    """The backend module that runs ``op``. Traced calls (``torch.compile``, ``make_fx``, export) run the
    eager closed form, which traces into plain ops (these kernels are not registered ops)."""
    name = backends.select(op, backend, logits, native_reason, triton_reason)
    if name != "eager" and _checks.tracing(logits):
        name = "eager"
    return {"eager": eager, "native": native, "triton": triton}[name]


def probabilities_to_logits(probs: Tensor, activated: bool) -> Tensor:
    """``activated=True``: probabilities in [0, 1] as logits, ``logit(p)`` of ``p`` clamped to the open
    interval (the smallest normal number, the largest number below 1), so that p = 0 or 1 stays finite
    (mmdet's ``binary_cross_entropy`` clamps ``log p`` at -100); the gradient flows to ``p`` through
    the logit, 0 where clamped."""
    _checks.float_tensor("logits", probs)
    if not activated:
        return probs
    if _checks.can_read(probs) and bool(((probs < 0) | (probs > 1)).any()):
        _checks.fail("logits", "with activated=True to be probabilities in [0, 1]", probs)
    fi = torch.finfo(probs.dtype)
    return torch.logit(probs.clamp(fi.tiny, 1.0 - fi.eps / 2))


def quality_focal_loss(logits: Tensor, targets: QualityTargets, *, beta: float = 2.0, reduction: Reduction = "mean",
                       weight: Optional[Tensor] = None, normalizer: Normalizer = None, activated: bool = False,
                       backend: str = "auto") -> Tensor:
    r"""Quality Focal Loss :math:`|y-\sigma(x)|^\beta\,\mathrm{BCE}(x,y)` (Li et al., arXiv:2006.04388).

    ``targets`` are soft quality scores (e.g. IoU) of the logits' shape, or a pair ``(labels, scores)``
    with ``labels`` in ``[0, C]`` where ``C`` is background (mmdet's convention; the positive's class
    gets its score, every other entry 0). The minimiser over :math:`\sigma` is exactly :math:`y`. At
    ``beta=0`` it is BCE-with-logits. It is :func:`sigmoid_focal_loss` with ``soft_target="quality"``,
    ``alpha=None``, ``gamma=beta``, so it runs on the native and Triton kernels. Closed-form gradient, finite everywhere (sub-gradient 0 at
    :math:`\sigma=y` for :math:`\beta<1`).

    ``"mean"`` averages over all N x C entries, like :func:`sigmoid_focal_loss`; mmdet sums over
    classes and divides by the number of positives: use ``normalizer=num_pos``. ``activated=True``
    takes probabilities instead of logits (mmdet's ``activated``): the same loss at
    :math:`x=\operatorname{logit}(p)`, with :math:`p` clamped inside (0, 1).

    Example:
        >>> import torch
        >>> from focalkit import quality_focal_loss
        >>> logits = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
        >>> quality_focal_loss(logits, (torch.tensor([0, 2]), torch.tensor([0.8, 0.0])), reduction="sum")
        tensor(0.5549)
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    logits = probabilities_to_logits(logits, activated)
    q = _dense_quality(logits, targets)
    beta = _checks.gamma(beta, "beta")
    # QFL is the sigmoid focal loss's "quality" soft-target form: the same kernels, every backend
    return sigmoid_focal_loss(logits, q, alpha=None, gamma=beta, reduction=reduction, weight=weight,
                              normalizer=normalizer, soft_target="quality", backend=backend)


def varifocal_loss(logits: Tensor, targets: Tensor, *, alpha: float = 0.75, gamma: float = 2.0,
                   iou_weighted: bool = True, reduction: Reduction = "mean", weight: Optional[Tensor] = None,
                   normalizer: Normalizer = None, labels: Optional[Tensor] = None, activated: bool = False,
                   backend: str = "auto") -> Tensor:
    r"""Varifocal Loss (Zhang et al., arXiv:2008.13367), mmdet's definition:

    .. math::
        \mathrm{VFL}(x,q)=\begin{cases}q\,\mathrm{BCE}(x,q),&q>0\\
        \alpha\,\sigma(x)^\gamma\,\mathrm{BCE}(x,0),&q=0\end{cases}

    Positives are not down-weighted (weight :math:`q`, or 1 with ``iou_weighted=False``); the
    negatives' weight :math:`\alpha\sigma^\gamma` is differentiated, as in mmdet, and formed as
    :math:`\alpha e^{\gamma\log\sigma(x)}`, finite for every logit and :math:`\gamma\ge0`.

    Args:
        logits, targets: same shape; ``targets`` are IoU-aware scores in [0, 1].
        alpha: weight of the negatives, >= 0. Default 0.75. gamma: >= 0. Default 2.
        labels: which entries are positives (1) and negatives (0), of the logits' shape (bool or
            float, a fraction mixing the two weights linearly): ultralytics' ``label``. Default
            ``targets > 0`` (mmdet).
        activated: ``logits`` are probabilities in [0, 1] (see :func:`quality_focal_loss`).
        backend: ``"auto"`` runs the C kernel on the CPU and the Triton kernels on CUDA (loss and
            gradient from the closed form ``focalkit.core.varifocal``); ``"eager"`` the formula
            in tensor ops. Targets, labels and weights that require grad get their gradients.
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    _checks.choice("backend", backend, backends.BACKENDS)
    logits = probabilities_to_logits(logits, activated)
    _checks.float_tensor("targets", targets)
    _checks.same_device("targets", targets, logits)
    if labels is not None:
        _checks.tensor("labels", labels)
        if labels.shape != logits.shape:
            _checks.fail("labels", f"to have the logits' shape {tuple(logits.shape)}", f"shape {tuple(labels.shape)}")
        if labels.is_complex():
            _checks.fail("labels", "to be real (bool, 0/1 or a float fraction)", labels.dtype, TypeError)
        _checks.same_device("labels", labels, logits)
    if targets.shape != logits.shape:
        _checks.fail("targets", f"to have the logits' shape {tuple(logits.shape)}", f"shape {tuple(targets.shape)}")
    alpha = _checks.number("alpha", alpha, lo=0.0)
    gamma = _checks.gamma(gamma)
    reduction = _checks.reduction(reduction)
    weight = _check_elementwise_weight("weight", weight, logits)
    normalizer = _checks.normalizer(normalizer, reduction)
    mod = _kernel_backend("varifocal_loss", backend, logits, native.unsupported(logits, None),
                          triton.unsupported(logits))
    return mod.varifocal_loss(logits, targets, alpha=alpha, gamma=gamma, iou_weighted=bool(iou_weighted),
                              weight=weight, labels=labels, reduction=reduction, normalizer=normalizer)


def distribution_focal_loss(logits: Tensor, targets: Tensor, *, reduction: Reduction = "mean",
                            weight: Optional[Tensor] = None, normalizer: Normalizer = None,
                            backend: str = "auto") -> Tensor:
    r"""Distribution Focal Loss (Li et al. 2020) over bins :math:`0..n` (logits of shape ``(N, n+1)``):

    .. math::
        \mathrm{DFL}=-\big[(y_{i+1}-y)\log S_{y_i}+(y-y_i)\log S_{y_{i+1}}\big],\quad
        y_i=\lfloor y\rfloor,\ S=\operatorname{softmax}(\text{logits}).

    **Targets are clamped into** :math:`[0, n]`; :math:`y=n` puts all its mass on the last bin
    (mmdet's DFL indexes bin :math:`n+1` there; mmdet and ultralytics clamp targets to
    :math:`n-0.1` / :math:`n-1.01` before the loss). The gradient is softmax minus the two-hot target.

    Args:
        logits: ``(N, n+1)``. targets: float ``(N,)`` distances in bin units; a NaN distance gives a
            NaN loss and gradient row. weight: broadcastable to ``(N,)``.
        backend: ``"auto"`` runs the C kernel on the CPU and the Triton kernel on CUDA (up to 256 bins;
            more run eager); ``"eager"`` the formula in tensor ops.
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    _checks.choice("backend", backend, backends.BACKENDS)
    _checks.float_tensor("logits", logits)
    _checks.float_tensor("targets", targets)
    if logits.dim() != 2 or logits.shape[1] < 2 or targets.shape != logits.shape[:1]:
        _checks.fail("targets", f"to have shape ({logits.shape[0] if logits.dim() else '?'},) for logits (N, n+1)",
                     f"shapes {tuple(logits.shape)}, {tuple(targets.shape)}")
    _checks.same_device("targets", targets, logits)
    reduction = _checks.reduction(reduction)
    normalizer = _checks.normalizer(normalizer, reduction)
    if weight is not None:
        _checks.float_tensor("weight", weight)
        _checks.broadcastable("weight", weight, logits.shape[:1], "the per-sample loss")
        _checks.same_device("weight", weight, logits)
    mod = _kernel_backend("distribution_focal_loss", backend, logits, native.softmax_unsupported(logits),
                          triton.dfl_unsupported(logits))
    return mod.distribution_focal_loss(logits, targets, weight=weight, reduction=reduction, normalizer=normalizer)


class QualityFocalLoss(nn.Module):
    """See :func:`quality_focal_loss`. Args: ``beta``, ``reduction``, ``activated``;
    ``forward(logits, targets, weight=None, normalizer=None)``."""

    def __init__(self, *, beta: float = 2.0, reduction: Reduction = "mean", activated: bool = False,
                 backend: str = "auto") -> None:
        super().__init__()
        self.backend = _checks.choice("backend", backend, backends.BACKENDS)
        self.beta = _checks.gamma(beta, "beta")
        self.reduction = _checks.reduction(reduction)
        self.activated = bool(activated)

    def forward(self, logits, targets, weight=None, normalizer=None):
        return quality_focal_loss(logits, targets, beta=self.beta, reduction=self.reduction, weight=weight,
                                  normalizer=normalizer, activated=self.activated, backend=self.backend)


class VarifocalLoss(nn.Module):
    """See :func:`varifocal_loss`. Args: ``alpha``, ``gamma``, ``iou_weighted``, ``reduction``, ``activated``."""

    def __init__(self, *, alpha: float = 0.75, gamma: float = 2.0, iou_weighted: bool = True,
                 reduction: Reduction = "mean", activated: bool = False, backend: str = "auto") -> None:
        super().__init__()
        self.backend = _checks.choice("backend", backend, backends.BACKENDS)
        self.alpha = _checks.number("alpha", alpha, lo=0.0)
        self.gamma = _checks.gamma(gamma)
        self.iou_weighted = bool(iou_weighted)
        self.reduction = _checks.reduction(reduction)
        self.activated = bool(activated)

    def forward(self, logits, targets, weight=None, normalizer=None, labels=None):
        return varifocal_loss(logits, targets, alpha=self.alpha, gamma=self.gamma, iou_weighted=self.iou_weighted,
                              reduction=self.reduction, weight=weight, normalizer=normalizer, labels=labels,
                              activated=self.activated, backend=self.backend)


class DistributionFocalLoss(nn.Module):
    """See :func:`distribution_focal_loss`. Args: ``reduction``."""

    def __init__(self, *, reduction: Reduction = "mean", backend: str = "auto") -> None:
        super().__init__()
        self.backend = _checks.choice("backend", backend, backends.BACKENDS)
        self.reduction = _checks.reduction(reduction)

    def forward(self, logits, targets, weight=None, normalizer=None):
        return distribution_focal_loss(logits, targets, backend=self.backend, reduction=self.reduction, weight=weight,
                                       normalizer=normalizer)
