"""Sigmoid focal loss for binary and multi-label classification (Lin et al. 2017)."""

from __future__ import annotations

from typing import Literal, Optional, Union

import torch
from torch import Tensor, nn

from focalkit import _checks, _reduce
from focalkit._reduce import Normalizer, Reduction
from focalkit import backends
from focalkit.backends import eager, native, triton

SoftTarget = Literal["pt", "linear", "signed", "bce", "quality"]
Alpha = Union[float, Tensor, None]


def _is_sparse(logits: Tensor, targets: Tensor) -> bool:
    """Sparse class indices: integer (not bool) targets of shape ``logits.shape[:-1]``, logits (..., C)
    with at least 2 dims. With C = 1 that shape is refused (see :func:`_check_sparse`)."""
    return (isinstance(targets, Tensor) and isinstance(logits, Tensor) and logits.dim() >= 2
            and not targets.is_floating_point() and not targets.is_complex() and targets.dtype != torch.bool
            and targets.shape == logits.shape[:-1])


def _check_sparse(logits: Tensor, labels: Tensor) -> Tensor:
    """Class indices in [0, C] (C = background), as int64."""
    _checks.same_device("targets", labels, logits)
    n_cls = logits.shape[-1]
    if n_cls == 1:
        _checks.fail("targets", f"of the logits' shape {tuple(logits.shape)} for one class (integer targets of "
                     f"shape {tuple(labels.shape)} would be sparse class indices, where 1 means background: "
                     "pass targets.unsqueeze(-1) for 0/1 labels)", f"shape {tuple(labels.shape)}")
    _checks.labels_in_range("targets", labels, 0, n_cls, None,
                            f"as class indices to lie in [0, {n_cls}] ({n_cls} = background)")
    return labels if labels.dtype == torch.int64 else labels.long()


def _check_targets(logits: Tensor, targets: Tensor, ignore_index: Optional[float] = None) -> None:
    _checks.float_tensor("logits", logits)
    _checks.tensor("targets", targets)
    if targets.is_complex():
        _checks.fail("targets", "to be real (floats in [0, 1], bool or integer 0/1)", targets.dtype, TypeError)
    if targets.shape != logits.shape:
        _checks.fail("targets", f"to have the logits' shape {tuple(logits.shape)}", f"shape {tuple(targets.shape)}")
    _checks.same_device("targets", targets, logits)
    _checks.in_unit_interval("targets", targets, ignore_index)


