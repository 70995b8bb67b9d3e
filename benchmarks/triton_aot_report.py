"""Registers, spills, shared memory and load width of every Triton kernel specialisation with float32
logits, compiled ahead of time for sm_90 on this machine, both for aligned sizes (multiples of 16, the
variant Triton specialises) and for sizes of any value (no GPU needed; Triton's ``ptxas`` and
``cuobjdump``). Writes ``results/triton_aot.json`` and prints the Markdown table of
``benchmarks/RESULTS.md`` ("Triton kernels, compiled ahead of time")."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"

import torch  # noqa: E402

from focalkit.backends import triton as tb  # noqa: E402
from focalkit.backends._triton import aot  # noqa: E402


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in tb.specialisations():
            ptrs = dict(spec.pointers)
            x = ptrs.get("x_ptr", ptrs.get("z_ptr", ptrs.get("out_ptr")))
            if x != torch.float32 or any(v not in (torch.float32, torch.int64) for v in ptrs.values()):
                continue
            res = aot.resources(aot.compile_spec(spec, 90, aligned=True), tmp)
            any_size = aot.resources(aot.compile_spec(spec, 90), tmp)  # what a size such as C = 19 gets
            rows.append({"kernel": spec.kernel.split(".")[1], "constexprs": dict(spec.constexprs),
                         "num_warps": spec.num_warps, **res,
                         "any_size": {k: any_size.get(k, 0) for k in ("REG", "STACK", "max_vector_load")}})
    path = Path(__file__).resolve().parent / "results" / "triton_aot.json"
    path.write_text(json.dumps(rows, indent=1) + "\n")
    print("| kernel | constexprs | warps | registers | stack (spills) | shared | widest load "
          "| any size: registers / stack / widest load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = ", ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in r["constexprs"].items())
        a = r["any_size"]
        print(f"| {r['kernel']} | {c} | {r['num_warps']} | {r.get('REG')} | {r.get('STACK', 0)} | {r.get('SHARED', 0)} "
              f"| {4 * r['max_vector_load']} B | {a['REG']} / {a['STACK']} / {4 * a['max_vector_load']} B |")


if __name__ == "__main__":
    main()
