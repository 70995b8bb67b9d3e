"""Class-balanced weights from the effective number of samples (Cui et al., CVPR 2019)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from focalkit import _checks
from focalkit.core import class_balanced


def class_balanced_weights(
    counts: Union[Sequence[int], Tensor],
    beta: float = 0.999,
    *,
    dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""Per-class weights :math:`w_c\propto(1-\beta)/(1-\beta^{n_c})`, normalised to sum to :math:`C`.

    :math:`(1-\beta^{n})/(1-\beta)` is the *effective number* of :math:`n` samples. ``beta=0``
    gives uniform weights; as :math:`\beta\to1` the weights tend to inverse class frequency. Use the
    result as ``weight=`` of :func:`softmax_focal_loss` (CB-softmax / CB-focal) or multiply it into
    per-sample weights.

    **Zero counts:** a class with no samples has effective number 0 and no finite weight; it gets
    weight **0**, and the weights of the other classes are normalised so that all :math:`C` still
    sum to :math:`C`. (It never appears as a target, so its weight only matters under label
    smoothing, where it removes that class's smoothing term.)

    Args:
        counts: number of training samples per class, :math:`(C,)`, non-negative integers, not all 0.
        beta: in [0, 1). The paper sweeps 0.9, 0.99, 0.999, 0.9999.
        dtype: output dtype (default: ``torch.get_default_dtype()``). Computed in float64.

    Returns:
        Tensor :math:`(C,)`, on ``counts``' device if it is a tensor.

    Raises:
        ValueError: empty or non-1-D counts, negative or non-integer counts, all counts 0, beta
            outside [0, 1).

    Example:
        >>> from focalkit import class_balanced_weights
        >>> class_balanced_weights([500, 50, 5], beta=0.99)
        tensor([0.1261, 0.3172, 2.5566])

    References:
        Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number of Samples.
        CVPR 2019. https://arxiv.org/abs/1901.05555
    """
    beta = _checks.number("beta", beta, lo=0.0, hi=1.0, hi_open=True)
    device = counts.device if isinstance(counts, Tensor) else None
    try:
        c = torch.as_tensor(counts, dtype=torch.float64, device=device)
    except (TypeError, ValueError, RuntimeError):
        _checks.fail("counts", "to be a 1-D sequence or tensor of non-negative integers", counts, TypeError)
    if c.dim() != 1 or c.numel() == 0:
        _checks.fail("counts", "to be 1-D and non-empty", f"shape {tuple(c.shape)}")
    if isinstance(counts, Tensor) and counts.dtype == torch.bool:
        _checks.fail("counts", "to hold integers", counts.dtype, TypeError)
    if not bool(torch.isfinite(c).all()) or bool((c < 0).any()) or bool((c != c.round()).any()):
        _checks.fail("counts", "to hold non-negative integers", counts)
    if not bool((c > 0).any()):
        _checks.fail("counts", "to have at least one class with a positive count", counts)
    return class_balanced(c, beta).to(dtype or torch.get_default_dtype())
