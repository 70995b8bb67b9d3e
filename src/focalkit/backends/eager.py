"""Eager backend: closed-form loss and gradient in one forward pass, backward scales by grad_output.

Memory: each op saves exactly one tensor for backward, the gradient of the (reduced) loss with
respect to the logits, in the logits' dtype. float16 / bfloat16 logits are computed in float32 and
the loss and gradient are returned in the input dtype.

Gradients flow to the logits only: targets, weights, ``alpha`` and ``normalizer`` are constants.
The backward is not itself differentiable (``once_differentiable``); the closed-form second
derivatives are in :mod:`focalkit.core` for those who need them.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from focalkit import _reduce
from focalkit.core import (
    focal_star,
    quality_focal,
    sigmoid_focal_hard,
    sigmoid_focal_linear,
    sigmoid_focal_pt,
    softmax_focal_dense,
    softmax_focal_hard,
)

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 / bfloat16 are computed in float32; float32 and float64 in themselves."""
    return torch.float32 if dtype in _HALF else dtype


def _cast(value: Any, dtype: torch.dtype) -> Any:
    return value.to(dtype) if isinstance(value, Tensor) else value


class _ClosedForm(torch.autograd.Function):
    """Base: ``forward`` saves d(output)/d(logits); ``backward`` multiplies it by grad_output."""

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple:
        (grad,) = ctx.saved_tensors
        return (scale_saved(grad, grad_out, ctx.unsqueeze),) + (None,) * ctx.n_extra


def _is_plain(t: Tensor) -> bool:
    """A real tensor whose value can be read: not traced (compile, make_fx, fake or functional tensors)."""
    return (type(t) is Tensor and not torch.compiler.is_compiling()
            and torch.utils._python_dispatch._get_current_dispatch_mode() is None)


def scale_saved(grad: Tensor, grad_out: Tensor, unsqueeze: Optional[int] = None) -> Tensor:
    """``grad * grad_out``, for every backend's backward.

    When ``grad_out`` is a CPU scalar equal to 1 (``loss.backward()``), the saved buffer itself is
    the answer: no second gradient-sized buffer is allocated. Autograd never writes into a returned
    gradient that is still saved (with ``retain_graph=True`` it copies before accumulating), so a
    second backward sees the same buffer.
    """
    if (grad_out.numel() == 1 and grad_out.device.type == "cpu" and _is_plain(grad_out)
            and grad_out.dim() <= grad.dim() and float(grad_out) == 1.0):
        return grad
    if unsqueeze is not None and grad_out.dim() > 0:
        grad_out = grad_out.unsqueeze(unsqueeze)
    return grad * grad_out.to(grad.dtype)


class _Elementwise(_ClosedForm):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, weight: Optional[Tensor],
                fn: Callable, reduction: str, normalizer: Any, inplace_grad: bool = False) -> Tensor:
        x = logits.to(compute_dtype(logits.dtype))
        y = targets.to(x.dtype) if targets.shape == logits.shape else targets  # else class indices
        terms = fn(x, y)
        loss, grad = terms[0], terms[1]
        if weight is not None:
            w = weight.to(x.dtype)
            loss, grad = loss * w, grad * w
        den = _reduce.denominator(reduction, normalizer, loss.numel(), loss)
        out, grad = _reduce.reduce(loss, grad, reduction, den)
        ctx.save_for_backward(write_into_logits(logits, grad) if inplace_grad else grad.to(logits.dtype))
        ctx.unsqueeze, ctx.n_extra = None, 6
        return out.to(logits.dtype)


def sigmoid_focal(logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float, weight: Optional[Tensor],
                  pos_weight: Optional[Tensor], soft_target: str, reduction: str, normalizer: Any,
                  inplace_grad: bool = False) -> Tensor:
    ct = compute_dtype(logits.dtype)
    core = sigmoid_focal_pt if soft_target == "pt" else sigmoid_focal_linear
    fn = partial(core, gamma=gamma, alpha=_cast(alpha, ct), pos_weight=_cast(pos_weight, ct))
    return _Elementwise.apply(logits, targets, weight, fn, reduction, normalizer, inplace_grad)


def _sparse_terms(x: Tensor, labels: Tensor, *, gamma: float, alpha: Any, pos_weight: Any):
    """Sigmoid focal loss for class indices (background = C) without a one-hot tensor: the
    negative-label form everywhere, then each row's positive entry replaced by the positive form."""
    n_cls = x.shape[-1]
    loss, grad, _ = sigmoid_focal_hard(x, 0.0, gamma, alpha)
    loss2, grad2 = loss.reshape(-1, n_cls), grad.reshape(-1, n_cls)
    lab = labels.reshape(-1)
    pos = lab < n_cls
    idx = torch.where(pos, lab, torch.zeros_like(lab)).long().unsqueeze(1)
    a = alpha[idx.squeeze(1)] if isinstance(alpha, Tensor) else alpha
    l_pos, g_pos, _ = sigmoid_focal_hard(x.reshape(-1, n_cls).gather(1, idx).squeeze(1), 1.0, gamma, a)
    if pos_weight is not None:
        pw = pos_weight.expand(x.shape).reshape(-1, n_cls).gather(1, idx).squeeze(1)
        l_pos, g_pos = l_pos * pw, g_pos * pw
    for full, new in ((loss2, l_pos), (grad2, g_pos)):
        full.scatter_(1, idx, torch.where(pos, new, full.gather(1, idx).squeeze(1)).unsqueeze(1))
    return loss, grad


