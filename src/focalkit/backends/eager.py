"""Eager backend, the reference: closed-form loss and gradient in one forward pass with PyTorch ops;
backward only scales the saved gradient.

Every closed-form loss, on every backend, runs through one ``torch.autograd.Function``,
:class:`LossFunction`, described by a :class:`Run`: ``compute`` (the fast forward: a kernel, or the
eager formula without autograd) and ``reference`` (the eager formula of :mod:`focalkit.core` as
differentiable tensor ops). The first-order gradient with respect to the logits is the saved
closed-form one (one gradient-sized buffer; no recompute). Backward re-evaluates ``reference`` with
autograd only when it has to:

* ``create_graph=True`` (gradient penalties, Hessian-vector products, MAML): the gradient is then the
  reference's closed-form gradient as a differentiable expression, so its own derivative (the
  Hessian) is exact;
* targets, weights, ``pos_weight``, ``alpha`` or a ``normalizer`` tensor that require a gradient
  (distillation, IoU-aware targets): their gradients come from autograd through the reference loss.

float16 / bfloat16 logits are computed in float32 and the loss and gradient are returned in the
input dtype. With ``inplace_grad=True`` the logits are overwritten, so neither can be recomputed:
those cases are refused with an error that says so.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import torch
from torch import Tensor

from focalkit import _checks, _reduce
from focalkit.core import (
    distribution_focal,
    focal_star,
    sigmoid_focal_hard,
    sigmoid_focal_linear,
    sigmoid_focal_pt,
    sigmoid_focal_signed,
    sigmoid_focal_bce,
    sigmoid_focal_quality,
    softmax_focal_dense,
    softmax_focal_hard,
    varifocal,
)

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 / bfloat16 are computed in float32; float32 and float64 in themselves."""
    return torch.float32 if dtype in _HALF else dtype


def _cast(value: Any, dtype: torch.dtype) -> Any:
    return value.to(dtype) if isinstance(value, Tensor) else value


def tensor_or_none(value: Any) -> Optional[Tensor]:
    """Arguments that autograd must see are passed as tensors; numbers stay in the closures."""
    return value if isinstance(value, Tensor) else None


class Run(NamedTuple):
    """How one call computes: ``compute(logits, *aux) -> (out, grad)`` runs without autograd (a kernel or
    the eager formula); ``reference(logits, *aux) -> (out, grad)`` is the eager formula in
    differentiable ops. ``unsqueeze``: where ``grad_output`` of ``reduction="none"`` gets the class dim.

    ``grad_fn``: a backward kernel (the Triton backend). Then ``compute`` returns ``(out, state)``, a
    tuple of tensors that forward saves, and the first-order gradient is ``grad_fn(*state, grad_out)``,
    recomputed from the inputs with ``grad_output`` applied in the same pass: no gradient-sized buffer
    lives between forward and backward, and a second backward (``retain_graph``) computes afresh."""

    name: str
    compute: Callable[..., tuple[Tensor, Any]]
    reference: Callable[..., tuple[Tensor, Tensor]]
    unsqueeze: Optional[int] = None
    inplace: bool = False
    grad_fn: Optional[Callable[..., Tensor]] = None


def _is_plain(t: Tensor) -> bool:
    """A real tensor whose value can be read: not traced (compile, make_fx, fake or functional tensors)."""
    return (type(t) is Tensor and not _checks.tracing(t)
            and torch.utils._python_dispatch._get_current_dispatch_mode() is None)


def _is_one(grad_out: Tensor) -> bool:
    """Whether a plain CPU scalar ``grad_output`` is 1. A batched one (``is_grads_batched=True``,
    ``jacobian(vectorize=True)``: legacy batching shows no wrapper to Python) has no value to read."""
    try:
        return float(grad_out) == 1.0
    except RuntimeError:
        return False


def scale_saved(grad: Tensor, grad_out: Tensor, unsqueeze: Optional[int] = None) -> Tensor:
    """``grad * grad_out``, for every backend's backward.

    When ``grad_out`` is a CPU scalar equal to 1 (``loss.backward()``), the saved buffer itself is
    the answer: no second gradient-sized buffer is allocated. Autograd never writes into a returned
    gradient that is still saved (with ``retain_graph=True`` it copies before accumulating), so a
    second backward sees the same buffer.
    """
    if (grad_out.numel() == 1 and grad_out.device.type == "cpu" and _is_plain(grad_out)
            and not grad_out.requires_grad and grad_out.dim() <= grad.dim() and _is_one(grad_out)):
        return grad
    if unsqueeze is not None and grad_out.dim() > 0:
        grad_out = grad_out.unsqueeze(unsqueeze)
    if grad_out.dtype != grad.dtype and grad.dtype in _HALF:
        # a float32 grad_output of a float32 loss (GradScaler's 2^16 is inf in float16): multiplied in float32
        return (grad.float() * grad_out.float()).to(grad.dtype)
    return grad * grad_out.to(grad.dtype)


