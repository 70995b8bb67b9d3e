"""Argument validation shared by every loss: one wording, ValueError for values, TypeError for types.

Messages read "Expected `name` <condition>, got <value>." Nothing here reads a tensor's values
unless the tensor lives on the CPU (where that costs no device synchronisation). Importable without
torch (the GBDT and Keras adapters use the number checks): the tensor checks need it. Importing it
never imports torch (the Keras adapter on JAX / TensorFlow): torch is bound here when it is already
imported, or by :func:`bind_torch`, which every torch module of focalkit calls (``focalkit.backends``).
"""

from __future__ import annotations

import ctypes
import math
import numbers
import sys
from typing import Any, Optional, Sequence


class Tensor:  # replaced by torch.Tensor in bind_torch
    """Stands for torch.Tensor while torch is not imported: nothing is an instance of it then."""


torch: Any = None


def bind_torch() -> None:
    """Bind ``torch`` and ``Tensor`` for the tensor checks (idempotent)."""
    global torch, Tensor
    if torch is None:
        import torch as _torch

        torch, Tensor = _torch, _torch.Tensor  # type: ignore[misc]


if "torch" in sys.modules:
    bind_torch()

REDUCTIONS = ("none", "mean", "sum")


def _fmt(value: Any) -> str:
    if isinstance(value, Tensor):
        if value.numel() == 1:
            return f"tensor({value.item()!r})" if value.device.type == "cpu" else f"a 1-element tensor"
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return repr(value)


