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
import os
from typing import Any, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from focalkit import _reduce
from focalkit.backends.eager import scale_saved, write_into_logits

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
    if pos_weight is not None and pos_weight.numel() not in (1, logits.shape[-1] if logits.dim() else 1):
        return "pos_weight must be a scalar or per class (shape (C,))"
    return None


def _vector(value: Any, n_cls: int, default: float, device: torch.device) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(device=device, dtype=torch.float32).reshape(-1).expand(n_cls).contiguous()
    return torch.full((n_cls,), default if value is None else float(value), dtype=torch.float32, device=device)


def _scale(den: Optional[Tensor], device: torch.device) -> Tensor:
    one = torch.ones(1, dtype=torch.float32, device=device)
    return one if den is None else (one / den.to(torch.float32)).reshape(1)


def _finish(partials: Tensor, den: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    total = partials.sum(dtype=torch.float64)
    return (total if den is None else total / den.to(torch.float64)).to(dtype)


class _TritonSigmoidFocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, weight: Optional[Tensor], alpha: Any,
                pos_weight: Optional[Tensor], gamma: float, pt: bool, reduction: str, normalizer: Any) -> Tensor:
        k = _kernels()
        x = logits.contiguous()
        y = (targets if targets.is_floating_point() else targets.to(x.dtype)).contiguous()
        n, dev = x.numel(), x.device
        n_cls = x.shape[-1] if x.dim() else 1
        w = None if weight is None else weight.expand(x.shape).contiguous()
        apos = _vector(alpha, n_cls, 1.0, dev)
        aneg = 1.0 - apos if alpha is not None else torch.ones_like(apos)
        pw = _vector(pos_weight, n_cls, 1.0, dev)
        den = _reduce.denominator(reduction, normalizer, n, torch.empty((), dtype=torch.float32, device=dev))
        store = reduction == "none" and den is None
        block = 1024
        grid = (max(1, -(-n // block)),)
        grad = torch.empty_like(x)
        loss = torch.empty_like(x) if store else torch.zeros(grid[0], dtype=torch.float32, device=dev)
        if n:
            k.sigmoid_focal_kernel[grid](x, y, x if w is None else w, apos, aneg, pw, _scale(den, dev), grad, loss,
                                         n, n_cls, float(gamma), PT=pt, HAS_W=w is not None,
                                         HAS_ALPHA=alpha is not None, STORE=store, G0=gamma == 0, BLOCK=block)
        ctx.save_for_backward(grad)
        return loss if store else _finish(loss, den, logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple:
        (grad,) = ctx.saved_tensors
        return (scale_saved(grad, grad_out),) + (None,) * 8


def sigmoid_focal(logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float, weight: Optional[Tensor],
                  pos_weight: Optional[Tensor], soft_target: str, reduction: str, normalizer: Any) -> Tensor:
    return _TritonSigmoidFocal.apply(logits, targets, weight, alpha, pos_weight, gamma, soft_target == "pt",
                                     reduction, normalizer)


class _TritonSoftmaxFocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float,
                ignore_index: int, label_smoothing: float, reduction: str, normalizer: Any,
                inplace_grad: bool) -> Tensor:
        k = _kernels()
        dev = logits.device
        n, n_cls = logits.shape[0], logits.shape[1]
        spatial = logits.shape[2:]
        s = 1
        for d in spatial:
            s *= d
        x = logits.detach().contiguous()
        w = None if weight is None else weight.to(torch.float32).contiguous()
        if targets.is_floating_point():
            y, q = None, targets.contiguous()
            count: Any = n * s
        else:
            y, q = targets.to(torch.int64).contiguous(), None
            count = _reduce.class_index_count(y, ignore_index, w)
        den = _reduce.denominator(reduction, normalizer, count, torch.empty((), dtype=torch.float32, device=dev))
        rows = n * s
        grad = x if inplace_grad and x.data_ptr() == logits.data_ptr() else torch.empty_like(x)
        loss = torch.zeros(max(rows, 1), dtype=torch.float32, device=dev)
        if rows and n_cls:
            block_c = min(triton_next_power_of_2(n_cls), 256 if interpreting() else 4096)
            k.softmax_focal_kernel[(rows,)](
                x, x if y is None else y, x if q is None else q, x if w is None else w, _scale(den, dev), grad,
                loss, n_cls, s, ignore_index, float(label_smoothing), float(gamma), HAS_Q=q is not None,
                HAS_W=w is not None, DENSE=q is not None or label_smoothing > 0, G0=gamma == 0, BLOCK_C=block_c)
        ctx.save_for_backward(write_into_logits(logits, grad) if inplace_grad else grad)
        if reduction == "none" and den is None:
            return loss[:rows].view((n,) + tuple(spatial)).to(logits.dtype)
        return _finish(loss, den, logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple:
        (grad,) = ctx.saved_tensors
        return (scale_saved(grad, grad_out, 1),) + (None,) * 8


def triton_next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def softmax_focal(logits: Tensor, targets: Tensor, *, gamma: float, weight: Optional[Tensor], ignore_index: int,
                  label_smoothing: float, reduction: str, normalizer: Any, inplace_grad: bool = False) -> Tensor:
    return _TritonSoftmaxFocal.apply(logits, targets, weight, gamma, ignore_index, label_smoothing, reduction,
                                     normalizer, inplace_grad)