def sigmoid_focal_sparse(logits: Tensor, labels: Tensor, *, alpha: Any, gamma: float, weight: Optional[Tensor],
                         pos_weight: Optional[Tensor], reduction: str, normalizer: Any,
                         inplace_grad: bool = False) -> Tensor:
    ct = compute_dtype(logits.dtype)
    fn = partial(_sparse_terms, gamma=gamma, alpha=_cast(alpha, ct), pos_weight=_cast(pos_weight, ct))
    return _Elementwise.apply(logits, labels, weight, fn, reduction, normalizer, inplace_grad)


def focal_loss_star(logits: Tensor, targets: Tensor, *, gamma: float, beta: float, alpha: Any,
                    weight: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    ct = compute_dtype(logits.dtype)
    fn = partial(focal_star, gamma=gamma, beta=beta, alpha=_cast(alpha, ct))
    return _Elementwise.apply(logits, targets, weight, fn, reduction, normalizer)


def quality_focal_loss(logits: Tensor, targets: Tensor, *, beta: float, alpha: Any, weight: Optional[Tensor],
                       pos_weight: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    ct = compute_dtype(logits.dtype)
    fn = partial(quality_focal, beta=beta, alpha=_cast(alpha, ct), pos_weight=_cast(pos_weight, ct))
    return _Elementwise.apply(logits, targets, weight, fn, reduction, normalizer)


class _SoftmaxFocal(_ClosedForm):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float,
                ignore_index: int, label_smoothing: float, reduction: str, normalizer: Any,
                inplace_grad: bool) -> Tensor:
        z = logits.to(compute_dtype(logits.dtype))
        n_cls = z.shape[1]
        # Per-class weight laid out along dim 1, broadcastable against z.
        w_cls = None if weight is None else weight.to(z.dtype).view((1, n_cls) + (1,) * (z.dim() - 2))
        if targets.is_floating_point():
            q = targets.to(z.dtype)
            if label_smoothing > 0:
                q = q * (1.0 - label_smoothing) + label_smoothing / n_cls
            coef = q if w_cls is None else q * w_cls
            loss, grad = softmax_focal_dense(z, coef, gamma)
            count: Any = loss.numel()
        else:
            valid = targets != ignore_index
            y = torch.where(valid, targets, torch.zeros_like(targets))
            if callable(gamma):  # a per-sample schedule of the (constant) target probability, FLSD-53
                p_y = torch.exp(z.gather(1, y.unsqueeze(1)) - torch.logsumexp(z, 1, keepdim=True))
                gamma = torch.as_tensor(gamma(p_y), dtype=z.dtype, device=z.device)
            w_y = valid.to(z.dtype) if weight is None else weight.to(z.dtype)[y] * valid
            if label_smoothing == 0:
                loss, grad = softmax_focal_hard(z, y, gamma, w_y)
            else:
                # q_k = (1 - eps) [k = y] + eps / C, times the class weight w_k; 0 on ignored rows.
                base = torch.full_like(z, label_smoothing / n_cls) if w_cls is None \
                    else (label_smoothing / n_cls) * w_cls.expand_as(z)
                coef = base * valid.unsqueeze(1)
                coef.scatter_add_(1, y.unsqueeze(1), ((1.0 - label_smoothing) * w_y).unsqueeze(1))
                loss, grad = softmax_focal_dense(z, coef, gamma)
            # Ignored rows give exactly 0, whatever their logits hold (NaN included).
            loss = torch.where(valid, loss, torch.zeros_like(loss))
            grad = torch.where(valid.unsqueeze(1), grad, torch.zeros_like(grad))
            count = w_y.sum()
        den = _reduce.denominator(reduction, normalizer, count, loss)
        out, grad = _reduce.reduce(loss, grad, reduction, den)
        ctx.save_for_backward(write_into_logits(logits, grad) if inplace_grad else grad.to(logits.dtype))
        ctx.unsqueeze, ctx.n_extra = 1, 8
        return out.to(logits.dtype)


def write_into_logits(logits: Tensor, grad: Tensor) -> Tensor:
    """``inplace_grad=True``: the gradient replaces the logits in their own storage. The logits'
    version counter is bumped, so an op that saved them for its backward raises instead of reading
    gradients. Returns the (detached) logits, now holding the gradient."""
    out = logits.detach()
    if grad.data_ptr() != out.data_ptr():
        out.copy_(grad)
    torch.autograd.graph.increment_version(logits)
    return out


def softmax_focal(logits: Tensor, targets: Tensor, *, gamma: float, weight: Optional[Tensor], ignore_index: int,
                  label_smoothing: float, reduction: str, normalizer: Any, inplace_grad: bool = False) -> Tensor:
    return _SoftmaxFocal.apply(logits, targets, weight, gamma, ignore_index, label_smoothing, reduction, normalizer,
                               inplace_grad)