def fail(name: str, condition: str, value: Any, exc: type = ValueError) -> None:
    raise exc(f"Expected `{name}` {condition}, got {_fmt(value)}.")


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(name: str, value: Any, *, lo: Optional[float] = None, hi: Optional[float] = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite real number within [lo, hi] (open ends where asked); returns it as float.

    Under ``torch.compile(dynamic=True)`` numbers arrive as symbolic floats / ints: ``float()``
    specialises them (a guard), so they are checked like any other number."""
    if type(value) is not float:  # a plain float (the common case) needs neither conversion nor ABC check
        if torch is not None and isinstance(value, (torch.SymFloat, torch.SymInt)):
            value = float(value)
        if not is_number(value):
            fail(name, "to be a real number", value, TypeError)
        try:
            value = float(value)
        except OverflowError:  # an int beyond any float: not finite either
            fail(name, "to be finite", value)
    # comparisons, not math.isfinite: they also trace on torch.compile(dynamic=True)'s symbolic floats
    if not -math.inf < value < math.inf:
        fail(name, "to be finite", value)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        fail(name, f"{'>' if lo_open else '>='} {lo:g}", value)
    if hi is not None and (value > hi or (hi_open and value == hi)):
        fail(name, f"{'<' if hi_open else '<='} {hi:g}", value)
    return value


def gamma(value: Any, name: str = "gamma", *, positive: bool = False) -> float:
    return number(name, value, lo=0.0, lo_open=positive)


def reduction(value: Any) -> str:
    if value not in REDUCTIONS:
        fail("reduction", "to be one of 'none', 'mean', 'sum'", value)
    return value


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        fail(name, "to be one of " + ", ".join(repr(o) for o in options), value)
    return value


def tensor(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        fail(name, "to be a torch.Tensor", type(value).__name__, TypeError)
    return value


def float_tensor(name: str, value: Any) -> Tensor:
    tensor(name, value)
    if not value.is_floating_point():
        fail(name, "to have a floating-point dtype", value.dtype, TypeError)
    return value


def same_device(name: str, value: Tensor, ref: Tensor, ref_name: str = "logits") -> None:
    if value.device != ref.device:
        fail(name, f"on {ref_name}'s device {ref.device}", f"device {value.device}")


def broadcastable(name: str, value: Tensor, shape: torch.Size, ref_name: str = "logits") -> None:
    try:
        out = torch.broadcast_shapes(value.shape, shape)
    except RuntimeError:
        out = None
    if out != shape:
        fail(name, f"to broadcast to {ref_name}'s shape {tuple(shape)}", f"shape {tuple(value.shape)}")


def tracing(value: Tensor) -> bool:
    """Whether ``value`` is being traced rather than computed: ``torch.compile``, ``make_fx`` (real,
    fake or symbolic), ``FakeTensorMode``, functionalisation (``torch.export``). Its content cannot be
    read then, and a kernel that takes raw pointers must be called as its registered op."""
    if torch.compiler.is_compiling():
        return True
    fake, proxy_mode = _tracing_types()
    return (isinstance(value, fake) or torch._is_functional_tensor(value) or proxy_mode() is not None
            or torch._C._functorch.is_functorch_wrapped_tensor(value))


def transforming() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``, ``jvp``, ``functional_call``
    under them) is running. Its tensors are wrappers with no memory a kernel can read, and an
    ``autograd.Function`` whose forward computes the gradient cannot be transformed: the losses then run
    their reference formula as plain differentiable ops, which every transform composes with."""
    if torch.compiler.is_compiling():  # Dynamo's trace answers True here with no transform running
        return False
    return torch._C._functorch.peek_interpreter_stack() is not None


_TRACING: Any = None


def _tracing_types() -> Any:
    """(FakeTensor, get_proxy_mode), imported on first use (this module imports without torch)."""
    global _TRACING
    if _TRACING is None:
        from torch._subclasses.fake_tensor import FakeTensor
        from torch.fx.experimental.proxy_tensor import get_proxy_mode

        _TRACING = (FakeTensor, get_proxy_mode)
    return _TRACING


def can_read(value: Tensor) -> bool:
    """Content checks run only where they are free: on CPU tensors (no device synchronisation), and
    not while anything traces (a data-dependent branch would break the graph)."""
    return value.device.type == "cpu" and not tracing(value) and value.numel() > 0


def in_unit_interval(name: str, value: Tensor, allow: Optional[float] = None) -> None:
    """Values in [0, 1] (NaN passes: it propagates); only checked where :func:`can_read`. One pass: the
    C kernel's scan (contiguous float32 / float64), else ``aminmax`` in the common case. ``allow``: one
    more value that is accepted (an ignore index)."""
    if not can_read(value) or value.dtype == torch.bool:
        return
    bad = _outside_value(value, 0.0, 1.0, allow)
    if bad is not None:
        fail(name, "to hold values in [0, 1]" + ("" if allow is None else f" or {allow:g}"), f"a value {bad!r}")


def nonnegative(name: str, value: Optional[Tensor]) -> None:
    """The package's one rule for weights (class weights, elementwise weights, ``pos_weight``, alpha
    vectors): every value >= 0 (NaN propagates). Checked where :func:`can_read`."""
    if value is None or not can_read(value):
        return
    bad = _outside_value(value, 0.0, math.inf, None)
    if bad is not None:
        fail(name, "to hold values >= 0 (weights cannot be negative)", f"a value {bad!r}")


def _outside_value(value: Tensor, lo: float, hi: float, allow: Optional[float]) -> Any:
    """The first value of ``value`` (in memory order, which the caller has asked :func:`can_read` of)
    outside [lo, hi] that is not ``allow``, or None. NaN is not outside: it propagates. One pass of the
    C kernel's scan where it can read the tensor, else ``aminmax`` in the common case."""
    if value.dtype == torch.bool:  # always in [0, 1]
        return None
    i = _first_outside(value, lo, hi, allow)
    if i is not None:  # no tensor ops (host cost on small inputs)
        return None if i < 0 else value.reshape(-1)[i].item()
    v = value.detach()
    v_lo, v_hi = torch.aminmax(v)
    if v_lo.item() >= lo and v_hi.item() <= hi:  # NaN fails here (it hides what else is there) ...
        return None
    outside = (v < lo) | (v > hi)  # ... and is not outside here
    if allow is not None:
        outside &= v != allow
    return v[outside][0].item() if bool(outside.any()) else None


def labels_in_range(name: str, labels: Tensor, lo: int, hi: int, ignore: Optional[int], condition: str) -> None:
    """Integer class indices in [lo, hi] (or ``ignore``), read where :func:`can_read`. Elsewhere (CUDA,
    torch.compile) nothing is read and nothing is asserted: every backend makes a bad index's loss and
    gradient NaN at its position (docs/api.md, "Bad class indices"). A device-side assertion would end
    the process's CUDA context; a read would synchronise the host. No bad label is ever computed as if
    it were a class."""
    if labels.numel() == 0 or not can_read(labels):
        return
    scan = _label_scan(labels)
    if scan is not None:  # one pass of the C kernel's scan: no tensor ops (host cost on small inputs)
        lib, ignore_arg, n_threads = scan
        i = lib.fk_labels_first_bad(labels.data_ptr(), labels.numel(), lo, hi, *ignore_arg(ignore), n_threads)
        if i >= 0:
            fail(name, condition, f"a value {labels.reshape(-1)[i].item()}")
        return
    bad = (labels < lo) | (labels > hi)
    if ignore is not None:
        bad = bad & (labels != ignore)
    if bool(bad.any()):
        fail(name, condition, f"a value {labels[bad][0].item()}")


def _label_scan(labels: Tensor) -> Optional[tuple[Any, Any, int]]:
    """(the C kernel's library, its ``ignore_arg``, threads) where it can read ``labels`` directly: a
    contiguous int64 tensor (the caller has asked :func:`can_read`), the kernel built. None elsewhere (the
    tensor ops then do the same work). Also what the softmax mean's count on the native path asks."""
    if labels.dtype != torch.int64 or not labels.is_contiguous() or labels.is_neg():
        return None
    native = _native()
    return None if native is None else (native.LIB, native.ignore_arg, torch.get_num_threads())


_NATIVE: Any = None


def _native() -> Any:
    """``focalkit._native`` where its C library is loaded, else None (the tensor ops do the work)."""
    global _NATIVE
    if _NATIVE is None:
        from focalkit import _native  # loaded with focalkit.backends; never imported before torch is

        _NATIVE = _native
    return None if _NATIVE.LIB is None else _NATIVE


def _first_outside(value: Tensor, lo: float, hi: float, allow: Optional[float]) -> Optional[int]:
    """The C kernel's scan (``fk_range_first_bad``) where it can read ``value`` directly (a contiguous
    float32 / float64 tensor; the caller has asked :func:`can_read`; the kernel built): the position of
    the first value outside [lo, hi] that is not ``allow``, or -1 (NaN is not outside). None elsewhere (the
    tensor ops then do the same work). The bounds are rounded to float32 for float32 values, as a tensor
    comparison with a Python number rounds them."""
    if value.dtype not in (torch.float32, torch.float64) or not value.is_contiguous() or value.is_neg():
        return None
    native = _native()
    if native is None:
        return None
    f64 = value.dtype == torch.float64
    fn = native.LIB.fk_range_first_bad_f64 if f64 else native.LIB.fk_range_first_bad_f32
    lo, hi, a = (v if f64 else round_float32(v) for v in (lo, hi, 0.0 if allow is None else float(allow)))
    return fn(value.data_ptr(), value.numel(), lo, hi, a, allow is not None, torch.get_num_threads())


_EXACT_F32 = frozenset((0.0, 1.0, math.inf, -math.inf))  # the range checks' bounds: float32 holds them exactly


def round_float32(value: float) -> float:
    """``value`` rounded to float32 as a tensor's conversion rounds it (to nearest, ties to even; inf
    beyond its range, NaN kept), with no tensor op for a host number: the host denominator of float32
    losses, and the bounds and ``allow`` value a float32 tensor is compared with. The range checks' own
    bounds need no ctypes object (host cost per call)."""
    return value if value in _EXACT_F32 else ctypes.c_float(value).value


def self_overlapping(t: Tensor) -> bool:
    """Whether two elements of ``t`` may share memory (expanded, unfolded or other overlapping views).
    Dims sorted by stride: each stride must step past everything the smaller ones reach."""
    extent = 1
    for stride, size in sorted((st, sz) for st, sz in zip(t.stride(), t.shape) if sz > 1):
        if stride < extent:
            return True
        extent += stride * (size - 1)
    return False


def inplace_grad(value: Any, logits: Tensor, others: Sequence[Any]) -> bool:
    """``inplace_grad=True`` only where writing the gradient into the logits' storage can be right."""
    boolean("inplace_grad", value)
    if not value:
        return False
    base = logits._base if logits._base is not None else logits
    if logits.requires_grad and base.is_leaf and base.requires_grad:
        fail("inplace_grad", "to be False for a leaf tensor that requires grad, or a view of one (PyTorch "
             "forbids in-place writes there; its .grad would share the logits' storage)", value)
    if self_overlapping(logits):
        fail("inplace_grad", "to be False for logits whose elements share memory (expanded or overlapping "
             "views: one gradient would overwrite another); pass logits.contiguous()", value)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in others):
        fail("inplace_grad", "to be False when targets or weights require grad (their gradients need the "
             "logits, which inplace_grad overwrites)", value)
    return True


