"""What layout Triton gives a row-wise softmax over few, unaligned classes (C = 19, the flattened
segmentation row at 4 % of copy bandwidth on the H200), compiled for sm_90 on a machine without a GPU.
Three formulations of the same log-sum-exp per row, each printed with its PTX size, warp shuffles and
``ex2`` instructions and the blocked layout Triton chose:

* ``rows_tile``: a [rows, classes] tile, as ``softmax_fwd_kernel`` (2-D, one tile) loads it;
* ``cols_tile``: the same tile transposed, [classes, rows];
* ``loop_cols``: one row per thread, a loop over the classes (PyTorch's spatial softmax).

Both tiles put 32 threads on the class axis when ``C`` is not known to be a multiple of 16, so each
row's reductions take warp shuffles and every thread repeats its rows' scalar maths; the loop has no
shuffle at all. On this evidence 2-D rows of at most 32 classes (a count not a multiple of 16) now run
the loop (``backends/triton.py``, ``ROW_LOOP``: the chunked softmax kernel with one class per chunk);
``benchmarks/gpu_check.sh`` times it against the tile table side by side (the "tiles" figure of the
flattened segmentation rows) and ``benchmarks/sweep_gpu.py`` tunes it. ``python
benchmarks/triton_layout_probe.py``."""

from __future__ import annotations

import os
import re

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402


@triton.jit
def rows_tile(z_ptr, out_ptr, P, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    k = tl.arange(0, BLOCK_C)
    mask = (rows < P)[:, None] & (k < C)[None, :]
    z = tl.load(z_ptr + rows[:, None] * C + k[None, :], mask=mask, other=-float("inf"))
    m = tl.max(z, axis=1)
    s = tl.sum(tl.exp(z - m[:, None]), axis=1)
    tl.store(out_ptr + rows, m + tl.log(s), mask=rows < P)


@triton.jit
def cols_tile(z_ptr, out_ptr, P, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    k = tl.arange(0, BLOCK_C)
    mask = (k < C)[:, None] & (rows < P)[None, :]
    z = tl.load(z_ptr + k[:, None] + rows[None, :] * C, mask=mask, other=-float("inf"))
    m = tl.max(z, axis=0)
    s = tl.sum(tl.exp(z - m[None, :]), axis=0)
    tl.store(out_ptr + rows, m + tl.log(s), mask=rows < P)


@triton.jit
def loop_cols(z_ptr, out_ptr, P, C, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    rm = rows < P
    m = tl.full([BLOCK_P], -float("inf"), tl.float32)
    for k in range(0, C):
        m = tl.maximum(m, tl.load(z_ptr + rows * C + k, mask=rm, other=-float("inf")))
    s = tl.zeros([BLOCK_P], tl.float32)
    for k in range(0, C):
        s += tl.exp(tl.load(z_ptr + rows * C + k, mask=rm, other=-float("inf")) - m)
    tl.store(out_ptr + rows, m + tl.log(s), mask=rm)


def main() -> None:
    sig = {"z_ptr": "*fp32", "out_ptr": "*fp32", "P": "i32", "C": "i32", "BLOCK_P": "constexpr", "BLOCK_C": "constexpr"}
    print("| formulation | PTX lines | warp shuffles | ex2 | layout |\n|---|---|---|---|---|")
    for fn, block_p in ((rows_tile, 64), (cols_tile, 64), (loop_cols, 128)):
        src = ASTSource(fn=fn, signature=sig, constexprs={(4,): block_p, (5,): 32})
        c = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx, ttgir = c.asm["ptx"], c.asm["ttgir"]
        layout = re.search(r"#ttg\.blocked<\{([^}]*)\}>", ttgir)
        print(f"| {fn.__name__} | {ptx.count(chr(10))} | {len(re.findall('shfl.sync', ptx))} | "
              f"{len(re.findall(r'ex2[.]', ptx))} | {layout.group(1) if layout else '-'} |")


if __name__ == "__main__":
    main()
