"""The kernel backends' ops, registered with ``torch.library.custom_op`` so that ``torch.compile``
sees each kernel call as one opaque op (with a fake implementation for tracing and an autograd
formula), instead of breaking the graph. ``torch.library.opcheck`` tests them.

Every op returns ``(loss, grad)``: the (reduced) loss and its gradient with respect to the logits,
already divided by the reduction's denominator; backward multiplies ``grad`` by ``grad_output``.
The arguments that need no kernel (per-class vectors, the denominator) are prepared here with
ordinary tensor ops, which trace.

The ops are public (``torch.ops.focalkit.*``), so each one validates every argument's shape, dtype
and device itself (metadata only, no host synchronisation) before any pointer reaches a kernel:
:func:`check_sigmoid_args`, :func:`check_softmax_args`. Their gradients flow to the logits only, and
first order only; the losses of :mod:`focalkit` give the rest (``eager.LossFunction``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor

from focalkit import _checks, _reduce
from focalkit.backends import eager
from focalkit.backends.eager import compute_dtype, scale_saved

SIGMOID_SCHEMA = ("(Tensor logits, Tensor targets, Tensor? weight, Tensor apos, Tensor aneg, Tensor pw, "
                  "bool has_alpha, bool per_class, int form, float gamma, str reduction, Tensor? den) "
                  "-> (Tensor, Tensor)")
SOFTMAX_SCHEMA = ("(Tensor logits, Tensor targets, Tensor? weight, float gamma, int ignore_index, "
                  "float label_smoothing, str reduction, Tensor? den) -> (Tensor, Tensor)")
SOFT_FORMS = ("linear", "pt", "signed", "bce", "quality")  # the kernels' `form` argument: 0 .. 4
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _bad(op: str, name: str, condition: str, got: Any) -> None:
    raise ValueError(f"focalkit::{op}: expected `{name}` {condition}, got {got}.")


def _meta(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _check_common(op: str, logits: Tensor, reduction: str, den: Optional[Tensor]) -> None:
    if not isinstance(logits, Tensor) or logits.dtype not in _FLOATS:
        _bad(op, "logits", "to be a float16/bfloat16/float32/float64 tensor", _meta(logits))
    if reduction not in ("none", "mean", "sum"):
        _bad(op, "reduction", "to be 'none', 'mean' or 'sum'", repr(reduction))
    if den is not None and (den.numel() != 1 or den.device != logits.device or not den.is_floating_point()):
        _bad(op, "den", f"to be a 1-element float tensor on {logits.device}", _meta(den))


def _check_on(op: str, name: str, t: Tensor, logits: Tensor) -> None:
    if t.device != logits.device:
        _bad(op, name, f"on the logits' device {logits.device}", _meta(t))


def check_sigmoid_args(op: str, logits: Tensor, targets: Tensor, weight: Optional[Tensor], apos: Tensor,
                       aneg: Tensor, pw: Tensor, form: int, reduction: str, den: Optional[Tensor]) -> None:
    """Every argument of a sigmoid op, by metadata: no kernel reads or writes outside a tensor."""
    _check_common(op, logits, reduction, den)
    if form not in (0, 1, 2, 3, 4):
        _bad(op, "form", "to be 0 (linear), 1 (pt), 2 (signed), 3 (bce) or 4 (quality)", repr(form))
    n_cls = logits.shape[-1] if logits.dim() else 1
    _check_on(op, "targets", targets, logits)
    if targets.shape == logits.shape:
        if targets.dtype not in _FLOATS + _INTS + (torch.bool,):
            _bad(op, "targets", "to be real", _meta(targets))
    elif logits.dim() >= 2 and n_cls != 1 and targets.shape == logits.shape[:-1] and targets.dtype in _INTS:
        pass  # sparse class indices, range-checked by the kernel (no class: every index is background, 0)
    else:
        _bad(op, "targets", f"of shape {tuple(logits.shape)}, or integer class indices of shape "
             f"{tuple(logits.shape[:-1])}", _meta(targets))
    if weight is not None:
        _check_on(op, "weight", weight, logits)
        if weight.dtype not in _FLOATS or torch.broadcast_shapes(weight.shape, logits.shape) != logits.shape:
            _bad(op, "weight", f"to be a float tensor broadcastable to {tuple(logits.shape)}", _meta(weight))
    for name, t in (("apos", apos), ("aneg", aneg), ("pw", pw)):
        _check_on(op, name, t, logits)
        if t.dim() != 1 or t.shape[0] != n_cls or t.dtype != compute_dtype(logits.dtype):
            _bad(op, name, f"to have shape ({n_cls},) and dtype {compute_dtype(logits.dtype)}", _meta(t))


def check_softmax_args(op: str, logits: Tensor, targets: Tensor, weight: Optional[Tensor], reduction: str,
                       den: Optional[Tensor]) -> None:
    _check_common(op, logits, reduction, den)
    if logits.dim() < 2:
        _bad(op, "logits", "to have shape (N, C, d1, ...)", _meta(logits))
    _check_on(op, "targets", targets, logits)
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            _bad(op, "targets", f"as probabilities to have shape {tuple(logits.shape)}", _meta(targets))
    elif targets.dtype not in _INTS or targets.shape != logits.shape[:1] + logits.shape[2:]:
        _bad(op, "targets", f"to be integer class indices of shape {tuple(logits.shape[:1] + logits.shape[2:])}",
             _meta(targets))
    if weight is not None:
        _check_on(op, "weight", weight, logits)
        if weight.dim() != 1 or weight.shape[0] != logits.shape[1] or not weight.is_floating_point():
            _bad(op, "weight", f"to be a float tensor of shape ({logits.shape[1]},)", _meta(weight))


def raw(t: Optional[Tensor], dtype: Optional[torch.dtype] = None) -> Optional[Tensor]:
    """A contiguous tensor whose memory holds its values (neg / conj views resolved), for a raw pointer."""
    if t is None:
        return None
    if (dtype is None or t.dtype == dtype) and t.is_contiguous() and not t.is_neg() and not t.is_conj():
        return t.detach()  # already so: no op beyond the detach (host cost on small inputs)
    t = t.detach()
    if dtype is not None:
        t = t.to(dtype)
    return torch.resolve_conj(torch.resolve_neg(t)).contiguous()


def _stores(reduction: str, den: Optional[Tensor]) -> bool:
    return reduction == "none" and den is None


def define(name: str, kind: str, impl: Callable[..., tuple[Tensor, Tensor]], device_types: Any = None) -> Any:
    """Register ``impl`` as ``focalkit::name`` with its fake and autograd formula."""
    schema = SIGMOID_SCHEMA if kind == "sigmoid" else SOFTMAX_SCHEMA
    op = torch.library.custom_op(f"focalkit::{name}", impl, mutates_args=(), device_types=device_types,
                                 schema=schema)
    n_args = len(schema.split("->")[0].split(","))

    def fake(logits: Tensor, targets: Tensor, *rest: Any) -> tuple[Tensor, Tensor]:
        if kind == "sigmoid":
            check_sigmoid_args(name, logits, targets, *rest[:4], rest[6], rest[-2], rest[-1])
        else:
            check_softmax_args(name, logits, targets, rest[0], rest[-2], rest[-1])
        reduction, den = rest[-2], rest[-1]
        if not _stores(reduction, den):
            shape: Any = ()
        else:
            shape = logits.shape if kind == "sigmoid" else logits.shape[:1] + logits.shape[2:]
        dtype = _reduce.out_dtype(logits.dtype, not _stores(reduction, den))
        return logits.new_empty(shape, dtype=dtype), logits.new_empty(logits.shape)

    def setup_context(ctx: Any, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zeros the size of the logits for the unused output

    def backward(ctx: Any, grad_out: Tensor, _unused: Any) -> tuple:
        if any(ctx.needs_input_grad[1:]):
            raise RuntimeError(f"torch.ops.focalkit.{name} differentiates the logits only; call the focalkit "
                               "loss function for gradients of targets or weights")
        (grad,) = ctx.saved_tensors
        if grad_out is None:
            return (None,) * n_args
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            raise RuntimeError(f"torch.ops.focalkit.{name} has no second derivative; call the focalkit loss "
                               "function, whose backward supports create_graph=True")
        return (scale_saved(grad, grad_out, None if kind == "sigmoid" else 1),) + (None,) * (n_args - 1)

    op.register_fake(fake)
    op.register_autograd(backward, setup_context=setup_context)
    return op


def _class_vector(value: Any, n_cls: int, default: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(dtype=dtype, device=device).reshape(-1).expand(n_cls).contiguous()
    return torch.full((n_cls,), default if value is None else float(value), dtype=dtype, device=device)


def class_vectors(alpha: Any, pos_weight: Optional[Tensor], n_cls: int, dtype: torch.dtype,
                  device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The sigmoid kernels' per-class ``(alpha, 1 - alpha, pos_weight)``, C values each (1 without alpha)."""
    apos = _class_vector(alpha, n_cls, 1.0, dtype, device)
    aneg = 1.0 - apos if alpha is not None else torch.ones_like(apos)
    return apos, aneg, _class_vector(pos_weight, n_cls, 1.0, dtype, device)


