"""Ahead-of-time compilation of the Triton kernels for a GPU target, on a machine without one
(``triton.compile`` runs Triton's front end, LLVM and the bundled ``ptxas``). Used by
``tests/backends/test_triton_aot.py`` (every specialisation of
:func:`focalkit.backends.triton.specialisations`, for sm_80 and sm_90) and by
``benchmarks/triton_aot_report.py`` (registers, spills, shared memory and load widths). AMD GPUs take
the same path (a ROCm build of torch calls them ``cuda``), so the test also compiles for gfx942 (MI300),
through Triton's AMD back end (LLVM's AMDGPU target and its linker, in the wheel), every kernel and
constexpr combination (the report: the whole table): a kernel that compiles for NVIDIA only would
raise on every AMD tensor.

The interpreter that CI runs the kernels in checks none of what the compiler checks (a plain module
global read inside a kernel works there and fails on a GPU); this does.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from typing import Any

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from focalkit.backends import triton as tb

FLOAT_ARGS = {"apos", "aneg", "gamma", "eps", "den_value", "alpha"}
SIZE_ARGS = {"n", "P", "C", "S", "n_part"}
_TY = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int64: "i64"}


def kernel(spec: tb.Spec) -> Any:
    from focalkit.backends._triton import common, quality, sigmoid, softmax

    mod, name = spec.kernel.split(".")
    fn = getattr({"common": common, "sigmoid": sigmoid, "softmax": softmax, "quality": quality}[mod], name)
    return getattr(fn, "fn", fn) if not hasattr(fn, "arg_names") else fn


def specialised_sizes(spec: tb.Spec) -> tuple:
    """The size arguments Triton specialises at run time (divisibility by 16): those the kernel does not
    list in ``do_not_specialize``. A launch can request each one's divisible variant."""
    fn = kernel(spec)
    dns = {fn.arg_names[d] if isinstance(d, int) else d for d in getattr(fn, "do_not_specialize", ()) or ()}
    return tuple(n for n in fn.arg_names if n in SIZE_ARGS and n not in dns)


def source(spec: tb.Spec, int_type: str = "i32", aligned: Any = False) -> ASTSource:
    """``aligned``: pointers and sizes marked divisible by 16, as Triton specialises them at run time
    for aligned tensors whose sizes are multiples of 16 (what vectorised loads need): True for every
    size argument, or the names of the sizes to mark (the pointers are marked either way)."""
    fn = kernel(spec)
    consts = dict(spec.constexprs)
    ptrs = dict(spec.pointers)
    sig, cx, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in consts:
            sig[name] = "constexpr"
            cx[(i,)] = consts[name]
        elif name.endswith("_ptr"):
            sig[name] = "*" + _TY[ptrs[name]]
            if aligned:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in FLOAT_ARGS:
            sig[name] = "fp32"
        else:
            sig[name] = int_type if name in SIZE_ARGS else "i32"
            if name in SIZE_ARGS and (aligned is True or (aligned and name in aligned)):
                attrs[(i,)] = [["tt.divisibility", 16]]
    missing = set(consts) - set(fn.arg_names) | (set(ptrs) - set(fn.arg_names))
    if missing:
        raise ValueError(f"{spec.kernel}: the table names arguments the kernel does not have: {missing}")
    return ASTSource(fn=fn, signature=sig, constexprs=cx, attrs=attrs)


def target(arch: Any) -> GPUTarget:
    """A CUDA compute capability (``80``, ``90``: 32-lane warps) or an AMD architecture (``"gfx942"``,
    ``"gfx90a"``: 64-lane wavefronts)."""
    return GPUTarget("hip", arch, 64) if isinstance(arch, str) else GPUTarget("cuda", arch, 32)


def compile_spec(spec: tb.Spec, capability: Any, int_type: str = "i32", aligned: Any = False) -> Any:
    """``capability``: as :func:`target` takes it."""
    return triton.compile(source(spec, int_type, aligned), target=target(capability),
                          options={"num_warps": spec.num_warps})