def _check_elementwise_weight(name: str, value: Optional[Tensor], logits: Tensor) -> Optional[Tensor]:
    if value is None:
        return None
    _checks.float_tensor(name, value)
    _checks.broadcastable(name, value, logits.shape)
    _checks.same_device(name, value, logits)
    _checks.nonnegative(name, value)
    return value


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: Alpha = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
    weight: Optional[Tensor] = None,
    pos_weight: Optional[Tensor] = None,
    soft_target: SoftTarget = "pt",
    normalizer: Union[Normalizer, Literal["positives"]] = None,
    sync: bool = False,
    inplace_grad: bool = False,
    ignore_index: Optional[float] = None,
    backend: Literal["auto", "eager", "native", "triton"] = "auto",
) -> Tensor:
    r"""Sigmoid focal loss on logits, for binary and multi-label targets.

    For a logit :math:`x`, target :math:`y`, :math:`p=\sigma(x)`, :math:`p_t=py+(1-p)(1-y)` and
    :math:`\alpha_t=\alpha y+(1-\alpha)(1-y)`:

    .. math::
        \mathrm{FL}(x, y) = -\alpha_t\,(1-p_t)^\gamma\,\log p_t ,

    computed as :math:`\alpha_t\,e^{\gamma\log(1-p_t)}\operatorname{softplus}(-x_t)` in log space, so
    that loss and gradient are finite for every finite logit and every :math:`\gamma\ge0`
    (``(1-p_t)**gamma`` gives NaN gradients for :math:`\gamma<1` once the sigmoid saturates).
    With ``gamma=0`` and ``alpha=None`` this equals
    ``F.binary_cross_entropy_with_logits(logits, targets, weight=weight, pos_weight=pos_weight,
    reduction=reduction)``, values and gradients, up to float32 rounding: within 4 ulp of torch's for
    :math:`|x|<1`; the softplus here is formed with ``log1p`` and stays within 32 ulp of the float64
    value everywhere, where torch's drifts (1.3 % low at :math:`|x|=30`).

    Soft targets :math:`y\in(0,1)` have five meanings (all equal the hard-label loss at 0 and 1):

    * ``soft_target="pt"`` (default; torchvision, fvcore, YOLOv5):
      :math:`\alpha_t(1-p_t)^\gamma\,\mathrm{BCE}(x,y)`. Its minimiser is pushed *away* from
      :math:`y` (:math:`y=0.8\to p^\star=0.953` at :math:`\gamma=2`).
    * ``soft_target="linear"``: :math:`y\,\mathrm{FL}(x,1)+(1-y)\,\mathrm{FL}(x,0)`, the expected
      hard-label loss; its minimiser is pulled toward 1/2 (see
      :func:`focalkit.focal_calibration_map` in ``docs/math.md``).
    * ``soft_target="signed"`` (MONAI): :math:`\alpha_t\,\sigma((1-2y)x)^\gamma\,\mathrm{BCE}(x,y)`, the
      modulating factor of the logit signed by :math:`2y-1`.
    * ``soft_target="bce"`` (segmentation_models_pytorch, pytorch-toolbelt): :math:`p_t=e^{-\mathrm{BCE}(x,y)}`,
      :math:`\alpha_t(1-e^{-\mathrm{BCE}})^\gamma\,\mathrm{BCE}(x,y)`.
    * ``soft_target="quality"`` (Quality Focal Loss, YOLOv5's ``QFocalLoss``):
      :math:`\alpha_t|y-\sigma(x)|^\gamma\,\mathrm{BCE}(x,y)`, minimised at :math:`\sigma(x)=y`
      (:func:`quality_focal_loss` is this form with ``alpha=None``).

    ``pos_weight`` multiplies the positive-label term, as in ``nn.BCEWithLogitsLoss``; ``weight``
    multiplies each element's loss. Targets, weights and a ``normalizer`` tensor that require grad get
    their gradients, and ``create_graph=True`` gives exact second derivatives (``docs/api.md``).

    Args:
        logits: raw scores, any shape, floating dtype. float16 / bfloat16 are computed in float32.
        targets: same shape as ``logits``; floats in [0, 1] (bool / integer 0-1 also accepted).
            Or **sparse**: integer class indices of shape ``logits.shape[:-1]`` with values in
            ``[0, C]``, ``C`` meaning background (RetinaNet / mmdet); computed without building a
            one-hot tensor, equal to the dense one-hot loss.
        alpha: weight of the positive class in [0, 1] (negatives get ``1 - alpha``); a 1-D tensor of
            per-class values over the last dimension; or ``None`` for no weighting. Default 0.25.
        gamma: focusing parameter, >= 0. Default 2.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``. ``"mean"`` of an empty input is 0.
        weight: per-element weight, broadcastable to ``logits``.
        pos_weight: weight of the positive term, broadcastable to ``logits`` (e.g. shape ``(C,)``).
        soft_target: ``"pt"``, ``"linear"``, ``"signed"``, ``"bce"`` or ``"quality"``, see above.
        normalizer: a positive number or 0-dim tensor: the loss is then ``sum / normalizer`` (RetinaNet
            divides by the number of positive anchors). ``"positives"`` counts the positive targets
            (entries > 0; sparse: rows with a class < C), clamped at >= 1. Not allowed with
            ``reduction="none"``.
        sync: with ``normalizer="positives"``, average the count over ``torch.distributed`` ranks
            (all-reduce; the FCOS / mmdet convention) so that DDP training reproduces single-process
            training on the concatenated batch. No effect without an initialised process group.
        inplace_grad: write the gradient into the logits' own storage instead of a new buffer
            (the logits then hold it after the call), as in :func:`softmax_focal_loss`. Default False.
        ignore_index: a target value (e.g. 255 in a segmentation mask) whose positions give 0 loss
            and 0 gradient and leave the mean's denominator (kornia's binary loss, ``F.cross_entropy``'s
            convention). Dense targets only. On every backend (the kernels get the mask as a weight).
        backend: ``"auto"`` (native C kernel on CPU, Triton on CUDA, where they cover the
            arguments, else eager), ``"eager"``, ``"native"``, ``"triton"`` (an explicit backend
            raises if it cannot run, and says why).
            ``FOCALKIT_BACKEND`` overrides it. See ``docs/backends.md``.

    Shape:
        - logits: :math:`(*)`; targets: :math:`(*)`.
        - output: scalar, or :math:`(*)` for ``reduction="none"``.

    Returns:
        The loss, in the logits' dtype.

    Raises:
        TypeError: non-tensor or integer ``logits``; wrongly typed arguments.
        ValueError: shapes that do not match, ``gamma < 0``, ``alpha`` outside [0, 1] or of the wrong
            length, unknown ``reduction`` or ``soft_target``, ``normalizer <= 0`` or with ``"none"``.

    Example:
        >>> import torch
        >>> from focalkit import sigmoid_focal_loss
        >>> logits = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
        >>> targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
        tensor(0.0086)
        >>> sigmoid_focal_loss(logits, targets, alpha=None, gamma=0.0, reduction="none")
        tensor([[0.1269, 0.3133],
                [0.0486, 0.4741]])

    References:
        Lin, Goyal, Girshick, He, Dollár. Focal Loss for Dense Object Detection. ICCV 2017.
        https://arxiv.org/abs/1708.02002
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    sparse = _is_sparse(logits, targets)
    if ignore_index is not None:
        ignore_index = _checks.number("ignore_index", ignore_index)
        if sparse:
            _checks.fail("ignore_index", "to be None with sparse class-index targets (background = C)", ignore_index)
    if sparse:
        _checks.float_tensor("logits", logits)
        targets = _check_sparse(logits, targets)
    else:
        _check_targets(logits, targets, ignore_index)
    gamma = _checks.gamma(gamma)
    alpha = _checks.alpha(alpha, logits.shape[-1] if logits.dim() else 1)
    if isinstance(alpha, Tensor):
        _checks.same_device("alpha", alpha, logits)
    reduction = _checks.reduction(reduction)
    soft_target = _checks.choice("soft_target", soft_target, ("pt", "linear", "signed", "bce", "quality"))
    weight = _check_elementwise_weight("weight", weight, logits)
    pos_weight = _check_elementwise_weight("pos_weight", pos_weight, logits)
    if isinstance(normalizer, str):
        _checks.choice("normalizer", normalizer, ("positives",))
        if reduction == "none":
            _checks.fail("normalizer", "to be None when reduction='none'", normalizer)
        count = (targets < logits.shape[-1]).sum() if sparse else (targets > 0).sum()
        normalizer = _reduce.positives(count, bool(sync))
    else:
        if sync:
            _checks.fail("sync", "to be used with normalizer='positives'", sync)
        normalizer = _checks.normalizer(normalizer, reduction)
    if ignore_index is not None:
        targets, weight, normalizer = _ignore(logits, targets, weight, normalizer, reduction, ignore_index)
    inplace_grad = _checks.inplace_grad(inplace_grad, logits, (targets, weight, pos_weight, alpha, normalizer))
    chosen = backends.select("sigmoid_focal_loss", backend, logits, native.unsupported(logits, pos_weight),
                             triton.unsupported(logits, sparse, pos_weight))
    kwargs = dict(alpha=alpha, gamma=gamma, weight=weight, pos_weight=pos_weight, reduction=reduction,
                  normalizer=normalizer, inplace_grad=inplace_grad, soft_target=soft_target)
    if chosen == "native":
        return native.sigmoid_focal(logits, targets, sparse=sparse, **kwargs)
    if chosen == "triton":
        return triton.sigmoid_focal(logits, targets, **kwargs)  # dense or sparse
    return eager.sigmoid_focal(logits, targets, sparse=sparse, **kwargs)


def _ignore(logits: Tensor, targets: Tensor, weight: Optional[Tensor], normalizer, reduction: str, ignore_index):
    """Ignored positions as a 0 weight (every backend takes an elementwise weight), their targets as 0,
    and ``"mean"`` over the positions kept (0 when none is: the graph stays connected)."""
    valid = targets != ignore_index
    targets = torch.where(valid, targets, torch.zeros_like(targets))
    mask = valid.to(logits.dtype if logits.is_floating_point() else torch.float32)
    weight = mask if weight is None else weight * mask
    if reduction == "mean" and normalizer is None:
        normalizer = valid.sum().to(torch.float32).clamp(min=1.0)
    return targets, weight, normalizer


class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss as a module. See :func:`sigmoid_focal_loss`.

    Args:
        alpha, gamma, reduction, weight, pos_weight, soft_target, inplace_grad, ignore_index, backend: as in
            :func:`sigmoid_focal_loss`, validated once here. Tensor arguments are registered as buffers (they follow ``.to()``).

    ``forward(logits, targets, normalizer=None)`` takes the per-batch ``normalizer``.

    Example:
        >>> import torch
        >>> from focalkit import SigmoidFocalLoss
        >>> criterion = SigmoidFocalLoss(alpha=0.25, gamma=2.0)
        >>> criterion(torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]))
        tensor(0.0087)
    """

    def __init__(
        self,
        *,
        alpha: Alpha = 0.25,
        gamma: float = 2.0,
        reduction: Reduction = "mean",
        weight: Optional[Tensor] = None,
        pos_weight: Optional[Tensor] = None,
        soft_target: SoftTarget = "pt",
        inplace_grad: bool = False,
        ignore_index: Optional[float] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.ignore_index = None if ignore_index is None else _checks.number("ignore_index", ignore_index)
        self.backend = _checks.choice("backend", backend, backends.BACKENDS)
        self.inplace_grad = _checks.boolean("inplace_grad", inplace_grad)
        self.gamma = _checks.gamma(gamma)
        alpha = _checks.alpha(alpha)
        self.reduction = _checks.reduction(reduction)
        self.soft_target = _checks.choice("soft_target", soft_target, ("pt", "linear", "signed", "bce", "quality"))
        for name, value in (("weight", weight), ("pos_weight", pos_weight)):
            if value is not None:
                _checks.float_tensor(name, value)
                _checks.nonnegative(name, value)
        self.alpha: Alpha
        if isinstance(alpha, Tensor):
            self.register_buffer("alpha", alpha)
        else:
            self.alpha = alpha
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: Tensor, targets: Tensor, normalizer=None, sync: bool = False) -> Tensor:
        return sigmoid_focal_loss(
            logits, targets, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction,
            weight=self.weight, pos_weight=self.pos_weight, soft_target=self.soft_target,
            normalizer=normalizer, sync=sync, inplace_grad=self.inplace_grad, ignore_index=self.ignore_index,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        alpha = f"tensor of {self.alpha.numel()}" if isinstance(self.alpha, Tensor) else self.alpha
        return f"alpha={alpha}, gamma={self.gamma}, reduction={self.reduction!r}, soft_target={self.soft_target!r}"