def per_class(alpha: Any, pos_weight: Optional[Tensor]) -> bool:
    """Whether the class values differ by class (else one value serves every class)."""
    return isinstance(alpha, Tensor) or (pos_weight is not None and pos_weight.numel() > 1)


def host_path(logits: Tensor) -> bool:
    """Whether a CPU kernel runs here and now, on real memory: not traced (``torch.compile``, ``make_fx``,
    fake tensors), not under a ``torch.func`` transform. Its numbers (the denominator, one class value)
    then reach the kernel as host numbers with no tensor op to make them, and the arguments the loss has
    validated are not validated again by the registered op's checks (which guard ``torch.ops`` calls)."""
    return _checks.can_read(logits) and not _checks.transforming()


def class_vector_layout(value: Optional[Tensor], n_cls: int) -> bool:
    """Whether a broadcastable ``pos_weight`` is one value, or one per class along the last dim (what the
    kernels take); any other layout (per row, elementwise) runs eagerly."""
    if value is None or value.numel() == 1:
        return True
    return value.dim() >= 1 and value.shape[-1] == n_cls and value.numel() == n_cls


def _call(op: Any, run: eager.Run, logits: Tensor, targets: Tensor, args: tuple, aux: tuple) -> Tensor:
    if eager.composite(run, logits, aux):  # torch.func transforms; compile with targets needing a gradient
        return run.reference(logits, *aux)[0]
    if _checks.tracing(logits):  # torch.compile, make_fx, fake tensors, export: the registered op
        if run.inplace:
            raise RuntimeError("inplace_grad=True cannot run under torch.compile (it writes into an input); "
                               "use inplace_grad=False there")
        return op(logits, targets, *args)[0]
    return eager.apply(run, logits, *aux)