def first_of_dtype(spec: tb.Spec) -> bool:
    """Whether ``spec`` is its kernel's first specialisation with its logits' dtype (a sample of the
    half-precision ones for a target too slow to compile the whole table for in CI)."""
    return spec in _firsts()


@functools.lru_cache(maxsize=1)
def _firsts() -> frozenset:
    first = {}
    for s in tb.specialisations():
        first.setdefault((s.kernel, logits_dtype(s)), s)
    return frozenset(first.values())


def logits_dtype(spec: tb.Spec) -> torch.dtype:
    """The dtype of the logits (or, for the finishing kernel, the output) a specialisation takes."""
    ptrs = dict(spec.pointers)
    return ptrs.get("x_ptr", ptrs.get("z_ptr", ptrs.get("out_ptr")))


def binary(compiled: Any) -> bytes:
    """The device code object: a cubin (NVIDIA) or an hsaco (AMD)."""
    return compiled.asm.get("cubin") or compiled.asm.get("hsaco") or b""


def tool(name: str) -> str:
    """A CUDA binary utility shipped in Triton's wheel (cuobjdump, nvdisasm, ptxas)."""
    here = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    return here if os.path.exists(here) else (shutil.which(name) or name)


def _amd_resources(compiled: Any) -> dict:
    """:func:`resources` of an AMD kernel, from the metadata and code of its AMDGCN assembly: vector
    registers (``REG``), scalar ones, the private segment (``STACK`` / ``LOCAL``: scratch, where vector
    registers spill), LDS (``SHARED``), vector registers spilled to scratch (``spill_stores``, memory
    traffic), scalar registers spilled into vector-register lanes (``SGPR_SPILLS``, no memory), and the
    widest global load in 4-byte words (``global_load_dwordx4`` = 16 bytes per lane)."""
    asm = compiled.asm["amdgcn"]

    def meta(key: str) -> int:
        found = re.findall(rf"\.{key}:\s+(\d+)", asm)
        return int(found[0]) if found else 0

    widths = [int(w or 1) for w in re.findall(r"(?:global|buffer)_load_dword(?:x(\d))?\b", asm)]
    private = meta("private_segment_fixed_size")
    return {"REG": meta("vgpr_count"), "SGPR": meta("sgpr_count"), "AGPR": meta("agpr_count"), "STACK": private,
            "LOCAL": private, "SHARED": meta("group_segment_fixed_size"), "max_vector_load": max(widths, default=1),
            "spill_stores": meta("vgpr_spill_count"), "SGPR_SPILLS": meta("sgpr_spill_count")}


def resources(compiled: Any, workdir: str) -> dict:
    """Registers, stack (spills), shared memory from ``cuobjdump -res-usage``, and the widest global
    load in the PTX (``ld.global.v4`` = 16 bytes per thread). An AMD kernel: :func:`_amd_resources`."""
    if "amdgcn" in compiled.asm:
        return _amd_resources(compiled)
    path = os.path.join(workdir, "k.cubin")
    with open(path, "wb") as f:
        f.write(compiled.asm["cubin"])
    out = subprocess.run([tool("cuobjdump"), "-res-usage", path], capture_output=True, text=True).stdout
    res = {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", out)}
    ptx = compiled.asm["ptx"]
    widths = [int(w) for w in re.findall(r"ld\.global(?:\.[a-z0-9]+)*?\.v(\d)\.", ptx)]
    res["max_vector_load"] = max(widths, default=1)
    res["spill_stores"] = len(re.findall(r"st\.local", ptx))
    # the last program's ticket (common.reduce_finish): an acquire-release atomic at GPU scope, after a
    # barrier that follows the partials' stores, and the partials read past L1
    tickets = [m.start() for m in re.finditer(r"atom\.global\.gpu\.acq_rel\.add\.f32", ptx)]
    res["ticket_atomics"] = len(tickets)
    res["cg_loads"] = len(re.findall(r"ld\.global\.cg", ptx))
    if tickets:
        before = ptx[:tickets[0]]
        res["barrier_before_ticket"] = before.rfind("bar.sync") > before.rfind("st.global")
    return res
