"""Native CPU backend: the C kernel of ``focalkit/_native/focal.c`` through a small C ABI (ctypes).

One pass computes the loss (or its float64 sum) and the gradient; backward only scales the saved
gradient, as in the eager backend, which it reproduces. float32 and float64 run natively;
float16 / bfloat16 are converted to float32 and back. OpenMP uses ``torch.get_num_threads()``.

Covered: :func:`focalkit.sigmoid_focal_loss` with dense targets in the ``"linear"`` soft form, and in
the ``"pt"`` form when the targets are 0/1 (where the two forms are equal), ``alpha`` off / scalar /
per class, ``pos_weight`` per class (shape ``(C,)``), an elementwise ``weight``, every reduction and
``normalizer``. Anything else (other ``pos_weight`` layouts) is reported by :func:`unsupported` and runs on the eager
backend under ``backend="auto"``. Also here: the softmax focal loss, Varifocal Loss and Distribution
Focal Loss (:func:`varifocal_loss`, :func:`distribution_focal_loss`).
"""

from __future__ import annotations

import ctypes
import math
from functools import partial
from typing import Any, Optional

import torch
from torch import Tensor

from focalkit import _native, _reduce
from focalkit.backends import _ops, eager
from focalkit.backends._ops import raw
from focalkit.backends.eager import compute_dtype

_HALF_BLOCK = 1 << 22  # float16 / bfloat16 are converted to float32 this many elements at a time

# Loaded once, at import, by the torch-free loader (also what the GBDT adapters call): ``available()``
# then only reads a constant, which torch.compile can trace even when it holds the first call.
_LIB, _ERROR = _native.LIB, _native.ERROR


def available() -> bool:
    return _LIB is not None


def why_unavailable() -> str:
    return _ERROR or ""


def _require() -> ctypes.CDLL:
    if _LIB is None:
        raise RuntimeError(f"the native backend cannot run: {_ERROR}")
    return _LIB


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _has_soft_targets(y: Tensor, ct: torch.dtype) -> bool:
    """Any target outside {0, 1}? One vectorised read-only pass in C (``y`` contiguous, of dtype ``ct``)."""
    fn = _LIB.fk_count_soft_f64 if ct == torch.float64 else _LIB.fk_count_soft_f32
    return fn(y.data_ptr(), y.numel(), torch.get_num_threads()) > 0


def unsupported(logits: Tensor, pos_weight: Optional[Tensor]) -> Optional[str]:
    """Why the native sigmoid kernel cannot take these inputs, or None if it can. Decided by shapes
    and dtypes: weights and targets of any layout are made contiguous; ``pos_weight`` must be one
    value or one per class along the last dimension."""
    if logits.device.type != "cpu":
        return f"it runs on the CPU, logits are on {logits.device}"
    if logits.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return f"dtype {logits.dtype} is not supported"
    if not _ops.class_vector_layout(pos_weight, logits.shape[-1] if logits.dim() else 1):
        return (f"pos_weight of shape {tuple(pos_weight.shape)} is neither one value nor one per class "
                "(shape (C,)) for the native kernel")
    return None


def _inverse(den: Optional[float]) -> float:
    """The kernels' scale, 1 / denominator (1 without one): inf where a normalizer rounded to 0 in the
    compute dtype (below float32's range), as eager's division by it."""
    return 1.0 if den is None else (1.0 / den if den else math.inf)


def _reduced(total: float, den: Optional[float], dtype: torch.dtype) -> Tensor:
    """The reduced loss, ``total / den`` (``total`` without one) with IEEE's x / 0, as a 0-dim tensor of
    the loss's dtype."""
    if den is None or den:
        value = total if den is None else total / den
    else:  # x / 0 as IEEE (eager's float32 division by a normalizer that rounded to 0)
        value = math.nan if total == 0 or total != total else math.copysign(math.inf, total)
    return torch.scalar_tensor(value, dtype=_reduce.out_dtype(dtype, True))