def sigmoid(op: Any, impl: Callable, logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float,
            weight: Optional[Tensor], pos_weight: Optional[Tensor], soft_target: str, reduction: str,
            normalizer: Any, inplace_grad: bool = False, sparse: bool = False,
            host_impl: Optional[Callable] = None) -> Tensor:
    """The loss through ``op`` (traced) or ``impl`` (its body, here and now). ``host_impl``: the CPU
    kernel's call with host numbers (:func:`host_path`): ``host_impl(logits, targets, weight, alpha,
    pos_weight, form, gamma, reduction, den, inplace=)`` with ``den`` a float or None."""
    ct = compute_dtype(logits.dtype)
    form = SOFT_FORMS.index(soft_target)
    ref = eager.sigmoid_reference(alpha=alpha, gamma=gamma, soft_target=soft_target, reduction=reduction,
                                  normalizer=normalizer, sparse=sparse)
    aux = eager.sigmoid_aux(targets, weight, pos_weight, alpha, normalizer)
    if host_impl is not None and host_path(logits):
        den_v = _reduce.host_denominator(reduction, normalizer, logits.numel(), ct)
        run = eager.Run("sigmoid_focal_loss", lambda lg, tg, *_: host_impl(
            lg, tg, weight, alpha, pos_weight, form, float(gamma), reduction, den_v, inplace=inplace_grad),
            ref, None, inplace_grad)
        return eager.apply(run, logits, *aux)
    like = torch.empty((), dtype=ct, device=logits.device)
    n_cls = logits.shape[-1] if logits.dim() else 1
    apos, aneg, pw = class_vectors(alpha, pos_weight, n_cls, ct, logits.device)
    den = _reduce.denominator(reduction, normalizer, logits.numel(), like)
    den = None if den is None else den.detach()
    args = (weight, apos, aneg, pw, alpha is not None, per_class(alpha, pos_weight), form, float(gamma), reduction, den)
    compute = (lambda lg, tg, *_: impl(lg, tg, *args, inplace=True)) if inplace_grad \
        else (lambda lg, tg, *_: impl(lg, tg, *args))
    run = eager.Run("sigmoid_focal_loss", compute, ref, None, inplace_grad)
    return _call(op, run, logits, targets, args, aux)


