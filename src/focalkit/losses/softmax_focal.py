"""Softmax focal loss for multi-class classification and dense prediction."""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from focalkit import _checks, _device, _reduce, backends
from focalkit._reduce import Normalizer, Reduction, class_index_count
from focalkit.backends import eager, native, triton


def _check_class_targets(logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
    """Shapes and dtypes, and the range of the class indices (read on the CPU, asserted on the device
    elsewhere). Integer targets of every dtype are returned as int64, so that ``weight[t]`` and
    ``ignore_index`` mean the same for uint8, int8, int16, int32 and int64."""
    _checks.float_tensor("logits", logits)
    _checks.tensor("targets", targets)
    _checks.same_device("targets", targets, logits)
    if logits.dim() < 2:
        _checks.fail("logits", "to have shape (N, C) or (N, C, d1, ..., dk)", f"shape {tuple(logits.shape)}")
    if logits.shape[1] == 0:  # no class to put probability on: refused on every backend alike
        _checks.fail("logits", "to have at least one class (dim 1 of size C >= 1)", f"shape {tuple(logits.shape)}")
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            _checks.fail("targets", "of a floating dtype to be class probabilities with the logits' shape "
                         f"{tuple(logits.shape)} (class indices must have an integer dtype)",
                         f"shape {tuple(targets.shape)}", TypeError)
        _checks.in_unit_interval("targets", targets)
        return targets
    if targets.dtype == torch.bool or targets.is_complex():
        _checks.fail("targets", "to be integer class indices or float class probabilities", targets.dtype, TypeError)
    want = logits.shape[:1] + logits.shape[2:]
    if targets.shape != want:
        _checks.fail("targets", f"to have shape {tuple(want)} (the logits' shape without the class dim 1)",
                     f"shape {tuple(targets.shape)}")
    n_cls = logits.shape[1]
    _checks.labels_in_range("targets", targets, 0, n_cls - 1, ignore_index,
                            f"to hold class indices in [0, {n_cls - 1}] or ignore_index={ignore_index}")
    return targets if targets.dtype == torch.int64 else targets.long()


GammaSchedule = Callable[[Tensor], Tensor]


def _alpha_vector(alpha: Any) -> Tensor:
    """A per-class ``alpha`` (1-D tensor or sequence of numbers) as a float tensor of values >= 0."""
    if isinstance(alpha, Tensor):
        a = alpha
    elif isinstance(alpha, (list, tuple)) and set(map(type, alpha)) == {float} \
            and bool(torch.isfinite(a64 := torch.tensor(alpha, dtype=torch.float64)).all()):
        a = a64.to(torch.get_default_dtype())  # plain finite floats: one conversion, not a check per class
    else:
        a = torch.tensor([_checks.number("alpha", v) for v in alpha])
    if a.dim() != 1 or not (a.is_floating_point() or a.dtype in (torch.int32, torch.int64)):
        _checks.fail("alpha", "to be a number in [0, 1] or a 1-D sequence of per-class values >= 0",
                     f"shape {tuple(a.shape)}, dtype {a.dtype}")
    a = a if a.is_floating_point() else a.to(torch.float32)
    _checks.nonnegative("alpha", a)
    return a


def _with_alpha(alpha: Any, logits: Tensor, targets: Tensor, weight: Optional[Tensor], ignore_index: int,
                reduction: str, normalizer: Any) -> tuple:
    """``alpha`` folded into the class weight for every backend, and the mean's denominator fixed from
    ``weight`` alone (``alpha`` is a loss factor, not a re-weighting of the average)."""
    n_cls = logits.shape[1]
    if isinstance(alpha, (Tensor, list, tuple)):
        a = _alpha_vector(alpha)
        if a.numel() != n_cls:
            _checks.fail("alpha", f"to be a number or hold one value per class ({n_cls})", f"shape {tuple(a.shape)}")
        a = _device.constant(a, logits.device, a.dtype)  # a list: copied to the device once, not every step
    else:
        v = _checks.number("alpha", alpha, lo=0.0, hi=1.0)
        a = torch.full((n_cls,), v, device=logits.device)
        a[0] = 1.0 - v
    if reduction == "mean" and normalizer is None:
        like = torch.empty((), dtype=eager.compute_dtype(logits.dtype), device=logits.device)
        if targets.is_floating_point():
            count: Any = logits.numel() // n_cls if n_cls else logits.shape[0]  # a host number: no copy
        else:
            count = class_index_count(targets, ignore_index, None if weight is None else weight.to(like.dtype))
        normalizer = _reduce.denominator("mean", None, count, like)  # 0 (all ignored) -> 1: the mean is 0
    combined = a.to(logits.dtype if logits.dtype == torch.float64 else torch.float32)
    return (combined if weight is None else weight * combined.to(weight.dtype)), normalizer


def flsd53_gamma(p_y: Tensor) -> Tensor:
    """FLSD-53 (Mukhoti et al. 2020): gamma 5 where the target probability is below 0.2, else 3."""
    return torch.where(p_y < 0.2, torch.full_like(p_y, 5.0), torch.full_like(p_y, 3.0))


def softmax_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    gamma: Union[float, GammaSchedule] = 2.0,
    weight: Optional[Tensor] = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    normalizer: Normalizer = None,
    inplace_grad: bool = False,
    alpha: Union[float, Sequence[float], Tensor, None] = None,
    backend: Literal["auto", "eager", "native", "triton"] = "auto",
) -> Tensor:
    r"""Softmax focal loss on logits, with the conventions of ``F.cross_entropy``.

    For logits :math:`z`, :math:`p=\operatorname{softmax}(z)`, class weights :math:`w` and target
    distribution :math:`q` (one-hot, smoothed, or given probabilities):

    .. math::
        \mathrm{FL}(z, q) = -\sum_k w_k\,q_k\,(1-p_k)^\gamma\,\log p_k ,

    which for a class index :math:`y` without smoothing is :math:`-w_y(1-p_y)^\gamma\log p_y`. Each
    class's term is modulated by its own :math:`(1-p_k)^\gamma`. :math:`\log p` comes from
    log-softmax and :math:`\log(1-p_y)` from a log-sum-exp over the other classes, and the gradient
    is formed without :math:`(1-p)^{\gamma-1}`, so everything is finite for every :math:`\gamma\ge0`.

    With ``gamma=0`` this equals ``F.cross_entropy(logits, targets, weight=weight,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``, values and
    gradients: ``"mean"`` is the weighted mean :math:`\sum_i w_{y_i}L_i/\sum_i w_{y_i}` over the
    positions not ignored, or the plain mean over positions for probability targets.
    **Difference:** when every position is ignored (or the input is empty), ``"mean"`` returns 0,
    connected to the graph, where PyTorch returns NaN.

    Args:
        logits: :math:`(N, C)` or :math:`(N, C, d_1, ..., d_k)`, floating dtype.
        targets: int64 class indices of shape :math:`(N)` or :math:`(N, d_1, ..., d_k)`, values in
            :math:`[0, C)` or ``ignore_index``; or class probabilities of the logits' shape.
        gamma: focusing parameter, >= 0. Default 2. Or a schedule: a function of the probability of
            the target class (a detached tensor of shape :math:`(N, 1, d_1, ...)`) returning each
            position's :math:`\gamma`, e.g. :func:`flsd53_gamma` (sample-dependent focal loss,
            FLSD-53). A schedule needs class-index targets; no gradient flows through it.
        weight: per-class weight :math:`(C,)`, the multi-class :math:`\alpha`.
        ignore_index: class-index target whose positions give 0 loss and 0 gradient and are left out
            of the mean. Not used with probability targets.
        label_smoothing: :math:`\varepsilon\in[0,1]`: :math:`q=(1-\varepsilon)q+\varepsilon/C`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        normalizer: positive number or 0-dim tensor; the loss is then ``sum / normalizer``.
        alpha: the focal paper's balancing factor, as MONAI, kornia, SMP and ultralytics users type it: a
            per-class sequence / 1-D tensor of C values >= 0, or a number :math:`a\in[0,1]` meaning
            :math:`[1-a, a, \dots, a]` (class 0 the background: MONAI's and kornia's convention). It
            multiplies each class's term like ``weight`` (the two multiply), but **does not enter the
            mean's denominator**: ``"mean"`` divides by what it would without ``alpha`` (the summed
            ``weight`` of the positions kept, or their number), so ``alpha`` scales the loss where
            ``weight`` re-weights the average. Default None (off).
        inplace_grad: write the gradient into the logits' own storage instead of a new buffer, for
            callers that no longer need the logits (extra memory drops from one logits-sized buffer to
            almost nothing). After the call ``logits`` holds the gradient of the (reduced) loss, and
            ``backward`` hands that storage on as the gradient. An op that saved ``logits`` for its
            own backward (``torch.exp``, a softmax, ...) then raises autograd's "modified by an
            inplace operation" error instead of computing garbage. Default False.
        backend: ``"auto"`` (native C kernel on CPU, Triton on CUDA, eager elsewhere or for a
            ``gamma`` schedule), ``"eager"``, ``"native"``, ``"triton"`` (an explicit backend
            raises if it cannot run, and says why).
            ``FOCALKIT_BACKEND`` overrides it. See ``docs/backends.md``.

    Shape:
        - logits: :math:`(N, C, *)`; targets: :math:`(N, *)` or :math:`(N, C, *)`.
        - output: scalar, or :math:`(N, *)` for ``reduction="none"``.

    Returns:
        The loss, in the logits' dtype. Probability targets, ``weight`` and a ``normalizer`` tensor that
        require grad get their gradients; ``create_graph=True`` works (``docs/api.md``).

    Raises:
        TypeError: integer logits, bool targets, float targets of the wrong shape.
        ValueError: wrong shapes, ``weight`` not of length C, class index out of range (checked on
            CPU), ``gamma < 0``, ``label_smoothing`` outside [0, 1], unknown ``reduction``.

    Example:
        >>> import torch
        >>> from focalkit import softmax_focal_loss
        >>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> targets = torch.tensor([0, 1])
        >>> softmax_focal_loss(logits, targets, gamma=2.0)
        tensor(1.3061)
        >>> softmax_focal_loss(logits, targets, gamma=0.0)  # == F.cross_entropy
        tensor(1.5755)

    References:
        Lin et al. Focal Loss for Dense Object Detection. ICCV 2017. https://arxiv.org/abs/1708.02002
    """
    logits = _reduce.autocast_input(logits, reduction)  # torch.autocast: a float32 loss
    unbatched = isinstance(logits, Tensor) and logits.dim() == 1
    if unbatched:
        logits = logits.unsqueeze(0)
        if isinstance(targets, Tensor):
            targets = targets.unsqueeze(0)
    ignore_index = _checks.integer("ignore_index", ignore_index)
    targets = _check_class_targets(logits, targets, ignore_index)
    if callable(gamma):
        if targets.is_floating_point():
            _checks.fail("gamma", "to be a number with probability targets (a schedule needs class indices)",
                         gamma, TypeError)
    else:
        gamma = _checks.gamma(gamma)
    weight = _checks.class_weight("weight", weight, logits.shape[1], logits)
    label_smoothing = _checks.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
    reduction = _checks.reduction(reduction)
    normalizer = _checks.normalizer(normalizer, reduction)
    if alpha is not None:
        weight, normalizer = _with_alpha(alpha, logits, targets, weight, ignore_index, reduction, normalizer)
    inplace_grad = _checks.inplace_grad(inplace_grad, logits, (targets, weight, normalizer))
    schedule = "a gamma schedule (e.g. FLSD-53) runs on the eager backend" if callable(gamma) else None
    chosen = backends.select("softmax_focal_loss", backend, logits,
                             schedule or native.softmax_unsupported(logits), schedule or triton.unsupported(logits))
    impl = {"native": native.softmax_focal, "triton": triton.softmax_focal}.get(chosen, eager.softmax_focal)
    out = impl(
        logits, targets, gamma=gamma, weight=weight, ignore_index=ignore_index,
        label_smoothing=label_smoothing, reduction=reduction, normalizer=normalizer, inplace_grad=inplace_grad,
    )
    return out.squeeze(0) if unbatched and reduction == "none" else out