def _sigmoid_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], apos: Tensor, aneg: Tensor, pw: Tensor,
                  has_alpha: bool, per_class: bool, form: int, gamma: float, reduction: str,
                  den: Optional[Tensor], inplace: bool = False) -> tuple[Tensor, Tensor]:
    """Dense targets take the "linear" loop, which is also the "pt" and "signed" forms for 0/1 targets;
    soft targets in those forms (found by a read-only pre-scan) take their own loop. Class-index targets
    (shape ``logits.shape[:-1]``, C = background) take the sparse loop: no one-hot tensor."""
    _ops.check_sigmoid_args("native_sigmoid_focal", logits, targets, weight, apos, aneg, pw, form, reduction, den)
    if logits.device.type != "cpu":
        raise ValueError(f"focalkit::native_sigmoid_focal: expected CPU tensors, got logits on {logits.device}")
    apos, aneg, pw = raw(apos), raw(aneg), raw(pw)
    return _sigmoid_run(logits, targets, weight, (apos.data_ptr(), aneg.data_ptr(), pw.data_ptr()), per_class,
                        form, gamma, reduction, None if den is None else float(den), inplace)


def _sigmoid_host(logits: Tensor, targets: Tensor, weight: Optional[Tensor], alpha: Any, pos_weight: Optional[Tensor],
                  form: int, gamma: float, reduction: str, den: Optional[float],
                  inplace: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`_sigmoid_impl` where the kernel runs here and now (``_ops.host_path``), on the arguments the
    loss has validated: one class value for every class of dense targets is three host numbers, not three
    tensors (the sparse loop reads C values of each, as per-class values do)."""
    ct = compute_dtype(logits.dtype)
    if _ops.per_class(alpha, pos_weight) or targets.shape != logits.shape:
        vectors = [raw(v) for v in _ops.class_vectors(alpha, pos_weight, logits.shape[-1], ct, logits.device)]
        return _sigmoid_run(logits, targets, weight, tuple(v.data_ptr() for v in vectors), True, form, gamma,
                            reduction, den, inplace)  # raw: a neg view's memory does not hold its values
    c_type = ctypes.c_double if ct == torch.float64 else ctypes.c_float
    apos = c_type(1.0 if alpha is None else float(alpha))  # rounded to the compute dtype, as a tensor of it
    aneg = c_type(1.0 - apos.value if alpha is not None else 1.0)  # exact in double, then rounded once: as in ct
    pw = c_type(1.0 if pos_weight is None else float(pos_weight))
    return _sigmoid_run(logits, targets, weight, tuple(ctypes.addressof(v) for v in (apos, aneg, pw)), False, form,
                        gamma, reduction, den, inplace)


def _sigmoid_run(logits: Tensor, targets: Tensor, weight: Optional[Tensor], classes: tuple[int, int, int],
                 per_class: bool, form: int, gamma: float, reduction: str, den_v: Optional[float],
                 inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The kernel's call: ``classes`` the addresses of alpha, 1 - alpha and pos_weight (C values each,
    or one with ``per_class`` False), kept alive by the caller; ``den_v`` the denominator or None."""
    lib = _require()
    dtype = logits.dtype
    ct = compute_dtype(dtype)
    sparse = targets.shape != logits.shape
    n_cls = logits.shape[-1] if logits.dim() else 1
    scale = _inverse(den_v)
    store = reduction == "none" and den_v is None
    fn = lib.fk_sigmoid_focal_f64 if ct == torch.float64 else lib.fk_sigmoid_focal_f32
    if dtype == ct:  # float32 / float64: one call on the tensors as they are (no 2-D view: host cost)
        x = raw(logits)
        grad = x if inplace and x.data_ptr() == logits.data_ptr() and not logits.is_neg() \
            else torch.empty_like(x, memory_format=torch.contiguous_format)
        loss_out = torch.empty(logits.shape, dtype=dtype) if store else None
        total = 0.0
        if x.numel():
            total = _sigmoid_call(fn, x, None if sparse else raw(targets, ct),
                                  raw(targets, torch.int64) if sparse else None,
                                  None if weight is None else raw(weight.expand(logits.shape), ct), classes, n_cls,
                                  per_class, form, gamma, scale, loss_out, grad)
        if loss_out is not None:
            return loss_out, grad
        return _reduced(total, den_v, dtype), grad
    # float16 / bfloat16: blocks of rows through float32, accumulated in float64
    rows = logits.numel() // n_cls if n_cls else 0
    xs = raw(logits).reshape(rows, n_cls)
    ys = targets.detach().reshape(rows) if sparse else targets.detach().reshape(rows, n_cls)
    ws = None if weight is None else weight.detach().expand(logits.shape).reshape(rows, n_cls)
    loss_out = torch.empty((rows, n_cls), dtype=dtype) if store else None
    # The gradient goes to the logits' own storage (inplace), or to one new buffer.
    grad = xs if inplace and xs.data_ptr() == logits.data_ptr() and not logits.is_neg() \
        else torch.empty_like(xs, memory_format=torch.contiguous_format)
    per = max(1, _HALF_BLOCK // max(1, n_cls))
    total = 0.0
    for a in range(0, rows, per):
        b = min(rows, a + per)
        x = raw(xs[a:b], ct)
        lo = torch.empty(x.shape, dtype=ct) if store else None
        g = torch.empty(x.shape, dtype=ct)
        total += _sigmoid_call(fn, x, None if sparse else raw(ys[a:b], ct),
                               raw(ys[a:b], torch.int64) if sparse else None,
                               None if ws is None else raw(ws[a:b], ct), classes, n_cls, per_class, form, gamma,
                               scale, lo, g)
        grad[a:b].copy_(g)
        if store:
            loss_out[a:b].copy_(lo)
    grad = grad if grad.shape == logits.shape else grad.view(logits.shape)
    if loss_out is not None:
        return loss_out.view(logits.shape), grad
    return _reduced(total, den_v, dtype), grad


def _sigmoid_call(fn: Any, x: Tensor, y: Optional[Tensor], labels: Optional[Tensor], w: Optional[Tensor],
                  classes: tuple[int, int, int], n_cls: int, per_class: bool, form: int, gamma: float, scale: float,
                  lo: Optional[Tensor], g: Tensor) -> float:
    """One call of the C kernel on contiguous tensors of the compute dtype (``y`` dense targets or ``labels``
    class indices; ``w``, ``lo`` optional): writes the gradient into ``g`` and returns the loss's sum."""
    soft_form = form if form and y is not None and _has_soft_targets(y, x.dtype) else 0
    acc = ctypes.c_double(0.0)
    rc = fn(x.data_ptr(), _ptr(y), _ptr(labels), _ptr(w), *classes, x.numel(), n_cls, int(per_class),
            soft_form, float(gamma), scale, _ptr(lo), g.data_ptr(), torch.get_num_threads(), ctypes.byref(acc))
    if rc == 3:  # reached only where the Python checks could not read the labels (torch.compile)
        raise ValueError(f"Expected `targets` as class indices to lie in [0, {n_cls}] ({n_cls} = background)")
    if rc != 0:  # pragma: no cover - guarded by the checks above
        raise RuntimeError(f"focalkit native kernel failed with code {rc}")
    return acc.value


sigmoid_op = _ops.define("native_sigmoid_focal", "sigmoid", _sigmoid_impl, "cpu")


def sigmoid_focal(logits: Tensor, targets: Tensor, **kwargs: Any) -> Tensor:
    """See :func:`focalkit.sigmoid_focal_loss` (dense or sparse targets)."""
    return _ops.sigmoid(sigmoid_op, _sigmoid_impl, logits, targets, host_impl=_sigmoid_host, **kwargs)


# ---- softmax focal loss -------------------------------------------------------------------------

def softmax_unsupported(logits: Tensor) -> Optional[str]:
    """Why the native softmax kernel cannot take these logits, or None if it can."""
    if logits.device.type != "cpu":
        return f"it runs on the CPU, logits are on {logits.device}"
    if logits.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        return f"dtype {logits.dtype} is not supported"
    return None


def _softmax_call(ct: torch.dtype, z: Tensor, y: Optional[Tensor], q: Optional[Tensor], w: Optional[Tensor],
                  ignore_index: int, eps: float, gamma: float, scale: float, loss_out: Optional[Tensor],
                  grad: Tensor) -> float:
    n, c, s = z.shape[0], z.shape[1], math.prod(z.shape[2:])
    if z.numel() == 0:
        if loss_out is not None:
            loss_out.zero_()
        return 0.0
    total = ctypes.c_double(0.0)
    fn = _LIB.fk_softmax_focal_f64 if ct == torch.float64 else _LIB.fk_softmax_focal_f32
    rc = fn(z.data_ptr(), _ptr(y), _ptr(q), _ptr(w), n, c, s, ignore_index, eps, gamma, scale,
            _ptr(loss_out), grad.data_ptr(), torch.get_num_threads(), ctypes.byref(total))
    if rc == 3:  # reached only where the Python checks could not read the targets
        raise ValueError(f"Expected `targets` to hold class indices in [0, {c - 1}] or ignore_index={ignore_index}")
    if rc != 0:  # pragma: no cover - guarded by the Python checks
        raise RuntimeError(f"focalkit native kernel failed with code {rc}")
    return total.value


def _softmax_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, ignore_index: int,
                  label_smoothing: float, reduction: str, den: Optional[Tensor],
                  inplace: bool = False) -> tuple[Tensor, Tensor]:
    _ops.check_softmax_args("native_softmax_focal", logits, targets, weight, reduction, den)
    if logits.device.type != "cpu":
        raise ValueError(f"focalkit::native_softmax_focal: expected CPU tensors, got logits on {logits.device}")
    return _softmax_run(logits, targets, weight, gamma, ignore_index, label_smoothing, reduction,
                        None if den is None else float(den), inplace)


def _softmax_run(logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, ignore_index: int,
                 label_smoothing: float, reduction: str, den_v: Optional[float],
                 inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The kernel's call, ``den_v`` the denominator or None: the registered op's body after its checks,
    and the call where the kernel runs here and now (``_ops.host_path``), on the loss's validated arguments."""
    _require()
    dtype = logits.dtype
    ct = compute_dtype(dtype)
    n = logits.shape[0]
    w = raw(weight, ct)
    if targets.is_floating_point():
        y, q = None, raw(targets)
    else:
        y, q = raw(targets, torch.int64), None
    scale = _inverse(den_v)
    store = reduction == "none" and den_v is None
    loss_out = torch.empty(logits.shape[:1] + logits.shape[2:], dtype=ct) if store else None
    # The gradient goes to the logits' own storage (inplace), or to one new buffer.
    direct = dtype == ct and logits.is_contiguous() and not logits.is_neg()
    grad = logits.detach() if inplace and direct else torch.empty_like(logits, memory_format=torch.contiguous_format)
    x = logits.detach() if direct else raw(logits)
    if dtype == ct:
        total = _softmax_call(ct, x, y, None if q is None else q.to(ct), w, ignore_index, label_smoothing,
                              gamma, scale, loss_out, grad)
    else:  # float16 / bfloat16: blocks of rows through float32, accumulated in float64
        total, per = 0.0, max(1, _HALF_BLOCK // max(1, x[0].numel() if n else 1))
        for a in range(0, n, per):
            b = min(n, a + per)
            g32 = torch.empty(x[a:b].shape, dtype=ct)
            total += _softmax_call(ct, x[a:b].to(ct), None if y is None else y[a:b],
                                   None if q is None else q[a:b].to(ct), w, ignore_index, label_smoothing,
                                   gamma, scale, None if loss_out is None else loss_out[a:b], g32)
            grad[a:b].copy_(g32)
    if loss_out is not None:
        return loss_out.to(dtype), grad
    return _reduced(total, den_v, dtype), grad


softmax_op = _ops.define("native_softmax_focal", "softmax", _softmax_impl, "cpu")


def softmax_focal(logits: Tensor, targets: Tensor, **kwargs: Any) -> Tensor:
    """See :func:`focalkit.softmax_focal_loss`."""
    return _ops.softmax(softmax_op, _softmax_impl, logits, targets, host_impl=_softmax_run, **kwargs)


# ---- Varifocal and Distribution Focal Loss ------------------------------------------------------

def _scale_and_store(reduction: str, normalizer: Any, count: int, ct: torch.dtype) -> tuple[float, Optional[float], bool]:
    """(1 / denominator, the denominator or None, whether each element's loss is stored)."""
    den = _reduce.host_denominator(reduction, normalizer, count, ct)
    return _inverse(den), den, den is None and reduction == "none"


def _finish_cpu(rc: int, total: float, den: Optional[float], loss_out: Optional[Tensor], dtype: torch.dtype) -> Tensor:
    if rc != 0:  # pragma: no cover - guarded by the Python checks
        raise RuntimeError(f"focalkit native kernel failed with code {rc}")
    if loss_out is not None:
        return loss_out.to(dtype)
    return _reduced(total, den, dtype)


def _varifocal_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], labels: Optional[Tensor],
                    norm_t: Optional[Tensor], *, alpha: float, gamma: float, iou_weighted: bool, reduction: str,
                    normalizer: Any) -> tuple[Tensor, Tensor]:
    """(loss, gradient / denominator) of Varifocal Loss in one pass of the C kernel."""
    lib = _require()
    dtype = logits.dtype
    ct = compute_dtype(dtype)
    x = raw(logits, ct)
    q = raw(targets, ct)
    lab = None if labels is None else raw(labels, ct)
    w = None if weight is None else raw(weight.expand(logits.shape), ct)
    scale, den, store = _scale_and_store(reduction, normalizer if norm_t is None else norm_t, x.numel(), ct)
    loss_out = torch.empty(x.shape, dtype=ct) if store else None
    grad = torch.empty(x.shape, dtype=ct)
    total = ctypes.c_double(0.0)
    fn = lib.fk_varifocal_f64 if ct == torch.float64 else lib.fk_varifocal_f32
    rc = fn(x.data_ptr(), q.data_ptr(), _ptr(lab), _ptr(w), x.numel(), float(alpha), float(gamma),
            int(iou_weighted), scale, _ptr(loss_out), grad.data_ptr(), torch.get_num_threads(), ctypes.byref(total))
    return _finish_cpu(rc, total.value, den, loss_out, dtype), grad.to(dtype)


def varifocal_loss(logits: Tensor, targets: Tensor, *, alpha: float, gamma: float, iou_weighted: bool,
                   weight: Optional[Tensor], labels: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    """See :func:`focalkit.varifocal_loss`: the C kernel's loss and gradient, the eager reference for the
    rest (gradients of targets, labels and weights; second order)."""
    ref = eager.varifocal_reference(alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction,
                                    normalizer=normalizer)
    compute = partial(_varifocal_impl, alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction,
                      normalizer=normalizer)
    return eager.apply(eager.Run("varifocal_loss", compute, ref), logits,
                       *eager.vfl_aux(targets, weight, labels, normalizer))


def _dfl_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], norm_t: Optional[Tensor], *,
              reduction: str, normalizer: Any) -> tuple[Tensor, Tensor]:
    """(loss, gradient / denominator) of Distribution Focal Loss in one pass of the C kernel."""
    lib = _require()
    dtype = logits.dtype
    ct = compute_dtype(dtype)
    z = raw(logits, ct)
    n, c = z.shape
    y = raw(targets, ct)
    w = None if weight is None else raw(weight.expand(n), ct)
    scale, den, store = _scale_and_store(reduction, normalizer if norm_t is None else norm_t, n, ct)
    loss_out = torch.empty(n, dtype=ct) if store else None
    grad = torch.empty(z.shape, dtype=ct)
    total = ctypes.c_double(0.0)
    fn = lib.fk_dfl_f64 if ct == torch.float64 else lib.fk_dfl_f32
    rc = fn(z.data_ptr(), y.data_ptr(), _ptr(w), n, c, scale, _ptr(loss_out), grad.data_ptr(),
            torch.get_num_threads(), ctypes.byref(total))
    return _finish_cpu(rc, total.value, den, loss_out, dtype), grad.to(dtype)


def distribution_focal_loss(logits: Tensor, targets: Tensor, *, weight: Optional[Tensor], reduction: str,
                            normalizer: Any) -> Tensor:
    """See :func:`focalkit.distribution_focal_loss` (logits (N, n+1))."""
    ref = eager.dfl_reference(reduction=reduction, normalizer=normalizer)
    compute = partial(_dfl_impl, reduction=reduction, normalizer=normalizer)
    return eager.apply(eager.Run("distribution_focal_loss", compute, ref, 1), logits, targets, weight,
                       eager.tensor_or_none(normalizer))