def _host_class_index_count(targets: Tensor, ignore_index: int, weight: Optional[Tensor], n_cls: int) -> Optional[float]:
    """:func:`focalkit._reduce.class_index_count` as a host number, read by the C kernel's scan in one
    pass where ``_checks.labels_in_range`` scans too (so the targets have passed the range check, and the
    positions counted are those not ignored); None elsewhere. ``weight``: None, or C values of the
    compute dtype (float32 / float64)."""
    if not _checks.can_read(targets) or (weight is not None and not _checks.can_read(weight)):
        return None  # traced, on a device, or a torch.func wrapper
    scan = _checks._label_scan(targets)
    if scan is None:
        return None
    lib, ignore_arg, n_threads = scan
    w = None if weight is None else raw(weight)
    count = lib.fk_labels_weight(targets.data_ptr(), None if w is None else w.data_ptr(),
                                 int(w is not None and w.dtype == torch.float64), targets.numel(), n_cls,
                                 *ignore_arg(ignore_index), n_threads)
    return None if count < 0 else count


def _softmax_count(logits: Tensor, targets: Tensor, weight: Optional[Tensor], ignore_index: int, reduction: str,
                   normalizer: Any, dtype: torch.dtype) -> Any:
    """The mean's denominator before its rule (:mod:`focalkit._reduce`): a host number where it is one
    or the C scan reads it, else a tensor; None where no mean is taken (only counted where it is used)."""
    if reduction != "mean" or normalizer is not None:
        return None
    if targets.is_floating_point():
        return logits.numel() // logits.shape[1] if logits.shape[1] else logits.shape[0]
    w = None if weight is None else weight.detach().to(dtype)
    count = _host_class_index_count(targets, ignore_index, w, logits.shape[1])
    return _reduce.class_index_count(targets, ignore_index, w) if count is None else count


def softmax_denominator(logits: Tensor, targets: Tensor, weight: Optional[Tensor], ignore_index: int,
                        reduction: str, normalizer: Any) -> Optional[Tensor]:
    like = torch.empty((), dtype=compute_dtype(logits.dtype), device=logits.device)
    count = _softmax_count(logits, targets, weight, ignore_index, reduction, normalizer, like.dtype)
    den = _reduce.denominator(reduction, normalizer, count, like)
    return None if den is None else den.detach()


def softmax(op: Any, impl: Callable, logits: Tensor, targets: Tensor, *, gamma: float, weight: Optional[Tensor],
            ignore_index: int, label_smoothing: float, reduction: str, normalizer: Any,
            inplace_grad: bool = False, host_impl: Optional[Callable] = None) -> Tensor:
    """As :func:`sigmoid`; ``host_impl`` takes the op's arguments with ``den`` a float or None."""
    w = None if weight is None else weight.detach()
    ref = eager.softmax_reference(gamma=gamma, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                  reduction=reduction, normalizer=normalizer)
    aux = (targets, weight, eager.tensor_or_none(normalizer))
    if host_impl is not None and host_path(logits):
        ct = compute_dtype(logits.dtype)
        count = _softmax_count(logits, targets, weight, ignore_index, reduction, normalizer, ct)
        den_v = _reduce.host_denominator(reduction, normalizer, None if count is None else float(count), ct)
        host_args = (w, float(gamma), ignore_index, float(label_smoothing), reduction, den_v)
        run = eager.Run("softmax_focal_loss", lambda lg, tg, *_: host_impl(lg, tg, *host_args, inplace=inplace_grad),
                        ref, 1, inplace_grad)
        return eager.apply(run, logits, *aux)
    den = softmax_denominator(logits, targets, weight, ignore_index, reduction, normalizer)
    args = (w, float(gamma), ignore_index, float(label_smoothing), reduction, den)
    compute = (lambda lg, tg, *_: impl(lg, tg, *args, inplace=True)) if inplace_grad \
        else (lambda lg, tg, *_: impl(lg, tg, *args))
    run = eager.Run("softmax_focal_loss", compute, ref, 1, inplace_grad)
    return _call(op, run, logits, targets, args, aux)