class SoftmaxFocalLoss(nn.Module):
    """Softmax focal loss as a module. See :func:`softmax_focal_loss`.

    Args:
        gamma, weight, ignore_index, label_smoothing, reduction, inplace_grad, alpha, backend: as in
            :func:`softmax_focal_loss`, validated once here; ``weight`` is a buffer.

    ``forward(logits, targets, normalizer=None)``.

    Example:
        >>> import torch
        >>> from focalkit import SoftmaxFocalLoss
        >>> criterion = SoftmaxFocalLoss(gamma=2.0, weight=torch.tensor([1.0, 3.0]))
        >>> criterion(torch.tensor([[1.0, -1.0], [0.0, 2.0]]), torch.tensor([1, 1]))
        tensor(0.8259)
    """

    def __init__(
        self,
        *,
        gamma: Union[float, GammaSchedule] = 2.0,
        weight: Optional[Tensor] = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
        inplace_grad: bool = False,
        alpha: Union[float, Sequence[float], Tensor, None] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.alpha: Any
        if isinstance(alpha, (Tensor, list, tuple)):
            self.register_buffer("alpha", _alpha_vector(alpha))  # follows .to() and state_dict
        else:
            self.alpha = None if alpha is None else _checks.number("alpha", alpha, lo=0.0, hi=1.0)
        self.gamma = gamma if callable(gamma) else _checks.gamma(gamma)
        self.inplace_grad = _checks.boolean("inplace_grad", inplace_grad)
        self.backend = _checks.choice("backend", backend, backends.BACKENDS)
        if weight is not None:
            _checks.float_tensor("weight", weight)
            if weight.dim() != 1:
                _checks.fail("weight", "to be 1-D (one entry per class)", f"shape {tuple(weight.shape)}")
            _checks.nonnegative("weight", weight)
        self.ignore_index = _checks.integer("ignore_index", ignore_index)
        self.label_smoothing = _checks.number("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        self.reduction = _checks.reduction(reduction)
        self.register_buffer("weight", weight)

    def forward(self, logits: Tensor, targets: Tensor, normalizer: Normalizer = None) -> Tensor:
        return softmax_focal_loss(
            logits, targets, gamma=self.gamma, weight=self.weight, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, reduction=self.reduction, normalizer=normalizer,
            inplace_grad=self.inplace_grad, alpha=self.alpha, backend=self.backend,
        )

    def extra_repr(self) -> str:
        gamma = getattr(self.gamma, "__name__", self.gamma)
        return (f"gamma={gamma}, ignore_index={self.ignore_index}, "
                f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}")