def write_into_logits(logits: Tensor, grad: Tensor) -> Tensor:
    """``inplace_grad=True``: the gradient replaces the logits in their own storage. The logits'
    version counter is bumped, so an op that saved them for its backward raises instead of reading
    gradients. Returns the (detached) logits, now holding the gradient."""
    out = logits.detach()
    if grad.data_ptr() != out.data_ptr() or grad.is_neg() != out.is_neg():
        out.copy_(grad)
    torch.autograd.graph.increment_version(logits)
    return out


_INPLACE_REFUSED = ("inplace_grad=True overwrote the logits with their gradient, so {what} cannot be computed; "
                    "call the loss with inplace_grad=False")


class LossFunction(torch.autograd.Function):
    """``apply(run, logits, *aux)``: see the module docstring."""

    @staticmethod
    def forward(ctx: Any, run: Run, logits: Tensor, *aux: Optional[Tensor]) -> Tensor:
        out, grad = run.compute(logits, *aux)
        if torch.compiler.is_compiling():
            # torch 2.11's Dynamo gives the gradient of an output that is the same tensor as an intermediate
            # (a dtype cast that changes nothing, ``out.to(out.dtype)``) to the wrong output: the logits got
            # zero gradients (pytorch/pytorch#180642, fixed in 2.12). A fresh output avoids it; traced only.
            out = out.clone()
        ctx.n_state = 0
        if run.grad_fn is not None:  # grad is the backward kernel's state
            ctx.n_state = len(grad)
            ctx.save_for_backward(*grad, logits, *aux)
        elif run.inplace:
            grad = write_into_logits(logits, grad)
            ctx.save_for_backward(grad)
        else:
            ctx.save_for_backward(grad, logits, *aux)
        ctx.run = run
        ctx.set_materialize_grads(False)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Optional[Tensor]) -> tuple:
        run: Run = ctx.run
        n_aux = len(ctx.needs_input_grad) - 2
        if grad_out is None:
            return (None,) * (n_aux + 2)
        saved = ctx.saved_tensors
        higher = torch.is_grad_enabled()  # create_graph=True
        aux_need = ctx.needs_input_grad[2:]
        if run.grad_fn is not None:
            state, saved = saved[:ctx.n_state], (None,) + saved[ctx.n_state:]
            if not higher and not any(aux_need):
                return (None, run.grad_fn(*state, grad_out)) + (None,) * n_aux
            grad = None
        else:
            grad = saved[0]
            if not higher and not any(aux_need):
                return (None, scale_saved(grad, grad_out, run.unsqueeze)) + (None,) * n_aux
        if run.inplace:
            what = "second-order gradients" if higher else "gradients of targets or weights"
            raise RuntimeError(f"{run.name}: " + _INPLACE_REFUSED.format(what=what))
        logits, aux = saved[1], list(saved[2:])
        with torch.enable_grad():
            if not higher:
                logits = logits.detach()
                aux = [None if a is None else a.detach().requires_grad_(need) for a, need in zip(aux, aux_need)]
            out, ref_grad = run.reference(logits, *aux)
            wanted = [a for a, need in zip(aux, aux_need) if need]
            aux_grads: Any = ()
            if wanted and out.requires_grad:
                aux_grads = torch.autograd.grad(out, wanted, grad_out, create_graph=higher, allow_unused=True)
            elif wanted:
                aux_grads = (None,) * len(wanted)
        d_logits = None
        if ctx.needs_input_grad[1]:
            if not higher and run.grad_fn is not None:
                d_logits = run.grad_fn(*state, grad_out)
            else:
                d_logits = scale_saved(ref_grad if higher else grad, grad_out, run.unsqueeze)
        it = iter(aux_grads)
        return (None, d_logits) + tuple(next(it) if need else None for need in aux_need)


