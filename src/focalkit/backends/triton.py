"""Triton backend: GPU kernels for the sigmoid and softmax focal losses (``_triton_kernels.py``).

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (Triton's interpreter,
which is how CI tests it on a machine without a GPU). float16 / bfloat16 / float32 logits are
computed in float32 and the gradient is stored in the logits' dtype; float64 stays on the eager
backend (the kernels compute in float32). The reduction is fused into the kernels (one partial
sum per program), and the gradient scale is read on the device: no host synchronisation.

Covered: :func:`focalkit.sigmoid_focal_loss` with dense targets (both soft forms, ``alpha`` off /
scalar / per class, ``pos_weight`` per class, elementwise ``weight``) and
:func:`focalkit.softmax_focal_loss` (class indices with ``ignore_index``, probability targets,
``weight``, label smoothing, N-D, ``inplace_grad``); every reduction and ``normalizer``.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any, Optional

import torch
from torch import Tensor

from focalkit.backends import _ops
from focalkit.backends._ops import raw

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def available() -> bool:
    return importlib.util.find_spec("triton") is not None


def why_unavailable() -> str:
    return "" if available() else "the triton package is not installed"


def _kernels() -> Any:
    from focalkit.backends import _triton_kernels

    return _triton_kernels


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unsupported(logits: Tensor, sparse: bool = False, pos_weight: Optional[Tensor] = None) -> Optional[str]:
    """Why the Triton kernels cannot take these inputs, or None if they can."""
    if not available():
        return why_unavailable()
    if logits.device.type != "cuda" and not (interpreting() and logits.device.type == "cpu"):
        return f"it runs on CUDA tensors (or on the CPU under TRITON_INTERPRET=1), logits are on {logits.device}"
    if logits.dtype not in _DTYPES:
        return f"dtype {logits.dtype} is not supported (float16, bfloat16, float32; float64 runs on eager)"
    if sparse:
        return "sparse class-index targets are not implemented in Triton"
    if not _ops.class_vector_layout(pos_weight, logits.shape[-1] if logits.dim() else 1):
        return (f"pos_weight of shape {tuple(pos_weight.shape)} is neither one value nor one per class "
                "(shape (C,)) for the Triton kernel")
    return None


def _check_device(op: str, logits: Tensor) -> None:
    if not available():
        raise RuntimeError(f"the triton backend cannot run: {why_unavailable()}")
    if logits.device.type != "cuda" and not (interpreting() and logits.device.type == "cpu"):
        raise ValueError(f"focalkit::{op}: expected CUDA tensors, got logits on {logits.device}")
    if logits.dtype not in _DTYPES:
        raise ValueError(f"focalkit::{op}: expected float16/bfloat16/float32 logits, got {logits.dtype}")


def _scale(den: Optional[Tensor], device: torch.device) -> Tensor:
    one = torch.ones(1, dtype=torch.float32, device=device)
    return one if den is None else (one / den.to(torch.float32)).reshape(1)


def _finish(partials: Tensor, den: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    total = partials.sum(dtype=torch.float64)
    return (total if den is None else total / den.to(torch.float64)).to(dtype)


def _sigmoid_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], apos: Tensor, aneg: Tensor, pw: Tensor,
                  has_alpha: bool, per_class: bool, form: int, gamma: float, reduction: str,
                  den: Optional[Tensor], inplace: bool = False) -> tuple[Tensor, Tensor]:
    _ops.check_sigmoid_args("triton_sigmoid_focal", logits, targets, weight, apos, aneg, pw, form, reduction, den)
    _check_device("triton_sigmoid_focal", logits)
    if targets.shape != logits.shape:
        raise ValueError("focalkit::triton_sigmoid_focal: sparse class-index targets are not implemented in Triton")
    k = _kernels()
    x = raw(logits)
    y = raw(targets, None if targets.is_floating_point() else x.dtype)
    n, dev = x.numel(), x.device
    n_cls = x.shape[-1] if x.dim() else 1
    w = None if weight is None else raw(weight.detach().expand(x.shape))
    apos, aneg, pw = raw(apos), raw(aneg), raw(pw)
    store = reduction == "none" and den is None
    block = 1024
    grid = (max(1, -(-n // block)),)
    grad = x if inplace and x.data_ptr() == logits.data_ptr() and not logits.is_neg() else torch.empty_like(x)
    loss = torch.empty_like(x) if store else torch.zeros(grid[0], dtype=torch.float32, device=dev)
    if n:
        k.sigmoid_focal_kernel[grid](x, y, x if w is None else w, apos, aneg, pw, _scale(den, dev), grad, loss,
                                     n, n_cls, float(gamma), FORM=form, HAS_W=w is not None, HAS_ALPHA=has_alpha,
                                     STORE=store, G0=gamma == 0, BLOCK=block)
    return (loss if store else _finish(loss, den, logits.dtype)), grad


sigmoid_op = _ops.define("triton_sigmoid_focal", "sigmoid", _sigmoid_impl)


def sigmoid_focal(logits: Tensor, targets: Tensor, **kwargs: Any) -> Tensor:
    """See :func:`focalkit.sigmoid_focal_loss` (dense targets)."""
    return _ops.sigmoid(sigmoid_op, _sigmoid_impl, logits, targets, **kwargs)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _softmax_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, ignore_index: int,
                  label_smoothing: float, reduction: str, den: Optional[Tensor],
                  inplace: bool = False) -> tuple[Tensor, Tensor]:
    _ops.check_softmax_args("triton_softmax_focal", logits, targets, weight, reduction, den)
    _check_device("triton_softmax_focal", logits)
    k = _kernels()
    dev = logits.device
    n, n_cls = logits.shape[0], logits.shape[1]
    spatial = tuple(logits.shape[2:])
    s = math.prod(spatial)
    x = raw(logits)
    w = raw(weight, torch.float32)
    y, q = (None, raw(targets)) if targets.is_floating_point() else (raw(targets, torch.int64), None)
    rows = n * s
    grad = x if inplace and x.data_ptr() == logits.data_ptr() and not logits.is_neg() else torch.empty_like(x)
    loss = torch.zeros(max(rows, 1), dtype=torch.float32, device=dev)
    if rows and n_cls:
        block_c = min(_next_power_of_2(n_cls), 256 if interpreting() else 4096)
        k.softmax_focal_kernel[(rows,)](
            x, x if y is None else y, x if q is None else q, x if w is None else w, _scale(den, dev), grad,
            loss, n_cls, s, ignore_index, float(label_smoothing), float(gamma), HAS_Q=q is not None,
            HAS_W=w is not None, DENSE=q is not None or label_smoothing > 0, G0=gamma == 0, BLOCK_C=block_c)
    if reduction == "none" and den is None:
        return loss[:rows].view((n,) + spatial).to(logits.dtype), grad
    return _finish(loss, den, logits.dtype), grad


softmax_op = _ops.define("triton_softmax_focal", "softmax", _softmax_impl)


def softmax_focal(logits: Tensor, targets: Tensor, **kwargs: Any) -> Tensor:
    """See :func:`focalkit.softmax_focal_loss`."""
    return _ops.softmax(softmax_op, _softmax_impl, logits, targets, **kwargs)
