"""The kernel backends' ops, registered with ``torch.library.custom_op`` so that ``torch.compile``
sees each kernel call as one opaque op (with a fake implementation for tracing and an autograd
formula), instead of breaking the graph. ``torch.library.opcheck`` tests them.

Every op returns ``(loss, grad)``: the (reduced) loss and its gradient with respect to the logits,
already divided by the reduction's denominator; backward multiplies ``grad`` by ``grad_output``.
The arguments that need no kernel (per-class vectors, the denominator) are prepared here with
ordinary tensor ops, which trace.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from focalkit import _reduce
from focalkit.backends.eager import compute_dtype, scale_saved

SIGMOID_SCHEMA = ("(Tensor logits, Tensor targets, Tensor? weight, Tensor apos, Tensor aneg, Tensor pw, "
                  "bool has_alpha, bool per_class, bool pt, float gamma, str reduction, Tensor? den) "
                  "-> (Tensor, Tensor)")
SOFTMAX_SCHEMA = ("(Tensor logits, Tensor targets, Tensor? weight, float gamma, int ignore_index, "
                  "float label_smoothing, str reduction, Tensor? den) -> (Tensor, Tensor)")


def _stores(reduction: str, den: Optional[Tensor]) -> bool:
    return reduction == "none" and den is None


def define(name: str, kind: str, impl: Callable[..., tuple[Tensor, Tensor]], device_types: Any = None) -> Any:
    """Register ``impl`` as ``focalkit::name`` with its fake and autograd formula."""
    schema = SIGMOID_SCHEMA if kind == "sigmoid" else SOFTMAX_SCHEMA
    op = torch.library.custom_op(f"focalkit::{name}", impl, mutates_args=(), device_types=device_types,
                                 schema=schema)
    n_args = len(schema.split("->")[0].split(","))

    def fake(logits: Tensor, targets: Tensor, *rest: Any) -> tuple[Tensor, Tensor]:
        reduction, den = rest[-2], rest[-1]
        if not _stores(reduction, den):
            shape: Any = ()
        else:
            shape = logits.shape if kind == "sigmoid" else logits.shape[:1] + logits.shape[2:]
        return logits.new_empty(shape), logits.new_empty(logits.shape)

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zeros the size of the logits for the unused output

    def backward(ctx: Any, grad_out: Tensor, _unused: Any) -> tuple:
        (grad,) = ctx.saved_tensors
        return (scale_saved(grad, grad_out, None if kind == "sigmoid" else 1),) + (None,) * (n_args - 1)

    op.register_fake(fake)
    op.register_autograd(backward, setup_context=setup_context)
    return op


def _class_vector(value: Any, n_cls: int, default: float, like: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(dtype=like.dtype, device=like.device).reshape(-1).expand(n_cls).contiguous()
    return torch.full((n_cls,), default if value is None else float(value), dtype=like.dtype, device=like.device)


def sigmoid(op: Any, impl: Callable, logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float,
            weight: Optional[Tensor], pos_weight: Optional[Tensor], soft_target: str, reduction: str,
            normalizer: Any, inplace_grad: bool = False) -> Tensor:
    like = torch.empty((), dtype=compute_dtype(logits.dtype), device=logits.device)
    n_cls = logits.shape[-1] if logits.dim() else 1
    apos = _class_vector(alpha, n_cls, 1.0, like)
    aneg = 1.0 - apos if alpha is not None else torch.ones_like(apos)
    pw = _class_vector(pos_weight, n_cls, 1.0, like)
    per_class = isinstance(alpha, Tensor) or (pos_weight is not None and pos_weight.numel() > 1)
    den = _reduce.denominator(reduction, normalizer, logits.numel(), like)
    args = (weight, apos, aneg, pw, alpha is not None, per_class, soft_target == "pt", float(gamma), reduction, den)
    return _call(op, impl, "sigmoid", logits, targets, args, inplace_grad)


def softmax_denominator(logits: Tensor, targets: Tensor, weight: Optional[Tensor], ignore_index: int,
                        reduction: str, normalizer: Any) -> Optional[Tensor]:
    like = torch.empty((), dtype=compute_dtype(logits.dtype), device=logits.device)
    count: Any = None  # the mean's denominator, only counted where it is used
    if reduction == "mean" and normalizer is None:
        if targets.is_floating_point():
            count = logits.numel() // logits.shape[1] if logits.shape[1] else logits.shape[0]
        else:
            w = None if weight is None else weight.to(like.dtype)
            count = _reduce.class_index_count(targets, ignore_index, w)
    return _reduce.denominator(reduction, normalizer, count, like)


class _KernelCall(torch.autograd.Function):
    """Outside ``torch.compile`` a kernel runs through this Function, not through its custom op: the
    op's dispatch costs tens of microseconds a call, and its first call imports ``torch._dynamo``
    (over a second). Same impl, same saved buffer, same backward."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, impl: Callable, args: tuple, unsqueeze: Optional[int],
                inplace: bool) -> Tensor:
        out, grad = impl(logits, targets, *args, inplace=True) if inplace else impl(logits, targets, *args)
        ctx.save_for_backward(grad)
        ctx.unsqueeze = unsqueeze
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple:
        (grad,) = ctx.saved_tensors
        return scale_saved(grad, grad_out, ctx.unsqueeze), None, None, None, None, None


def _call(op: Any, impl: Callable, kind: str, logits: Tensor, targets: Tensor, args: tuple,
          inplace: bool = False) -> Tensor:
    if torch.compiler.is_compiling():
        if inplace:
            raise RuntimeError("inplace_grad=True cannot run under torch.compile (it writes into an input); "
                               "use inplace_grad=False there")
        return op(logits, targets, *args)[0]
    return _KernelCall.apply(logits, targets, impl, args, None if kind == "sigmoid" else 1, inplace)


def softmax(op: Any, impl: Callable, logits: Tensor, targets: Tensor, *, gamma: float, weight: Optional[Tensor],
            ignore_index: int, label_smoothing: float, reduction: str, normalizer: Any,
            inplace_grad: bool = False) -> Tensor:
    den = softmax_denominator(logits, targets, weight, ignore_index, reduction, normalizer)
    args = (weight, float(gamma), ignore_index, float(label_smoothing), reduction, den)
    return _call(op, impl, "softmax", logits, targets, args, inplace_grad)