def composite(run: Run, logits: Tensor, aux: tuple) -> bool:
    """Whether this call runs as the reference's plain differentiable ops, outside :class:`LossFunction`:
    under a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ``jvp``: they compose with plain
    ops, not with a Function that computes its gradient in the forward pass), and under
    ``torch.compile`` when targets or weights need a gradient (autograd differentiates the traced ops)."""
    if _checks.transforming():
        if run.inplace:
            raise RuntimeError(f"{run.name}: inplace_grad=True cannot run under torch.func transforms (grad, vmap, "
                               "jacrev, jvp): it writes into an input; use inplace_grad=False there")
        return True
    return (torch.compiler.is_compiling() and torch.is_grad_enabled()
            and any(a is not None and a.requires_grad for a in aux))


def apply(run: Run, logits: Tensor, *aux: Optional[Tensor]) -> Tensor:
    """Run a closed-form loss (or its reference composite where :func:`composite` says so)."""
    if composite(run, logits, aux):
        return run.reference(logits, *aux)[0]
    return LossFunction.apply(run, logits, *aux)


def eager_run(name: str, reference: Callable, inplace: bool = False, unsqueeze: Optional[int] = None) -> Run:
    """A run whose fast forward is the reference itself (under no_grad, inside the Function)."""
    return Run(name, reference, reference, unsqueeze, inplace)


# ---- elementwise (sigmoid-family) losses --------------------------------------------------------

def _elementwise(logits: Tensor, targets: Tensor, weight: Optional[Tensor], normalizer: Any, terms: Callable,
                 reduction: str) -> tuple[Tensor, Tensor]:
    x = logits.to(compute_dtype(logits.dtype))
    y = targets.to(x.dtype) if targets.shape == logits.shape else targets  # else class indices
    loss, grad = terms(x, y)[:2]
    if weight is not None:
        w = weight.to(x.dtype)
        loss, grad = loss * w, grad * w
    den = _reduce.denominator(reduction, normalizer, loss.numel(), loss)
    out, grad = _reduce.reduce(loss, grad, reduction, den)
    return out.to(_reduce.out_dtype(logits.dtype, den is not None or reduction != "none")), grad.to(logits.dtype)


def sigmoid_reference(*, alpha: Any, gamma: float, soft_target: str, reduction: str, normalizer: Any,
                      sparse: bool = False) -> Callable:
    """``reference(logits, targets, weight, pos_weight, alpha, normalizer)`` for sigmoid focal loss;
    the tensor arguments given there replace the numbers given here."""

    def reference(logits: Tensor, targets: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor],
                  alpha_t: Optional[Tensor], norm_t: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        ct = compute_dtype(logits.dtype)
        a = _cast(alpha if alpha_t is None else alpha_t, ct)
        pw = _cast(pos_weight, ct)
        if sparse:
            terms = partial(_sparse_terms, gamma=gamma, alpha=a, pos_weight=pw)
        else:
            core = {"pt": sigmoid_focal_pt, "signed": sigmoid_focal_signed, "bce": sigmoid_focal_bce,
                    "quality": sigmoid_focal_quality}.get(soft_target, sigmoid_focal_linear)
            terms = partial(core, gamma=gamma, alpha=a, pos_weight=pw)
        return _elementwise(logits, targets, weight, normalizer if norm_t is None else norm_t, terms, reduction)

    return reference


def sigmoid_aux(targets: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor], alpha: Any,
                normalizer: Any) -> tuple:
    return targets, weight, pos_weight, tensor_or_none(alpha), tensor_or_none(normalizer)


def sigmoid_focal(logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float, weight: Optional[Tensor],
                  pos_weight: Optional[Tensor], soft_target: str, reduction: str, normalizer: Any,
                  inplace_grad: bool = False, sparse: bool = False) -> Tensor:
    ref = sigmoid_reference(alpha=alpha, gamma=gamma, soft_target=soft_target, reduction=reduction,
                            normalizer=normalizer, sparse=sparse)
    run = eager_run("sigmoid_focal_loss", ref, inplace_grad)
    return apply(run, logits, *sigmoid_aux(targets, weight, pos_weight, alpha, normalizer))


