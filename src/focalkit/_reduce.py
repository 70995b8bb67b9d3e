"""The package's only reduction code.

Every loss produces per-element losses ``L`` and, in the same pass, their gradients ``G``. A
reduction is a single division: ``mean`` divides the sum by a denominator (the element count, or
the weighted count of ``F.cross_entropy``), ``normalizer=`` divides it by a caller's number (e.g.
the number of positive anchors), ``sum`` divides by nothing. The gradient is divided by the same
number, so the backward pass only multiplies by ``grad_output``.

An empty input, or one whose every position is ignored, has denominator 0 and sum 0; the mean is
then 0 (not PyTorch's NaN), and stays connected to the graph.
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import torch
from torch import Tensor

from focalkit import _checks

Reduction = Literal["none", "mean", "sum"]
Normalizer = Union[float, int, Tensor, None]


def denominator(
    reduction: str, normalizer: Normalizer, count: Union[Tensor, int, None], like: Tensor
) -> Optional[Tensor]:
    """The number the sum (and gradient) is divided by, as a 0-dim tensor; None for none/sum.

    ``count`` is the mean's denominator: a tensor (weighted counts, never read on the host) or a host
    number (an element count; a weighted count the CPU has read already).
    """
    if normalizer is not None:
        if not isinstance(normalizer, Tensor):  # straight to the loss's dtype: float64 keeps all its digits
            return host_scalar(float(normalizer), like)
        return normalizer.to(device=like.device, dtype=like.dtype)
    if reduction != "mean":
        return None
    if type(count) in (int, float):  # a host number, not a traced SymInt: one op
        return host_scalar(float(count) or 1.0, like)
    den = count if isinstance(count, Tensor) else host_scalar(float(count), like)
    den = den.to(device=like.device, dtype=like.dtype)
    # 0 only when every term is 0 (empty or all ignored): divide by 1 so the mean is 0, not NaN.
    return torch.where(den == 0, torch.ones_like(den), den)


def host_scalar(value: float, like: Tensor) -> Tensor:
    """A host number as a 0-dim tensor on ``like``'s device. On the CPU ``torch.tensor``; elsewhere a fill,
    never ``torch.tensor(value, device=...)``: that copies from pageable host memory, which on CUDA
    synchronises the stream and is refused inside a CUDA-graph capture."""
    if like.device.type == "cpu":
        return torch.tensor(value, dtype=like.dtype)
    return torch.full((), value, dtype=like.dtype, device=like.device)


def host_denominator(reduction: str, normalizer: Normalizer, count: int, dtype: torch.dtype) -> Optional[float]:
    """:func:`denominator` as a Python number, for a CPU kernel call: the same rule (a normalizer as
    given, an empty mean divided by 1, None for none / sum), rounded to ``dtype`` as the tensor is,
    without tensor ops for a number."""
    if isinstance(normalizer, Tensor):
        den = float(normalizer.detach().to(dtype))
    elif normalizer is not None:
        den = float(normalizer)
    elif reduction == "mean":
        den = float(count) or 1.0
    else:
        return None
    return den if dtype == torch.float64 else _checks.round_float32(den)


def reduce(loss: Tensor, grad: Tensor, reduction: str, den: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Apply the reduction to the per-element ``loss`` and scale ``grad`` to match."""
    if reduction == "none" and den is None:
        return loss, grad
    total = loss.sum()
    if den is None:
        return total, grad
    return total / den, grad / den


_HALF = (torch.float16, torch.bfloat16)


def out_dtype(dtype: torch.dtype, reduced: bool) -> torch.dtype:
    """The loss's dtype: the logits' own, except a reduced loss (``mean``, ``sum``, a ``normalizer``)
    of float16 / bfloat16 logits, which is float32. It is accumulated in float32 or float64 anyway; in
    float16 a sum overflows at 65,504 and ``GradScaler`` multiplies the loss by 2^16 (docs/api.md,
    "Mixed precision")."""
    return torch.float32 if reduced and dtype in _HALF else dtype


def autocast_input(logits: Tensor, reduction: str) -> Tensor:
    """Under ``torch.autocast`` the losses follow torch's float32 list (``F.cross_entropy``, BCE): the
    loss comes back in float32. A reduced loss is float32 already (:func:`out_dtype`), read from the
    half logits without a copy; for ``reduction="none"`` the float16 / bfloat16 logits are cast to
    float32 first, as autocast casts the inputs of torch's own losses (the gradient flows back
    through the cast, in the logits' dtype)."""
    if isinstance(logits, Tensor) and reduction == "none" and logits.dtype in _HALF \
            and logits.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(logits.device.type):
        return logits.float()
    return logits


def reduce_autograd(loss: Tensor, reduction: str, normalizer: Normalizer = None,
                    count: Union[Tensor, int, None] = None, dtype: Optional[torch.dtype] = None) -> Tensor:
    """The same reductions for losses differentiated by autograd (box losses): sum / denominator,
    returned in ``out_dtype(dtype)`` (``dtype``: the input's; None keeps the loss's)."""
    den = denominator(reduction, normalizer, loss.numel() if count is None else count, loss)
    if reduction == "none" and den is None:
        return loss if dtype is None else loss.to(dtype)
    total = loss.sum()
    total = total if den is None else total / den
    return total if dtype is None else total.to(out_dtype(dtype, True))


def positives(count: Tensor, sync: bool) -> Tensor:
    """RetinaNet / FCOS normaliser: the number of positives, clamped at >= 1.

    With ``sync=True`` and an initialised ``torch.distributed`` process group, the count is
    all-reduced and averaged over ranks first (mmdet's ``reduce_mean``), so that DDP's gradient
    averaging reproduces single-process training on the concatenated batch: each rank divides its
    own sum by the global mean count. Without a process group ``sync`` changes nothing.
    """
    count = count.detach().to(torch.float32 if not count.is_floating_point() else count.dtype)
    if sync:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            count = count.clone()
            dist.all_reduce(count)
            count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def class_index_count(targets: Tensor, ignore_index: int, weight: Optional[Tensor]) -> Tensor:
    """``F.cross_entropy``'s mean denominator for class-index targets: the summed class weight of
    the positions not ignored (their number without ``weight``). A tensor: never read on the host."""
    valid = targets != ignore_index
    if weight is None:
        return valid.sum()
    valid = valid & (targets >= 0) & (targets < weight.shape[0])  # a bad index is NaN, never read
    return torch.where(valid, weight[torch.where(valid, targets, 0)], 0).sum()
