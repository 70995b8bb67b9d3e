"""Registers, spills, shared memory and load width of every Triton kernel specialisation with float32
logits, compiled ahead of time for sm_90 on this machine, both for aligned sizes (multiples of 16, the
variant Triton specialises) and for sizes of any value (no GPU needed; Triton's ``ptxas`` and
``cuobjdump``). Writes ``results/triton_aot.json`` and prints the Markdown table of
``benchmarks/RESULTS.md`` ("Triton kernels, compiled ahead of time").

``--arch gfx942`` (or another AMD architecture): the same for an AMD GPU through Triton's AMD back end
(vector registers, scratch, LDS, spilled registers and the widest load, read from the AMDGCN assembly),
into ``results/triton_aot_gfx942.json``. ``--compile-all``: first every specialisation of the table, of
every dtype, at both sizes (any value; multiples of 16 with aligned pointers), counted and checked for
registers spilled to scratch (what CI compiles of it for AMD is a subset: ``tests/backends/test_triton_aot.py``)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"

import torch  # noqa: E402

from focalkit.backends import triton as tb  # noqa: E402
from focalkit.backends._triton import aot  # noqa: E402


def compile_all(arch, tmp) -> dict:
    """Every specialisation at both sizes: counts, failures, and kernels spilling (from ``aot.resources``)."""
    import time

    import triton

    t0, done, failed, spills, sgpr = time.time(), 0, [], 0, 0
    specs = list(tb.specialisations())
    for spec in specs:
        sizes = aot.specialised_sizes(spec)
        for aligned in (False, sizes) if sizes else (False,):
            try:
                res = aot.resources(aot.compile_spec(spec, arch, aligned=aligned), tmp)
            except Exception as exc:  # noqa: BLE001 - a report: every failure is listed
                failed.append(f"{spec} aligned={aligned}: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            done += 1
            spills += bool(res.get("spill_stores") or res.get("LOCAL"))
            sgpr += bool(res.get("SGPR_SPILLS"))
    return {"arch": arch, "triton": triton.__version__, "specialisations": len(specs), "compiled": done,
            "failed": failed, "with_spills": spills, "with_sgpr_spills": sgpr, "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="90", help="a CUDA capability (90) or an AMD architecture (gfx942)")
    ap.add_argument("--compile-all", action="store_true", help="every specialisation, every dtype, both sizes")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="where the JSON goes")
    args = ap.parse_args()
    arch = int(args.arch) if args.arch.isdigit() else args.arch
    rows, whole = [], None
    with tempfile.TemporaryDirectory() as tmp:
        if args.compile_all:
            whole = compile_all(arch, tmp)
            print(f"{arch}: {whole['compiled']} compiled of {whole['specialisations']} specialisations at both sizes, "
                  f"{len(whole['failed'])} failed, {whole['with_spills']} spilling to scratch, "
                  f"{whole['with_sgpr_spills']} spilling scalar registers into vector lanes "
                  f"(triton {whole['triton']}, {whole['seconds']:.0f} s)\n")
        for spec in tb.specialisations():
            if aot.logits_dtype(spec) != torch.float32 or any(v not in (torch.float32, torch.int64)
                                                               for _, v in spec.pointers):
                continue
            res = aot.resources(aot.compile_spec(spec, arch, aligned=True), tmp)
            any_size = aot.resources(aot.compile_spec(spec, arch), tmp)  # what a size such as C = 19 gets
            rows.append({"kernel": spec.kernel.split(".")[1], "constexprs": dict(spec.constexprs),
                         "num_warps": spec.num_warps, **res,
                         "any_size": {k: any_size.get(k, 0) for k in ("REG", "STACK", "max_vector_load")}})
    name = "triton_aot.json" if arch == 90 else f"triton_aot_{arch}.json"
    path = Path(args.out) / name
    path.write_text(json.dumps(rows if whole is None else {"compile_all": whole, "rows": rows}, indent=1) + "\n")
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