def _sparse_terms(x: Tensor, labels: Tensor, *, gamma: float, alpha: Any, pos_weight: Any):
    """Sigmoid focal loss for class indices (background = C) without a one-hot tensor: the
    negative-label form everywhere, then each row's positive entry replaced by the positive form."""
    n_cls = x.shape[-1]
    loss, grad, _ = sigmoid_focal_hard(x, 0.0, gamma, alpha)
    if n_cls == 0:  # no class, no element: every row is background (its index 0 = C), with nothing to compute
        return loss, grad
    loss2, grad2 = loss.reshape(-1, n_cls), grad.reshape(-1, n_cls)
    lab = labels.reshape(-1)
    bad = (lab < 0) | (lab > n_cls)  # NaN rows (the rule where labels are not read first, docs/api.md)
    pos = (lab < n_cls) & ~bad
    idx = torch.where(pos, lab, torch.zeros_like(lab)).long().unsqueeze(1)
    a = alpha[idx.squeeze(1)] if isinstance(alpha, Tensor) else alpha
    l_pos, g_pos, _ = sigmoid_focal_hard(x.reshape(-1, n_cls).gather(1, idx).squeeze(1), 1.0, gamma, a)
    if pos_weight is not None:
        pw = pos_weight.expand(x.shape).reshape(-1, n_cls).gather(1, idx).squeeze(1)
        l_pos, g_pos = l_pos * pw, g_pos * pw
    loss2 = loss2.scatter(1, idx, torch.where(pos, l_pos, loss2.gather(1, idx).squeeze(1)).unsqueeze(1))
    grad2 = grad2.scatter(1, idx, torch.where(pos, g_pos, grad2.gather(1, idx).squeeze(1)).unsqueeze(1))
    loss2 = torch.where(bad.unsqueeze(1), float("nan"), loss2)
    grad2 = torch.where(bad.unsqueeze(1), float("nan"), grad2)
    return loss2.view(x.shape), grad2.view(x.shape)


