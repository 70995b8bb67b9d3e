"""Triton backend: GPU kernels for the sigmoid and softmax focal losses (``_triton/``).

Runs on CUDA tensors, and on CPU tensors under ``TRITON_INTERPRET=1`` (Triton's interpreter,
which is how CI tests it on a machine without a GPU). float16 / bfloat16 / float32 logits are
computed in float32; the loss and the gradient are stored in the logits' dtype; float64 stays on the
eager backend.

A forward + backward is three launches (two with ``reduction="none"``, and two where the forward's
grid is one program):

1. the forward kernel: the loss, or one partial sum per program (and, for class indices, the
   counted weight of the mean's denominator); a grid of one program (small inputs, where the host's
   cost per launch decides) finishes the reduction itself, as ``finish_kernel`` would;
2. ``finish_kernel``: the partials summed in a fixed order (deterministic), divided by the
   denominator, stored in the output; ``1 / denominator`` kept on the device for the backward;
3. the backward kernel: the gradient recomputed from the inputs, times ``grad_output`` and
   ``1 / denominator``, stored once.

Nothing is read back to the host (no synchronisation: a CUDA graph can capture a training step), and
no gradient-sized buffer lives between forward and backward. Availability and interpretation are
decided once, at import: the traced path reads only shapes, dtypes and devices.

:func:`specialisations` lists every (kernel, constexprs, pointer dtypes) a launcher here can
request; the ahead-of-time compile test (``tests/backends/test_triton_aot.py``) compiles each one
for sm_80 and sm_90 on a machine without a GPU.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import os
import re
from typing import Any, Iterator, NamedTuple, Optional

import torch
from torch import Tensor

from focalkit import _checks, _reduce
from focalkit.backends import _ops, eager
from focalkit.backends._ops import raw

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def interpreter_fault(triton_version: str, numpy_version: str) -> str:
    """Why Triton's interpreter cannot run with these versions, or "". Before Triton 3.7 it converts
    one-element arrays to Python ints, which NumPy 2.4 refuses: every kernel then fails with
    "only 0-dimensional arrays can be converted to Python scalars" (triton-lang/triton#9171)."""
    if _release(triton_version) < (3, 7) and _release(numpy_version) >= (2, 4):
        return (f"Triton {triton_version}'s interpreter (TRITON_INTERPRET=1) fails under NumPy {numpy_version} "
                "(triton-lang/triton#9171, fixed in Triton 3.7): install triton>=3.7 or numpy<2.4")
    return ""


def _installed_interpreter_fault() -> str:
    try:
        return interpreter_fault(importlib.metadata.version("triton"), importlib.metadata.version("numpy"))
    except importlib.metadata.PackageNotFoundError:  # a build of another name (pytorch-triton): not known broken
        return ""


# decided once, at import: torch.compile never traces find_spec or os.environ (torch 2.11 refuses them)
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_INSTALLED = importlib.util.find_spec("triton") is not None
FAULT = _installed_interpreter_fault() if _INSTALLED and INTERPRET else ""
AVAILABLE = _INSTALLED and not FAULT


def available() -> bool:
    return AVAILABLE


def why_unavailable() -> str:
    return "" if AVAILABLE else FAULT or "the triton package is not installed"


def interpreting() -> bool:
    """Whether Triton runs in its interpreter (``TRITON_INTERPRET=1`` when focalkit was imported)."""
    return INTERPRET


_K: Any = None


def _kernels() -> Any:
    """The kernel modules, imported on first use (``triton`` is imported there)."""
    global _K
    if _K is None:
        from focalkit.backends._triton import common, quality, sigmoid, softmax

        _K = (common, sigmoid, softmax, quality)
    return _K


def _on_device(logits: Tensor) -> bool:
    return logits.device.type == "cuda" or (INTERPRET and logits.device.type == "cpu")


def unsupported(logits: Tensor, sparse: bool = False, pos_weight: Optional[Tensor] = None) -> Optional[str]:
    """Why the Triton kernels cannot take these inputs, or None if they can."""
    if not AVAILABLE:
        return why_unavailable()
    if not _on_device(logits):
        return f"it runs on CUDA tensors (or on the CPU under TRITON_INTERPRET=1), logits are on {logits.device}"
    if logits.dtype not in _DTYPES:
        return f"dtype {logits.dtype} is not supported (float16, bfloat16, float32; float64 runs on eager)"
    if not _ops.class_vector_layout(pos_weight, logits.shape[-1] if logits.dim() else 1):
        return (f"pos_weight of shape {tuple(pos_weight.shape)} is neither one value nor one per class "
                "(shape (C,)) for the Triton kernel")
    return None


def _check_device(op: str, logits: Tensor) -> None:
    if not AVAILABLE:
        raise RuntimeError(f"the triton backend cannot run: {why_unavailable()}")
    if not _on_device(logits):
        raise ValueError(f"focalkit::{op}: expected CUDA tensors, got logits on {logits.device}")
    if logits.dtype not in _DTYPES:
        raise ValueError(f"focalkit::{op}: expected float16/bfloat16/float32 logits, got {logits.dtype}")


# ---- the specialisations: every launch below takes its constexprs and block sizes from here ------

# The tables below are the winners of benchmarks/sweep_gpu.py on an H200 (benchmarks/RESULTS.md).
SIGMOID_BLOCK = 1024  # elements per program and loop step (num_warps=8: 4 per thread, one 16-byte load)
SIGMOID_WARPS = 8
PROGRAMS_PER_SM = 32  # the persistent sigmoid grid: at most this many programs per multiprocessor
ONE_PROGRAM_FINISH = True  # a forward over one program finishes its reduction (False: tests compare the two)
# A forward over several programs finishes its reduction in the program that ends last (an atomic ticket,
# `common.reduce_finish`) instead of launching `finish_kernel`: one Triton launch fewer for a torch fill of
# the ticket. Off until a GPU run has checked it on CUDA and timed it (benchmarks/host_profile.py times both).
LAST_PROGRAM_FINISH = False
SOFT_FORMS = _ops.SOFT_FORMS  # "linear", "pt", "signed", "bce", "quality": FORM 0..4


class Tile(NamedTuple):
    """A softmax launch shape: ``BLOCK_P`` positions x ``BLOCK_C`` classes per program."""

    spatial: bool
    one_tile: bool
    block_p: int
    block_c: int
    num_warps: int


# 2-D logits (rows): one tile holds a row's classes when C <= 2048; larger C walks chunks of 4096.
# N-D logits (positions contiguous): one tile when C <= 256, else chunks of 32 classes x 64 positions.
ROW_TILES = (Tile(False, True, 128, 16, 4), Tile(False, True, 64, 32, 4), Tile(False, True, 32, 64, 4),
             Tile(False, True, 8, 256, 4), Tile(False, True, 1, 2048, 4), Tile(False, False, 1, 4096, 8))
SPATIAL_TILES = (Tile(True, True, 64, 32, 4), Tile(True, True, 16, 256, 4), Tile(True, False, 64, 32, 4))
# 2-D rows of few classes whose count is not a multiple of 16 (19 for Cityscapes, 10, 80 + 1...): one row
# per thread and a loop over its classes (the chunked kernel, one class per chunk). The tiles above put a
# warp's 32 threads on such a row's classes: warp shuffles for every row statistic, the scalar maths
# repeated by every thread, and for 17 to 31 classes a backward that spills (sm_90: 255 registers and a
# 104-byte stack; the loop: 32 registers, none; benchmarks/triton_layout_probe.py). A count that is a
# multiple of 16 keeps the tiles, whose loads are then 16 bytes wide.
ROW_LOOP = Tile(False, False, 256, 1, 4)
ROW_LOOP_MAX_C = 32
# N-D logits of few classes the same way: one position per thread and a loop over its classes, which lie
# S apart (a warp's loads of one class are consecutive positions: coalesced), with no padding of 19
# classes to the tile's 32 and no warp shuffle. Off (0) until a GPU run times it against the spatial
# tiles: benchmarks/bench_gpu.py's "loop" figure on the segmentation rows; 32 is the candidate limit.
SPATIAL_LOOP = Tile(True, False, 256, 1, 4)
SPATIAL_LOOP_MAX_C = 0
# the softmax target modes (DENSE, HAS_Q): class indices, indices with label smoothing, probabilities
SOFTMAX_MODES = ((False, False), (True, False), (True, True))
# Distribution Focal Loss: a row's bins in one tile (the 2-D softmax's one-tile shapes), at most 256 bins
DFL_TILES = tuple(t for t in ROW_TILES if t.one_tile and t.block_c <= 256)


def _tuning(path: Optional[str]) -> None:
    """``FOCALKIT_TRITON_TUNING=file.json`` (read at import, for tuning on a new GPU; see
    ``benchmarks/sweep_gpu.py``): {"sigmoid": [BLOCK, num_warps, programs per SM], "row_tiles":
    [[BLOCK_P, BLOCK_C, num_warps], ..., chunked last], "spatial_tiles": [...], "row_loop": [BLOCK_P,
    num_warps, most classes (0: never)], "spatial_loop": [the same], "last_program_finish": true | false}
    replaces the tables above.
    The ahead-of-time compile test covers the tables in this file, not a tuning file's."""
    global SIGMOID_BLOCK, SIGMOID_WARPS, PROGRAMS_PER_SM, ROW_TILES, SPATIAL_TILES, ROW_LOOP, ROW_LOOP_MAX_C, \
        SPATIAL_LOOP, SPATIAL_LOOP_MAX_C, LAST_PROGRAM_FINISH
    if not path:
        return
    import json

    with open(path) as f:
        cfg = json.load(f)
    if "sigmoid" in cfg:
        SIGMOID_BLOCK, SIGMOID_WARPS, PROGRAMS_PER_SM = (int(v) for v in cfg["sigmoid"])
    for key, spatial in (("row_tiles", False), ("spatial_tiles", True)):
        if key in cfg:
            rows = cfg[key]
            tiles = tuple(Tile(spatial, i < len(rows) - 1, int(p), int(c), int(w)) for i, (p, c, w) in enumerate(rows))
            if spatial:
                SPATIAL_TILES = tiles
            else:
                ROW_TILES = tiles
    if "row_loop" in cfg:
        p, w, ROW_LOOP_MAX_C = (int(v) for v in cfg["row_loop"])
        ROW_LOOP = Tile(False, False, p, 1, w)
    if "spatial_loop" in cfg:
        p, w, SPATIAL_LOOP_MAX_C = (int(v) for v in cfg["spatial_loop"])
        SPATIAL_LOOP = Tile(True, False, p, 1, w)
    if "last_program_finish" in cfg:
        LAST_PROGRAM_FINISH = bool(cfg["last_program_finish"])


_tuning(os.environ.get("FOCALKIT_TRITON_TUNING"))


def softmax_tile(n_cls: int, spatial: bool) -> Tile:
    """The loop over few classes for 2-D rows it fits (``ROW_LOOP``) and, where switched on, for N-D
    positions (``SPATIAL_LOOP``), else the smallest tile of the table that holds the classes, else the
    chunked one."""
    if not spatial and n_cls <= ROW_LOOP_MAX_C and n_cls % 16:
        return ROW_LOOP
    if spatial and n_cls <= SPATIAL_LOOP_MAX_C:
        return SPATIAL_LOOP
    tiles = SPATIAL_TILES if spatial else ROW_TILES
    for t in tiles:
        if t.one_tile and n_cls <= t.block_c:
            return t
    return tiles[-1]


def _ptr_dtypes(x: torch.dtype) -> tuple:
    """The dtypes a launcher passes for targets / weights with logits of dtype ``x``: ``x`` or float32
    (anything else is converted on the host)."""
    return (x,) if x == torch.float32 else (x, torch.float32)


class Spec(NamedTuple):
    kernel: str                 # attribute of the kernel module: "sigmoid.sigmoid_fwd_kernel", ...
    constexprs: tuple           # ((name, value), ...)
    pointers: tuple             # ((name, dtype), ...): the pointer arguments' dtypes
    num_warps: int


def _fwd_out(x: torch.dtype) -> tuple:
    """A forward kernel's output pointers: each loss (``x``), the partial sums or the reduced loss, 1 /
    denominator, the denominator tensor a finishing forward reads, and the last program's scratch (float32)."""
    f32 = torch.float32
    return (("loss_ptr", x), ("part_ptr", f32), ("inv_ptr", f32), ("den_ptr", f32), ("scr_ptr", f32))


def specialisations() -> Iterator[Spec]:
    """Every specialisation a launcher in this module can request (read by the ahead-of-time compile
    test): each constexpr combination with each pointer dtype. Each forward comes twice: ``LAST`` False
    (as launched by default) and True (``LAST_PROGRAM_FINISH`` over several programs)."""
    for x in _DTYPES:
        for form in range(len(SOFT_FORMS)):
            for y in _ptr_dtypes(x) + (torch.int64,):  # int64: sparse class indices
                for w in _ptr_dtypes(x):
                    ptrs = (("x_ptr", x), ("y_ptr", y), ("cls_ptr", torch.float32), ("w_ptr", w))
                    for last in (False, True):
                        yield Spec("sigmoid.sigmoid_fwd_kernel", (("FORM", form), ("BLOCK", SIGMOID_BLOCK),
                                                                  ("LAST", last)), ptrs + _fwd_out(x), SIGMOID_WARPS)
                    yield Spec("sigmoid.sigmoid_bwd_kernel", (("FORM", form), ("BLOCK", SIGMOID_BLOCK)),
                               ptrs + (("go_ptr", x), ("inv_ptr", torch.float32), ("grad_ptr", x)), SIGMOID_WARPS)
        yield Spec("common.finish_kernel", (),
                   (("part_ptr", torch.float32), ("cnt_ptr", torch.float32), ("den_ptr", torch.float32),
                    ("out_ptr", x), ("inv_ptr", torch.float32)), 4)
        for q in _ptr_dtypes(x):
            for lab in _ptr_dtypes(x):
                for w in _ptr_dtypes(x):
                    ptrs = (("x_ptr", x), ("q_ptr", q), ("lab_ptr", lab), ("w_ptr", w))
                    for last in (False, True):
                        yield Spec("quality.vfl_fwd_kernel", (("BLOCK", SIGMOID_BLOCK), ("LAST", last)),
                                   ptrs + _fwd_out(x), SIGMOID_WARPS)
                    yield Spec("quality.vfl_bwd_kernel", (("BLOCK", SIGMOID_BLOCK),),
                               ptrs + (("go_ptr", x), ("inv_ptr", torch.float32), ("grad_ptr", x)), SIGMOID_WARPS)
        for t in DFL_TILES:
            ptrs = (("z_ptr", x), ("y_ptr", torch.float32), ("w_ptr", torch.float32))
            blocks = (("BLOCK_P", t.block_p), ("BLOCK_C", t.block_c))
            for last in (False, True):
                yield Spec("quality.dfl_fwd_kernel", blocks + (("LAST", last),), ptrs + _fwd_out(x), t.num_warps)
            yield Spec("quality.dfl_bwd_kernel", blocks,
                       ptrs + (("go_ptr", x), ("inv_ptr", torch.float32), ("grad_ptr", x)), t.num_warps)
        for t in ROW_TILES + SPATIAL_TILES + (ROW_LOOP, SPATIAL_LOOP):
            for dense, has_q in SOFTMAX_MODES:
                for q in _ptr_dtypes(x) if has_q else (x,):
                    ptrs = (("z_ptr", x), ("y_ptr", torch.int64), ("q_ptr", q), ("w_ptr", torch.float32))
                    tile = (("SPATIAL", t.spatial), ("ONE_TILE", t.one_tile), ("DENSE", dense), ("HAS_Q", has_q))
                    blocks = (("BLOCK_P", t.block_p), ("BLOCK_C", t.block_c))
                    for last in (False, True):
                        yield Spec("softmax.softmax_fwd_kernel", tile + blocks + (("LAST", last),),
                                   ptrs + _fwd_out(x) + (("cnt_ptr", torch.float32), ("st_ptr", torch.float32)),
                                   t.num_warps)
                    yield Spec("softmax.softmax_bwd_kernel", tile + blocks,
                               ptrs + (("go_ptr", x), ("inv_ptr", torch.float32), ("st_ptr", torch.float32),
                                       ("grad_ptr", x)), t.num_warps)


# ---- launching ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 0


def _max_programs(device: torch.device) -> int:
    """A persistent grid: a few programs per multiprocessor (4 in the interpreter)."""
    return PROGRAMS_PER_SM * _sm_count(device) if device.type == "cuda" else 4


def _grid(n: int, block: int, device: torch.device) -> int:
    return max(1, min(-(-n // block), _max_programs(device)))


@functools.lru_cache(maxsize=None)
def _dummy(device: torch.device, dtype: torch.dtype) -> Tensor:
    """What an unused pointer argument points to (never read), in the dtype the table lists."""
    return torch.empty(1, dtype=dtype, device=device)


def _as(t: Tensor, x: torch.dtype) -> Tensor:
    """A contiguous tensor of dtype ``x`` or float32, whichever needs no conversion (else ``x``)."""
    t = raw(t)
    return t if t.dtype in (x, torch.float32) else t.to(x)


def _launch(fn: Any, grid: tuple, args: tuple, consts: dict, num_warps: int) -> None:
    """Every launch of this module: ``fn[grid](*args, **consts, num_warps=...)``.

    Measured on an H200 (``benchmarks/RESULTS.md``): calling the compiled kernel directly after the
    first launch (``CompiledKernel[grid](...)``, skipping the JIT's argument binding) was no cheaper
    than the JIT's own path in triton 3.6 once the cache key was computed here, so the JIT path stays."""
    fn[grid](*args, num_warps=num_warps, **consts)


class _Reduced(NamedTuple):
    """A forward launch's reduction arguments: where the loss goes, and how it is finished."""

    loss: Tensor      # each element's loss (``store``), else a dummy
    part: Tensor      # the partial sums, or (one program) the reduced loss, a 0-dim float32 tensor
    inv: Tensor       # 1 / denominator (written by the forward with ``store`` or one program)
    den: Tensor       # the denominator tensor (``den_mode`` 2), else a dummy
    den_mode: int     # -1: partials for ``finish_kernel``; 0 .. 3: this launch finishes (``common.reduce_finish``)
    den_value: float
    finish: tuple     # (den_mode, den_value, den) for ``finish_kernel`` where it runs, else ()
    scr: Tensor       # several programs finishing: 2 x programs + 1 zeros (partials, counts, ticket); else a dummy
    last: bool        # the forward's LAST constexpr: its last program of several finishes


def _reduced(store: bool, loss_shape: Any, loss_dtype: torch.dtype, programs: int, dev: torch.device,
             reduction: str, normalizer: Any, count: Optional[int]) -> _Reduced:
    """The buffers and reduction arguments of a forward launch over ``programs`` programs: a grid of one
    program finishes the reduction itself (one launch fewer; the same float64 sum and division as
    ``finish_kernel``, so the same bits), and so does the last program of several with
    ``LAST_PROGRAM_FINISH`` (the partials summed in ``finish_kernel``'s order)."""
    f32 = torch.float32
    dummy = _dummy(dev, f32)
    if store:
        inv = torch.empty(1, dtype=f32, device=dev)
        return _Reduced(torch.empty(loss_shape, dtype=loss_dtype, device=dev), inv, inv, dummy, -1, 1.0, (), dummy,
                        False)
    mode, value, den = _denominator(reduction, normalizer, count)
    if ((programs == 1 and ONE_PROGRAM_FINISH) or (programs > 1 and LAST_PROGRAM_FINISH)) \
            and _reduce.out_dtype(loss_dtype, True) == f32:
        last = programs > 1
        scr = torch.zeros(2 * programs + 1, dtype=f32, device=dev) if last else dummy
        return _Reduced(_dummy(dev, loss_dtype), torch.empty((), dtype=f32, device=dev),
                        torch.empty(1, dtype=f32, device=dev), dummy if den is None else den, mode, value, (), scr,
                        last)
    return _Reduced(_dummy(dev, loss_dtype), torch.empty(max(programs, 1), dtype=f32, device=dev), dummy, dummy, -1,
                    1.0, (mode, value, den), dummy, False)


def _reduced_out(r: _Reduced, counts: Optional[Tensor], loss_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(reduced loss, 1 / denominator) after a forward launch that did not store each loss: the one
    program's own result, or ``finish_kernel`` over the partials (and ``counts``, for class indices)."""
    if not r.finish:
        return r.part, r.inv
    mode, value, den = r.finish
    part, dev = r.part, r.part.device
    out = torch.empty((), dtype=_reduce.out_dtype(loss_dtype, True), device=dev)
    inv = torch.empty(1, dtype=torch.float32, device=dev)
    args = (part, part if counts is None else counts, part if den is None else den, out, inv, part.numel(),
            float(value), mode)
    _launch(_kernels()[0].finish_kernel, (1,), args, {}, 4)
    return out, inv


def _denominator(reduction: str, normalizer: Any, count: Optional[int]) -> tuple[int, float, Optional[Tensor]]:
    """(den_mode, den_value, den tensor) of the finishing kernel; ``count`` None: counted by the kernel."""
    if normalizer is not None:
        if isinstance(normalizer, Tensor):
            return 2, 1.0, normalizer.detach().to(torch.float32).reshape(1)
        return 1, float(normalizer), None
    if reduction == "sum":
        return 0, 1.0, None
    if count is None:
        return 3, 1.0, None
    return 1, float(max(count, 1)), None


# sigmoid ------------------------------------------------------------------------------------------

class _Sig(NamedTuple):
    """A sigmoid call's prepared arguments (tensors first: the forward saves them for the backward)."""

    x: Tensor
    y: Tensor
    cls: Tensor
    w: Tensor
    n_cls: int
    has_cls: int
    cls_cs: int
    apos: float
    aneg: float
    w_mode: int
    w_rs: int
    w_cs: int
    sparse: int
    form: int
    gamma: float


def _weight_layout(weight: Optional[Tensor], x: Tensor, n_cls: int) -> tuple[Tensor, int, int, int]:
    """(tensor, w_mode, w_rs, w_cs): elementwise like the logits (1), or a broadcast seen as (rows, C)
    strides (2); a layout that is neither is made elementwise."""
    if weight is None:
        return x, 0, 0, 0
    w = weight.detach()
    if w.shape == x.shape:
        return _as(w, x.dtype), 1, 0, 0
    ew = w.expand(x.shape)
    try:
        flat = torch.resolve_neg(ew).view(-1, n_cls) if x.numel() else None
    except RuntimeError:
        flat = None
    if flat is None or flat.dtype not in (x.dtype, torch.float32):
        return _as(ew, x.dtype), 1, 0, 0
    return flat, 2, flat.stride(0), flat.stride(1)


def _sigmoid_prepare(logits: Tensor, targets: Tensor, weight: Optional[Tensor], alpha: Any,
                     pos_weight: Optional[Tensor], form: int, gamma: float) -> _Sig:
    x = raw(logits)
    n_cls = x.shape[-1] if x.dim() else 1
    sparse = targets.shape != logits.shape  # class indices of shape logits.shape[:-1] (checked by the callers)
    y = raw(targets, torch.int64) if sparse else raw(targets)
    if not sparse and (not y.is_floating_point() or y.dtype not in (x.dtype, torch.float32)):
        y = y.to(x.dtype if not y.is_floating_point() else torch.float32)
    apos, aneg = (1.0, 1.0) if alpha is None or isinstance(alpha, Tensor) else (float(alpha), 1.0 - float(alpha))
    cls, has_cls = _dummy(x.device, torch.float32), 0
    if isinstance(alpha, Tensor) or pos_weight is not None:
        f32 = dict(dtype=torch.float32, device=x.device)
        a = alpha.detach().to(**f32).reshape(-1).expand(n_cls) if isinstance(alpha, Tensor) \
            else torch.full((n_cls,), apos, **f32)
        an = 1.0 - a if isinstance(alpha, Tensor) else torch.full((n_cls,), aneg, **f32)
        pw = pos_weight.detach().to(**f32).reshape(-1).expand(n_cls) if pos_weight is not None \
            else torch.ones(n_cls, **f32)
        cls, has_cls = torch.stack([a, an, pw]), 1
    w, w_mode, w_rs, w_cs = _weight_layout(weight, x, n_cls)
    return _Sig(x, y, cls, w, n_cls, has_cls, 1, apos, aneg, w_mode, w_rs, w_cs, int(sparse), form, float(gamma))


def _sig_args(a: _Sig) -> tuple:
    return (a.n_cls, a.has_cls, a.cls_cs, a.apos, a.aneg, a.w_mode, a.w_rs, a.w_cs, a.sparse)


def _ew_forward(kernel: Any, tensors: tuple, meta: tuple, floats: tuple, consts: dict, reduction: str,
                normalizer: Any) -> tuple[Tensor, Tensor]:
    """An elementwise family's forward (sigmoid, Varifocal): ``kernel(*tensors, loss, part, inv, den, n, *meta,
    store, den_mode, *floats, den_value, **consts)`` over a persistent grid, then the finishing kernel
    unless it stores each element's loss or its grid is one program. Returns (loss, 1 / denominator)."""
    x = tensors[0]
    n, dev = x.numel(), x.device
    store = reduction == "none" and normalizer is None
    grid = _grid(n, SIGMOID_BLOCK, dev)
    r = _reduced(store, x.shape, x.dtype, grid, dev, reduction, normalizer, n)
    _launch(kernel, (grid,), (*tensors, r.loss, r.part, r.inv, r.den, r.scr, n, *meta, int(store), r.den_mode, *floats,
                              r.den_value), {**consts, "LAST": r.last}, SIGMOID_WARPS)
    return (r.loss, r.inv) if store else _reduced_out(r, None, x.dtype)


def _ew_backward(kernel: Any, tensors: tuple, meta: tuple, floats: tuple, consts: dict, inv: Tensor,
                 grad_out: Optional[Tensor], out: Optional[Tensor] = None) -> Tensor:
    """``kernel(*tensors, go, inv, grad, n, *meta, go_mode, *floats, **consts)``: the gradient, times
    ``grad_out`` (None: not applied) and ``inv[0]``, in one launch."""
    x = tensors[0]
    grad = torch.empty_like(x) if out is None else out
    if not x.numel():  # nothing to compute, and the kernel reads one grad_output value before its loop: an empty
        return grad    # one has no memory (a null pointer: a segfault in the interpreter, a fault on a GPU)
    go, go_mode, inv = _grad_out(grad_out, x, inv)
    _launch(kernel, (_grid(x.numel(), SIGMOID_BLOCK, x.device),), (*tensors, go, inv, grad, x.numel(), *meta, go_mode,
                                                                  *floats), consts, SIGMOID_WARPS)
    return grad


def _sigmoid_forward(a: _Sig, reduction: str, normalizer: Any) -> tuple[Tensor, Tensor]:
    """(loss, 1 / denominator) in two launches (one with ``reduction="none"``)."""
    return _ew_forward(_kernels()[1].sigmoid_fwd_kernel, (a.x, a.y, a.cls, a.w), _sig_args(a), (a.gamma,),
                       dict(FORM=a.form, BLOCK=SIGMOID_BLOCK), reduction, normalizer)


def _batched(grad_out: Optional[Tensor]) -> bool:
    """A ``grad_output`` without storage of its own (``is_grads_batched=True``, ``jacobian(vectorize=True)``,
    ``torch.func`` transforms): no kernel can read it, so the gradient is computed without it and
    multiplied by it with tensor ops, which batch."""
    if grad_out is None:
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(grad_out):
        return True
    try:
        grad_out.data_ptr()
    except (RuntimeError, NotImplementedError):
        return True
    return False


def _sigmoid_backward(a: _Sig, inv: Tensor, grad_out: Optional[Tensor], out: Optional[Tensor] = None) -> Tensor:
    """The gradient, times ``grad_out`` (None: not applied) and ``inv[0]``, in one launch."""
    if _batched(grad_out):
        return _sigmoid_backward(a, inv, None) * grad_out.to(a.x.dtype)
    return _ew_backward(_kernels()[1].sigmoid_bwd_kernel, (a.x, a.y, a.cls, a.w), _sig_args(a), (a.gamma,),
                        dict(FORM=a.form, BLOCK=SIGMOID_BLOCK), inv, grad_out, out)


def _grad_out(grad_out: Optional[Tensor], like: Tensor, inv: Tensor) -> tuple[Tensor, int, Tensor]:
    """(tensor, go_mode, inv): none (0), one value (1: a 1-element or fully expanded tensor), one per
    element / position (2, made contiguous in the logits' dtype). A float32 value for float16 / bfloat16
    logits (the grad_output of their float32 reduced loss; GradScaler's 2^16 is inf in float16) is
    folded into ``inv``, the float32 scale the kernel applies anyway: one small op, as the cast was."""
    if grad_out is None:
        return like, 0, inv
    if grad_out.numel() == 1 or all(st == 0 for st in grad_out.stride()):
        if grad_out.dtype != like.dtype and like.dtype in eager._HALF:
            return like, 0, inv * grad_out.reshape(-1)[:1].to(torch.float32)
        go = grad_out if grad_out.dtype == like.dtype else grad_out.to(like.dtype)
        return torch.resolve_neg(go), 1, inv
    return raw(grad_out, like.dtype), 2, inv


def _sigmoid_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], apos: Tensor, aneg: Tensor, pw: Tensor,
                  has_alpha: bool, per_class: bool, form: int, gamma: float, reduction: str,
                  den: Optional[Tensor], inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The registered op (``torch.compile``) and ``inplace_grad``: ``(loss, gradient / denominator)``."""
    _ops.check_sigmoid_args("triton_sigmoid_focal", logits, targets, weight, apos, aneg, pw, form, reduction, den)
    _check_device("triton_sigmoid_focal", logits)
    a = _sigmoid_prepare(logits, targets, weight, None, None, form, gamma)
    a = a._replace(cls=torch.stack([raw(apos), raw(aneg), raw(pw)]).to(torch.float32), has_cls=1)
    loss, inv = _sigmoid_forward(a, reduction, den)
    target = a.x if inplace and a.x.data_ptr() == logits.data_ptr() and not logits.is_neg() else None
    return loss, _sigmoid_backward(a, inv, None, target)


sigmoid_op = _ops.define("triton_sigmoid_focal", "sigmoid", _sigmoid_impl)


def sigmoid_focal(logits: Tensor, targets: Tensor, *, alpha: Any, gamma: float, weight: Optional[Tensor],
                  pos_weight: Optional[Tensor], soft_target: str, reduction: str, normalizer: Any,
                  inplace_grad: bool = False) -> Tensor:
    """See :func:`focalkit.sigmoid_focal_loss` (dense targets, or sparse class indices)."""
    sparse = targets.shape != logits.shape
    if inplace_grad or _checks.tracing(logits) or _checks.transforming():
        return _ops.sigmoid(sigmoid_op, _sigmoid_impl, logits, targets, alpha=alpha, gamma=gamma, weight=weight,
                            pos_weight=pos_weight, soft_target=soft_target, reduction=reduction,
                            normalizer=normalizer, inplace_grad=inplace_grad, sparse=sparse)
    ref = eager.sigmoid_reference(alpha=alpha, gamma=gamma, soft_target=soft_target, reduction=reduction,
                                  normalizer=normalizer, sparse=sparse)
    a = _sigmoid_prepare(logits, targets, weight, alpha, pos_weight, SOFT_FORMS.index(soft_target), gamma)
    meta = tuple(a)[4:]

    def compute(*_: Any) -> tuple[Tensor, tuple]:
        out, inv = _sigmoid_forward(a, reduction, normalizer)
        return out, (a.x, a.y, a.cls, a.w, inv)

    def grad_fn(x: Tensor, y: Tensor, cls: Tensor, w: Tensor, inv: Tensor, grad_out: Tensor) -> Tensor:
        return _sigmoid_backward(_Sig(x, y, cls, w, *meta), inv, grad_out)

    run = eager.Run("sigmoid_focal_loss", compute, ref, None, False, grad_fn)
    return eager.apply(run, logits, *eager.sigmoid_aux(targets, weight, pos_weight, alpha, normalizer))


# softmax ------------------------------------------------------------------------------------------

class _Smx(NamedTuple):
    z: Tensor
    y: Tensor
    q: Tensor
    w: Tensor
    n: int
    n_cls: int
    s: int
    tile: Tile
    dense: bool
    has_q: bool
    has_w: int
    ignore: int
    eps: float
    gamma: float


def _softmax_prepare(logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, ignore_index: int,
                     label_smoothing: float) -> _Smx:
    z = raw(logits)
    n, n_cls = z.shape[0], z.shape[1]
    s = math.prod(z.shape[2:])
    has_q = targets.is_floating_point()
    y, q = (_dummy(z.device, torch.int64), _as(targets, z.dtype)) if has_q else (raw(targets, torch.int64), z)
    if has_q and q.dtype != z.dtype and q.dtype != torch.float32:
        q = q.to(z.dtype)
    w = _dummy(z.device, torch.float32) if weight is None else raw(weight, torch.float32)
    tile = softmax_tile(n_cls, s > 1)
    return _Smx(z, y, q, w, n, n_cls, s, tile, has_q or label_smoothing > 0, has_q, int(weight is not None),
                int(ignore_index), float(label_smoothing), float(gamma))


def _smx_grid(a: _Smx) -> tuple:
    t = a.tile
    return (-(-a.s // t.block_p), a.n) if t.spatial else (-(-(a.n * a.s) // t.block_p),)


def _smx_const(a: _Smx) -> dict:
    t = a.tile  # in the kernels' parameter order
    return dict(SPATIAL=t.spatial, ONE_TILE=t.one_tile, DENSE=a.dense, HAS_Q=a.has_q, BLOCK_P=t.block_p,
                BLOCK_C=t.block_c)


def _softmax_forward(a: _Smx, reduction: str, normalizer: Any) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, 1 / denominator, per-position statistics of the chunked kernels)."""
    k_smx = _kernels()[2]
    dev = a.z.device
    positions = a.n * a.s
    store = reduction == "none" and normalizer is None
    grid = _smx_grid(a)
    launch = bool(positions and a.n_cls)
    r = _reduced(store, positions, a.z.dtype, math.prod(grid) if launch else 0, dev, reduction, normalizer,
                 positions if a.has_q else None)
    cnt = r.part if store or not r.finish else torch.empty_like(r.part)
    keep = not a.tile.one_tile and a.tile.block_c > 1  # the loop over few classes recomputes its statistics
    st = torch.empty((5 if a.dense else 3) * max(positions, 1), dtype=torch.float32, device=dev) if keep else r.inv
    if launch:
        _launch(k_smx.softmax_fwd_kernel, grid, (a.z, a.y, a.q, a.w, r.loss, r.part, cnt, r.inv, st, r.den, r.scr,
                                                 positions, a.n_cls, a.s, a.ignore, a.eps, a.gamma, a.has_w,
                                                 int(store), r.den_mode, r.den_value),
                {**_smx_const(a), "LAST": r.last}, a.tile.num_warps)
    elif store:
        r.inv.fill_(1.0)
    else:
        r.part.zero_()
        cnt.zero_()
    if store:
        return r.loss.view(a.z.shape[:1] + a.z.shape[2:]), r.inv, st
    return (*_reduced_out(r, cnt, a.z.dtype), st)


def _softmax_backward(a: _Smx, inv: Tensor, st: Tensor, grad_out: Optional[Tensor],
                      out: Optional[Tensor] = None) -> Tensor:
    if _batched(grad_out):
        go = grad_out.to(a.z.dtype)
        return _softmax_backward(a, inv, st, None) * (go.unsqueeze(1) if go.dim() else go)
    k_smx = _kernels()[2]
    grad = torch.empty_like(a.z) if out is None else out
    go, go_mode, inv = _grad_out(grad_out, a.z, inv)
    if a.z.numel():
        _launch(k_smx.softmax_bwd_kernel, _smx_grid(a), (a.z, a.y, a.q, a.w, go, inv, st, grad, a.n * a.s, a.n_cls,
                                                         a.s, a.ignore, a.eps, a.gamma, a.has_w, go_mode),
                _smx_const(a), a.tile.num_warps)
    return grad


def _softmax_impl(logits: Tensor, targets: Tensor, weight: Optional[Tensor], gamma: float, ignore_index: int,
                  label_smoothing: float, reduction: str, den: Optional[Tensor],
                  inplace: bool = False) -> tuple[Tensor, Tensor]:
    """The registered op (``torch.compile``) and ``inplace_grad``: ``(loss, gradient / denominator)``."""
    _ops.check_softmax_args("triton_softmax_focal", logits, targets, weight, reduction, den)
    _check_device("triton_softmax_focal", logits)
    a = _softmax_prepare(logits, targets, weight, gamma, ignore_index, label_smoothing)
    loss, inv, st = _softmax_forward(a, reduction, den)
    target = a.z if inplace and a.z.data_ptr() == logits.data_ptr() and not logits.is_neg() else None
    return loss, _softmax_backward(a, inv, st, None, target)


softmax_op = _ops.define("triton_softmax_focal", "softmax", _softmax_impl)


def softmax_focal(logits: Tensor, targets: Tensor, *, gamma: float, weight: Optional[Tensor], ignore_index: int,
                  label_smoothing: float, reduction: str, normalizer: Any, inplace_grad: bool = False) -> Tensor:
    """See :func:`focalkit.softmax_focal_loss`."""
    if inplace_grad or _checks.tracing(logits) or _checks.transforming():
        return _ops.softmax(softmax_op, _softmax_impl, logits, targets, gamma=gamma, weight=weight,
                            ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
                            normalizer=normalizer, inplace_grad=inplace_grad)
    ref = eager.softmax_reference(gamma=gamma, ignore_index=ignore_index, label_smoothing=label_smoothing,
                                  reduction=reduction, normalizer=normalizer)
    a = _softmax_prepare(logits, targets, weight, gamma, ignore_index, label_smoothing)
    meta = tuple(a)[4:]

    def compute(*_: Any) -> tuple[Tensor, tuple]:
        out, inv, st = _softmax_forward(a, reduction, normalizer)
        return out, (a.z, a.y, a.q, a.w, inv, st)

    def grad_fn(z: Tensor, y: Tensor, q: Tensor, w: Tensor, inv: Tensor, st: Tensor, grad_out: Tensor) -> Tensor:
        return _softmax_backward(_Smx(z, y, q, w, *meta), inv, st, grad_out)

    run = eager.Run("softmax_focal_loss", compute, ref, 1, False, grad_fn)
    return eager.apply(run, logits, targets, weight, eager.tensor_or_none(normalizer))


# Varifocal and Distribution Focal Loss -----------------------------------------------------------

def dfl_tile(n_bins: int) -> Optional[Tile]:
    """The smallest DFL tile that holds a row's bins, or None (more than 256 bins: eager)."""
    for t in DFL_TILES:
        if n_bins <= t.block_c:
            return t
    return None


def dfl_unsupported(logits: Tensor) -> Optional[str]:
    """Why the DFL kernel cannot take these logits ((N, n+1), at most 256 bins), or None."""
    why = unsupported(logits)
    if why is None and dfl_tile(logits.shape[1]) is None:
        why = f"{logits.shape[1]} bins do not fit one tile of the DFL kernel (at most {DFL_TILES[-1].block_c})"
    return why


class _Vfl(NamedTuple):
    x: Tensor
    q: Tensor
    lab: Tensor
    w: Tensor
    n_cls: int
    has_lab: int
    w_mode: int
    w_rs: int
    w_cs: int
    iou: int
    alpha: float
    gamma: float


def _vfl_prepare(logits: Tensor, targets: Tensor, weight: Optional[Tensor], labels: Optional[Tensor], alpha: float,
                 gamma: float, iou_weighted: bool) -> _Vfl:
    x = raw(logits)
    n_cls = x.shape[-1] if x.dim() else 1
    lab = x if labels is None else _as(labels, x.dtype)
    w, w_mode, w_rs, w_cs = _weight_layout(weight, x, n_cls)
    return _Vfl(x, _as(targets, x.dtype), lab, w, n_cls, int(labels is not None), w_mode, w_rs, w_cs,
                int(iou_weighted), float(alpha), float(gamma))


def _vfl_backward(a: _Vfl, inv: Tensor, grad_out: Optional[Tensor]) -> Tensor:
    if _batched(grad_out):
        return _vfl_backward(a, inv, None) * grad_out.to(a.x.dtype)
    return _ew_backward(_kernels()[3].vfl_bwd_kernel, tuple(a)[:4], tuple(a)[4:10], tuple(a)[10:],
                        dict(BLOCK=SIGMOID_BLOCK), inv, grad_out)


def varifocal_loss(logits: Tensor, targets: Tensor, *, alpha: float, gamma: float, iou_weighted: bool,
                   weight: Optional[Tensor], labels: Optional[Tensor], reduction: str, normalizer: Any) -> Tensor:
    """See :func:`focalkit.varifocal_loss`: three launches per forward + backward (two for one program),
    as the sigmoid's."""
    ref = eager.varifocal_reference(alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction,
                                    normalizer=normalizer)
    a = _vfl_prepare(logits, targets, weight, labels, alpha, gamma, iou_weighted)
    meta = tuple(a)[4:]

    def compute(*_: Any) -> tuple[Tensor, tuple]:
        out, inv = _ew_forward(_kernels()[3].vfl_fwd_kernel, tuple(a)[:4], tuple(a)[4:10], tuple(a)[10:],
                               dict(BLOCK=SIGMOID_BLOCK), reduction, normalizer)
        return out, (a.x, a.q, a.lab, a.w, inv)

    def grad_fn(x: Tensor, q: Tensor, lab: Tensor, w: Tensor, inv: Tensor, grad_out: Tensor) -> Tensor:
        return _vfl_backward(_Vfl(x, q, lab, w, *meta), inv, grad_out)

    run = eager.Run("varifocal_loss", compute, ref, None, False, grad_fn)
    return eager.apply(run, logits, *eager.vfl_aux(targets, weight, labels, normalizer))


class _Dfl(NamedTuple):
    z: Tensor
    y: Tensor
    w: Tensor
    has_w: int
    tile: Tile


def _dfl_prepare(logits: Tensor, targets: Tensor, weight: Optional[Tensor]) -> _Dfl:
    z = raw(logits)
    w = _dummy(z.device, torch.float32) if weight is None else raw(weight.expand(z.shape[0]), torch.float32)
    return _Dfl(z, raw(targets, torch.float32), w, int(weight is not None), dfl_tile(z.shape[1]))


def _dfl_launch(kernel: Any, a: _Dfl, ptrs: tuple, flags: tuple, **consts: Any) -> None:
    """``kernel(z, y, w, *ptrs, P, C, has_w, *flags)`` over tiles of rows (nothing to launch for no rows)."""
    n_rows, n_bins = a.z.shape
    if n_rows:
        _launch(kernel, (-(-n_rows // a.tile.block_p),), (a.z, a.y, a.w, *ptrs, n_rows, n_bins, a.has_w, *flags),
                dict(BLOCK_P=a.tile.block_p, BLOCK_C=a.tile.block_c, **consts), a.tile.num_warps)


def _dfl_forward(a: _Dfl, reduction: str, normalizer: Any) -> tuple[Tensor, Tensor]:
    """(loss, 1 / denominator): one launch, and the finishing kernel unless each row's loss is stored or
    the grid is one program."""
    dev, n_rows = a.z.device, a.z.shape[0]
    store = reduction == "none" and normalizer is None
    r = _reduced(store, n_rows, a.z.dtype, -(-n_rows // a.tile.block_p), dev, reduction, normalizer, n_rows)
    if not n_rows:  # no rows: no launch, so 1 / denominator = 1 and a sum of 0 come from here
        if store:
            r.inv.fill_(1.0)
        else:
            r.part.zero_()
    _dfl_launch(_kernels()[3].dfl_fwd_kernel, a, (r.loss, r.part, r.inv, r.den, r.scr),
                (int(store), r.den_mode, r.den_value), LAST=r.last)
    return (r.loss, r.inv) if store else _reduced_out(r, None, a.z.dtype)


def _dfl_backward(a: _Dfl, inv: Tensor, grad_out: Optional[Tensor]) -> Tensor:
    if _batched(grad_out):
        go = grad_out.to(a.z.dtype)
        return _dfl_backward(a, inv, None) * (go.unsqueeze(1) if go.dim() else go)
    grad = torch.empty_like(a.z)
    go, go_mode, inv = _grad_out(grad_out, a.z, inv)
    _dfl_launch(_kernels()[3].dfl_bwd_kernel, a, (go, inv, grad), (go_mode,))
    return grad


def distribution_focal_loss(logits: Tensor, targets: Tensor, *, weight: Optional[Tensor], reduction: str,
                            normalizer: Any) -> Tensor:
    """See :func:`focalkit.distribution_focal_loss`: tiles of rows x bins, three launches per step (two
    for one program)."""
    ref = eager.dfl_reference(reduction=reduction, normalizer=normalizer)
    a = _dfl_prepare(logits, targets, weight)
    meta = tuple(a)[3:]

    def compute(*_: Any) -> tuple[Tensor, tuple]:
        out, inv = _dfl_forward(a, reduction, normalizer)
        return out, (a.z, a.y, a.w, inv)

    def grad_fn(z: Tensor, y: Tensor, w: Tensor, inv: Tensor, grad_out: Tensor) -> Tensor:
        return _dfl_backward(_Dfl(z, y, w, *meta), inv, grad_out)

    run = eager.Run("distribution_focal_loss", compute, ref, 1, False, grad_fn)
    return eager.apply(run, logits, targets, weight, eager.tensor_or_none(normalizer))