def alpha(value: Any, num_classes: Optional[int] = None, *, allow_none: bool = True):
    """None, a float in [0, 1], or a 1-D tensor of ``num_classes`` values in [0, 1]."""
    if value is None:
        if not allow_none:
            fail("alpha", "to be a number in [0, 1]", value, TypeError)
        return None
    if isinstance(value, Tensor):
        float_tensor("alpha", value)
        if value.dim() != 1:
            fail("alpha", "to be a float or a 1-D tensor of per-class values", f"shape {tuple(value.shape)}")
        if num_classes is not None and value.numel() != num_classes:
            fail("alpha", f"to have {num_classes} entries (the size of the last dimension)",
                 f"shape {tuple(value.shape)}")
        in_unit_interval("alpha", value)
        return value
    return number("alpha", value, lo=0.0, hi=1.0)


def normalizer(value: Any, reduction_: str) -> Any:
    if value is None:
        return None
    if reduction_ == "none":
        fail("normalizer", "to be None when reduction='none'", value)
    if isinstance(value, Tensor):
        if value.dim() != 0:
            fail("normalizer", "to be a number or a 0-dim tensor", f"shape {tuple(value.shape)}")
        if not value.is_floating_point() and value.dtype not in (torch.int32, torch.int64, torch.int16,
                                                                 torch.int8, torch.uint8):
            fail("normalizer", "to be a real number or a real 0-dim tensor", value.dtype, TypeError)
        if can_read(value) and not (bool(value > 0) and bool(torch.isfinite(value))):
            fail("normalizer", "to be finite and > 0", value)
        return value
    return number("normalizer", value, lo=0.0, lo_open=True)


def class_weight(name: str, value: Optional[Tensor], num_classes: int, ref: Tensor) -> Optional[Tensor]:
    """None or a 1-D float tensor of ``num_classes`` entries on ``ref``'s device."""
    if value is None:
        return None
    float_tensor(name, value)
    if value.dim() != 1 or value.numel() != num_classes:
        fail(name, f"to have shape ({num_classes},) (one entry per class)", f"shape {tuple(value.shape)}")
    same_device(name, value, ref)
    nonnegative(name, value)
    return value


def integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, "to be an int", value, TypeError)
    return int(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(name, "to be True or False", value, TypeError)
    return value