def focal_loss_star(logits: Tensor, targets: Tensor, *, gamma: float, beta: float, alpha: Any,
                    weight: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    def reference(logits, targets, weight, alpha_t, norm_t):
        ct = compute_dtype(logits.dtype)
        terms = partial(focal_star, gamma=gamma, beta=beta, alpha=_cast(alpha if alpha_t is None else alpha_t, ct))
        return _elementwise(logits, targets, weight, normalizer if norm_t is None else norm_t, terms, reduction)

    return apply(eager_run("focal_loss_star", reference), logits, targets, weight, tensor_or_none(alpha),
                 tensor_or_none(normalizer))


def varifocal_reference(*, alpha: float, gamma: float, iou_weighted: bool, reduction: str,
                        normalizer: Any) -> Callable:
    """``reference(logits, targets, weight, labels, normalizer)`` for Varifocal Loss."""

    def reference(logits: Tensor, targets: Tensor, weight: Optional[Tensor], labels: Optional[Tensor],
                  norm_t: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        terms = partial(varifocal, alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, labels=labels)
        return _elementwise(logits, targets, weight, normalizer if norm_t is None else norm_t, terms, reduction)

    return reference


def vfl_aux(targets: Tensor, weight: Optional[Tensor], labels: Optional[Tensor], normalizer: Any) -> tuple:
    return targets, weight, labels, tensor_or_none(normalizer)


def varifocal_loss(logits: Tensor, targets: Tensor, *, alpha: float, gamma: float, iou_weighted: bool,
                   weight: Optional[Tensor], labels: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    ref = varifocal_reference(alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction,
                              normalizer=normalizer)
    return apply(eager_run("varifocal_loss", ref), logits, *vfl_aux(targets, weight, labels, normalizer))


def dfl_reference(*, reduction: str, normalizer: Any) -> Callable:
    """``reference(logits, targets, weight, normalizer)`` for Distribution Focal Loss (logits (N, n+1))."""

    def reference(logits: Tensor, targets: Tensor, weight: Optional[Tensor],
                  norm_t: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        z = logits.to(compute_dtype(logits.dtype))
        loss, grad = distribution_focal(z, targets.to(z.dtype))
        if weight is not None:
            w = weight.to(z.dtype).expand(loss.shape)
            loss, grad = loss * w, grad * w.unsqueeze(1)
        den = _reduce.denominator(reduction, normalizer if norm_t is None else norm_t, loss.numel(), loss)
        out, grad = _reduce.reduce(loss, grad, reduction, den)
        return out.to(_reduce.out_dtype(logits.dtype, den is not None or reduction != "none")), grad.to(logits.dtype)

    return reference


def distribution_focal_loss(logits: Tensor, targets: Tensor, *, weight: Optional[Tensor], reduction: str,
                            normalizer: Any) -> Tensor:
    run = eager_run("distribution_focal_loss", dfl_reference(reduction=reduction, normalizer=normalizer), unsqueeze=1)
    return apply(run, logits, targets, weight, tensor_or_none(normalizer))


# ---- softmax focal loss -------------------------------------------------------------------------

def softmax_reference(*, gamma: Any, ignore_index: int, label_smoothing: float, reduction: str,
                      normalizer: Any) -> Callable:
    """``reference(logits, targets, weight, normalizer)`` for softmax focal loss."""

    def reference(logits: Tensor, targets: Tensor, weight: Optional[Tensor],
                  norm_t: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        z = logits.to(compute_dtype(logits.dtype))
        n_cls = z.shape[1]
        g = gamma
        # Per-class weight laid out along dim 1, broadcastable against z.
        w_cls = None if weight is None else weight.to(z.dtype).view((1, n_cls) + (1,) * (z.dim() - 2))
        if targets.is_floating_point():
            q = targets.to(z.dtype)
            if label_smoothing > 0:
                q = q * (1.0 - label_smoothing) + label_smoothing / n_cls
            coef = q if w_cls is None else q * w_cls
            loss, grad = softmax_focal_dense(z, coef, g)
            count: Any = loss.numel()
        else:
            valid = targets != ignore_index
            # an index outside [0, C) that is not ignored: NaN at its position (the rule on devices
            # whose values are not read before the call, docs/api.md); never read as a class
            bad = valid & ((targets < 0) | (targets >= n_cls))
            valid = valid & ~bad
            y = torch.where(valid, targets, torch.zeros_like(targets))
            if callable(g):  # a per-sample schedule of the (constant) target probability, FLSD-53
                zd = z.detach()
                p_y = torch.exp(zd.gather(1, y.unsqueeze(1)) - torch.logsumexp(zd, 1, keepdim=True))
                g = g(p_y)
                g = g.detach() if isinstance(g, Tensor) else torch.as_tensor(g, dtype=z.dtype)
                if g.dim() == 0 and g.device.type == "cpu" and z.device.type != "cpu" and not _checks.tracing(g):
                    g = _reduce.host_scalar(float(g), z)  # a fill, not a copy from the host
                g = g.to(device=z.device, dtype=z.dtype)
            w_y = valid.to(z.dtype) if weight is None else weight.to(z.dtype)[y] * valid
            if label_smoothing == 0:
                loss, grad = softmax_focal_hard(z, y, g, w_y)
            else:
                # q_k = (1 - eps) [k = y] + eps / C, times the class weight w_k; 0 on ignored rows.
                base = torch.full_like(z, label_smoothing / n_cls) if w_cls is None \
                    else (label_smoothing / n_cls) * w_cls.expand_as(z)
                coef = base * valid.unsqueeze(1)
                coef = coef.scatter_add(1, y.unsqueeze(1), ((1.0 - label_smoothing) * w_y).unsqueeze(1))
                loss, grad = softmax_focal_dense(z, coef, g)
            # Ignored rows give exactly 0, whatever their logits hold (NaN included); bad ones NaN.
            loss = torch.where(bad, float("nan"), torch.where(valid, loss, torch.zeros_like(loss)))
            grad = torch.where(bad.unsqueeze(1), float("nan"),
                               torch.where(valid.unsqueeze(1), grad, torch.zeros_like(grad)))
            count = w_y.sum()
        den = _reduce.denominator(reduction, normalizer if norm_t is None else norm_t, count, loss)
        out, grad = _reduce.reduce(loss, grad, reduction, den)
        reduced = den is not None or reduction != "none"
        return out.to(_reduce.out_dtype(logits.dtype, reduced)), grad.to(logits.dtype)

    return reference


def softmax_focal(logits: Tensor, targets: Tensor, *, gamma: Any, weight: Optional[Tensor], ignore_index: int,
                  label_smoothing: float, reduction: str, normalizer: Any, inplace_grad: bool = False) -> Tensor:
    ref = softmax_reference(gamma=gamma, ignore_index=ignore_index, label_smoothing=label_smoothing,
                            reduction=reduction, normalizer=normalizer)
    run = eager_run("softmax_focal_loss", ref, inplace_grad, unsqueeze=1)
    return apply(run, logits, targets, weight, tensor_or_none(normalizer))
