"""Every Triton kernel specialisation the launchers can request compiles for real GPUs, on a machine
without one: ``focalkit.backends.triton.specialisations()`` (the one table beside the launchers), for
sm_80 and sm_90, through Triton's own front end, LLVM and ``ptxas``. The interpreter that runs the
kernels elsewhere in CI accepts what a GPU rejects (a plain float module global inside a kernel was
one); this test does not. A ROCm build of torch calls AMD GPUs ``cuda`` and takes the same kernels, so
every kernel and constexpr combination also compiles for gfx942 (MI300) through Triton's AMD back end,
with no register spilled to scratch.

Also checked here: every launch the test suite makes requests a listed specialisation
(``test_launches_are_listed``), the forward / backward kernels load 16 bytes per thread where the
tensors are aligned (``ld.global.v4`` in the PTX), and the forwards' last-program ticket is an
acquire-release atomic at GPU scope after a barrier that follows the partials' stores."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")

from focalkit.backends import triton as tb  # noqa: E402

SPECS = list(tb.specialisations())
CAPS = (80, 90)
AMD = ("gfx942",)  # MI300 (CDNA3); benchmarks/triton_aot_report.py --arch gfx90a reads MI200 too


def _compile_all(cap, lo: int, hi: int, step: int = 1, amd_subset: bool = False) -> list:
    """In a subprocess (Triton's compiler holds global state; two run in parallel): the failures of the
    specialisations ``[lo:hi:step]``. ``cap``: a CUDA capability, or an AMD architecture (a string),
    whose kernels must also spill no vector register to scratch; ``amd_subset``: see
    :func:`test_the_kernels_compile_for_amd_gfx942_without_spills`."""
    code = textwrap.dedent(f"""
        import json, os, sys, tempfile
        os.environ["TRITON_INTERPRET"] = "0"
        from focalkit.backends import triton as tb
        from focalkit.backends._triton import aot
        specs = list(tb.specialisations())[{lo}:{hi}:{step}]
        bad = []
        tmp = tempfile.mkdtemp()
        amd = {isinstance(cap, str)}
        seen = set()
        for i, spec in enumerate(specs):
            first = spec.kernel not in seen if {amd_subset} else i == 0 or spec.kernel != specs[i - 1].kernel
            seen.add(spec.kernel)
            if {amd_subset} and str(aot.logits_dtype(spec)) != "torch.float32" and not aot.first_of_dtype(spec):
                continue
            ints = ("i32", "i64") if first else ("i32",)
            # the variants a launch can request: sizes of any value, and (sm_90) each size Triton
            # specialises at run time divisible by 16, with aligned pointers (the AMD subset: the
            # latter where the kernel has such sizes, the first of each kernel in both)
            variants = [(t, False) for t in ints]
            if ({cap!r} == 90 or amd) and aot.specialised_sizes(spec):
                variants.append(("i32", aot.specialised_sizes(spec)))
                if {amd_subset} and not first:
                    variants = variants[1:]
            for int_type, aligned in variants:
                try:
                    out = aot.compile_spec(spec, {cap!r}, int_type, aligned)
                    assert aot.binary(out), "no device code"
                    if amd:  # read from the assembly, no tool to run
                        res = aot.resources(out, tmp)
                        assert res["spill_stores"] == 0 and res["LOCAL"] == 0, f"spills: {{res}}"
                except Exception as exc:
                    bad.append(f"{{spec}} {{int_type}} aligned={{aligned}}: {{type(exc).__name__}}: {{str(exc)[:400]}}")
        print(json.dumps(bad))
    """)
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        return [f"compiler process failed: {r.stderr[-3000:]}"]
    import json

    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_table_is_not_empty_and_names_every_kernel():
    kernels = {s.kernel for s in SPECS}
    assert kernels == {"sigmoid.sigmoid_fwd_kernel", "sigmoid.sigmoid_bwd_kernel", "common.finish_kernel",
                       "softmax.softmax_fwd_kernel", "softmax.softmax_bwd_kernel", "quality.vfl_fwd_kernel",
                       "quality.vfl_bwd_kernel", "quality.dfl_fwd_kernel", "quality.dfl_bwd_kernel"}
    assert len(SPECS) == len(set(SPECS))


def test_sizes_that_index_rows_are_specialised():
    """Triton learns a size's divisibility by 16 only where the kernel lets it specialise: the rows of
    2-D softmax and DFL logits start at ``row * C``, so ``C`` must be specialised there for 16-byte
    loads (a do_not_specialize ``C`` made every such load 4 bytes wide and put one class per thread).
    Read from the compiled kernels (the interpreter drops ``do_not_specialize``)."""
    code = textwrap.dedent("""
        import json, os
        os.environ["TRITON_INTERPRET"] = "0"
        from focalkit.backends import triton as tb
        from focalkit.backends._triton import aot
        print(json.dumps({s.kernel: aot.specialised_sizes(s) for s in tb.specialisations()}))
    """)
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    import json

    got = json.loads(r.stdout.strip().splitlines()[-1])
    for k in ("softmax.softmax_fwd_kernel", "softmax.softmax_bwd_kernel", "quality.dfl_fwd_kernel",
              "quality.dfl_bwd_kernel"):
        assert "C" in got[k], (k, got[k])
    for k in ("sigmoid.sigmoid_fwd_kernel", "quality.vfl_fwd_kernel"):
        assert got[k] == ["n"], (k, got[k])


def _compile_every_spec(targets, amd_subset: bool = False) -> None:
    n, half = len(SPECS), len(SPECS) // 2
    # two processes: halves of the table, or (the AMD subset, which skips most half-precision rows)
    # every other row, to share the work evenly
    parts = ((0, n, 2), (1, n, 2)) if amd_subset else ((0, half, 1), (half, n, 1))
    jobs = [(cap, *part, amd_subset) for cap in targets for part in parts]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for part in pool.map(lambda j: _compile_all(*j), jobs) for f in part]
    assert not failures, "\n".join(failures[:20])


def test_every_specialisation_compiles_for_sm80_and_sm90():
    _compile_every_spec(CAPS)


def test_the_kernels_compile_for_amd_gfx942_without_spills():
    """Every kernel and constexpr combination with float32 logits, and each kernel's first float16 and
    bfloat16 specialisation, for MI300: as aligned launches request them (sizes Triton specialises
    divisible by 16), the first of each kernel for sizes of any value too, with no vector register
    spilled to scratch. The whole table, each specialisation at both sizes, compiles too:
    ``benchmarks/triton_aot_report.py --arch gfx942 --compile-all`` (about ten minutes here, too long for
    CI)."""
    _compile_every_spec(AMD, amd_subset=True)


def test_a_plain_module_global_fails_ahead_of_time():
    """The check above can fail: a kernel reading a non-constexpr global (the bug that made
    softmax_focal_loss raise on every CUDA tensor) is refused by the compiler, not by the interpreter."""
    code = textwrap.dedent("""
        import os
        os.environ["TRITON_INTERPRET"] = "0"
        import triton, triton.language as tl
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        import focalkit._probe_global as m
        src = ASTSource(fn=m.k, signature={"x_ptr": "*fp32", "BLOCK": "constexpr"},
                        constexprs={(1,): 128})
        try:
            triton.compile(src, target=GPUTarget("cuda", 90, 32))
        except Exception as exc:
            print("REFUSED", "global" in str(exc).lower())
        else:
            print("COMPILED")
    """)
    probe = textwrap.dedent("""
        import triton, triton.language as tl
        LN2 = 0.6931471805599453

        @triton.jit
        def k(x_ptr, BLOCK: tl.constexpr):
            o = tl.arange(0, BLOCK)
            tl.store(x_ptr + o, tl.load(x_ptr + o) * LN2)
    """)
    import focalkit

    path = os.path.join(os.path.dirname(focalkit.__file__), "_probe_global.py")
    with open(path, "w") as f:
        f.write(probe)
    try:
        env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    finally:
        os.remove(path)
    assert "REFUSED True" in r.stdout, r.stdout + r.stderr[-2000:]


@pytest.mark.parametrize("kernel", ["sigmoid.sigmoid_fwd_kernel", "sigmoid.sigmoid_bwd_kernel",
                                    "softmax.softmax_fwd_kernel", "softmax.softmax_bwd_kernel",
                                    "quality.vfl_fwd_kernel", "quality.vfl_bwd_kernel",
                                    "quality.dfl_fwd_kernel", "quality.dfl_bwd_kernel"])
def test_aligned_loads_are_16_bytes_wide(kernel, tmp_path):
    code = textwrap.dedent(f"""
        import os
        os.environ["TRITON_INTERPRET"] = "0"
        import torch
        from focalkit.backends import triton as tb
        from focalkit.backends._triton import aot
        for spec in tb.specialisations():
            c = dict(spec.constexprs)
            if spec.kernel == {kernel!r} and dict(spec.pointers).get("x_ptr", dict(spec.pointers).get("z_ptr")) \\
                    == torch.float32 and c.get("FORM", 1) == 1 and c.get("SPATIAL", True) and c.get("ONE_TILE", True) \\
                    and not c.get("DENSE", False) and not c.get("LAST", False):
                print(aot.resources(aot.compile_spec(spec, 90, aligned=True), {str(tmp_path)!r}))
                break
    """)
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    res = eval(r.stdout.strip().splitlines()[-1], {})  # a dict literal
    assert res["max_vector_load"] == 4, res
    assert res.get("LOCAL", 0) == 0 and res["spill_stores"] == 0, res
    assert res["ticket_atomics"] == 0, res  # as launched by default: no last-program ticket


@pytest.mark.parametrize("kernel", ["sigmoid.sigmoid_fwd_kernel", "softmax.softmax_fwd_kernel",
                                    "quality.vfl_fwd_kernel", "quality.dfl_fwd_kernel"])
def test_the_last_program_ticket_is_ordered_after_the_partials(kernel, tmp_path):
    """``LAST``: the ticket of ``common.reduce_finish`` is one acquire-release atomic add at GPU scope, a
    barrier lies between the partials' stores and it, and the last program reads the partials past L1
    (``ld.global.cg``), in the PTX of every specialisation with float32 tensors (sm_90; the ticket's code
    is the same for every dtype, and every dtype compiles in the test above)."""
    code = textwrap.dedent(f"""
        import os
        os.environ["TRITON_INTERPRET"] = "0"
        from focalkit.backends import triton as tb
        from focalkit.backends._triton import aot
        for spec in tb.specialisations():
            if spec.kernel == {kernel!r} and dict(spec.constexprs)["LAST"] and all(
                    str(v) in ("torch.float32", "torch.int64") for _, v in spec.pointers):
                print(aot.resources(aot.compile_spec(spec, 90), {str(tmp_path)!r}))
    """)
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    rows = [eval(line, {}) for line in r.stdout.splitlines() if line.startswith("{")]
    assert rows, r.stdout + r.stderr[-2000:]
    for res in rows:
        assert res["ticket_atomics"] == 1 and res["barrier_before_ticket"] and res["cg_loads"] >= 1, res


@pytest.mark.parametrize("loop", ["ROW_LOOP", "SPATIAL_LOOP"])
def test_the_row_loop_keeps_registers_and_no_stack(tmp_path, loop):
    """The loop over few classes (``tb.ROW_LOOP``, 2-D rows of a class count that is not a multiple of
    16; ``tb.SPATIAL_LOOP``, N-D positions where switched on) compiled for sm_90 as such a count gets it
    (sizes of any value): no stack, no warp shuffle in the backward, a fraction of the registers of the
    tiles it replaces (the 64 x 32 tile's class-index backward: 255 registers and a 104-byte stack)."""
    code = textwrap.dedent(f"""
        import os, re
        os.environ["TRITON_INTERPRET"] = "0"
        import torch
        from focalkit.backends import triton as tb
        from focalkit.backends._triton import aot
        for spec in tb.specialisations():
            c = dict(spec.constexprs)
            t = tb.{loop}
            if spec.kernel.startswith("softmax.") and c["BLOCK_C"] == t.block_c and c["BLOCK_P"] == t.block_p \
                    and c["SPATIAL"] == t.spatial and dict(spec.pointers)["z_ptr"] == torch.float32:
                k = aot.compile_spec(spec, 90)
                res = aot.resources(k, {str(tmp_path)!r})
                print(spec.kernel, res["REG"], res.get("STACK", 0), res.get("LOCAL", 0),
                      len(re.findall("shfl.sync", k.asm["ptx"])), int(c.get("LAST", False)))
    """)
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_DEFAULT_FP_FUSION="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("softmax.")]
    assert len(rows) == 3 * len(tb.SOFTMAX_MODES), r.stdout + r.stderr[-2000:]  # forward (LAST or not), backward
    for kernel, reg, stack, local, shuffles, last in rows:
        # LAST (off by default): the last program's float64 sum; 8 bytes of stack in the spatial loop's
        # any-size probability-target forward
        assert int(reg) <= 96 and int(stack) <= 8 * int(last) and int(local) <= 8 * int(last), (kernel, reg, stack)
        if "bwd" in kernel:
            assert int(shuffles) == 0, (kernel, shuffles)


def test_launches_are_listed(monkeypatch):
    """Run the launchers over every mode (in the interpreter) and check each launch against the table."""
    if not tb.interpreting():
        pytest.skip("the interpreter run of CI")
    import focalkit as fk

    listed = {(s.kernel.split(".")[1], tuple(sorted(s.constexprs)), tuple(sorted((k, str(v)) for k, v in s.pointers)))
              for s in SPECS}
    seen = []
    mods = tb._kernels()
    for mod in mods:
        for name in dir(mod):
            fn = getattr(mod, name)
            if name.endswith("_kernel"):
                monkeypatch.setattr(mod, name, _Recorder(fn, name, seen))
    g = torch.Generator().manual_seed(0)
    for dt in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(6, 5, generator=g).to(dt).requires_grad_()
        for y in ((torch.rand(6, 5, generator=g) < 0.5).to(dt), torch.rand(6, 5, generator=g),
                  torch.rand(6, 5, generator=g).bool()):
            for form in ("pt", "linear", "signed", "bce", "quality"):
                for red in ("mean", "none"):
                    for w in (None, torch.rand(6, 5, generator=g), torch.rand(5, generator=g).to(dt)):
                        fk.sigmoid_focal_loss(x, y, soft_target=form, reduction=red, weight=w,
                                              backend="triton").sum().backward()
                    fk.sigmoid_focal_loss(x, torch.randint(0, 6, (6,), generator=g), soft_target=form, reduction=red,
                                          backend="triton").sum().backward()  # sparse class indices
        for shape in ((6, 5), (6, 40), (3, 600), (2, 5000), (2, 5, 3), (2, 100, 3), (2, 300, 3)):
            z = torch.randn(shape, generator=g).to(dt).requires_grad_()
            t = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
            for tgt in (t, torch.softmax(torch.randn(shape, generator=g), 1), torch.softmax(z.detach(), 1)):
                for eps in (0.0, 0.1):
                    fk.softmax_focal_loss(z, tgt, label_smoothing=eps, weight=torch.rand(shape[1], generator=g),
                                          backend="triton").backward()
        q = torch.rand(6, 5, generator=g) * (torch.rand(6, 5, generator=g) > 0.5)
        for tq in (q.to(dt), q):
            for lab in (None, q > 0.3, (q > 0.3).to(dt), q):
                for w in (None, torch.rand(6, 5, generator=g), torch.rand(5, generator=g).to(dt)):
                    for red in ("mean", "none"):
                        fk.varifocal_loss(x, tq, labels=lab, weight=w, reduction=red, backend="triton").sum().backward()
        for bins in (2, 16, 17, 40, 200):
            z = torch.randn(7, bins, generator=g).to(dt).requires_grad_()
            for w in (None, torch.rand(7, generator=g).to(dt)):
                for red in ("mean", "none", "sum"):
                    fk.distribution_focal_loss(z, torch.rand(7, generator=g).to(dt) * bins, weight=w, reduction=red,
                                               backend="triton").sum().backward()
    assert seen
    unlisted = {s for s in seen if s not in listed}
    assert not unlisted, sorted(unlisted)[:5]


class _Recorder:
    def __init__(self, fn, name, seen):
        self.fn, self.name, self.seen = fn, name, seen
        self.arg_names = fn.arg_names

    def __getitem__(self, grid):
        def launch(*args, num_warps=None, **consts):
            # the fast launch passes the constexprs positionally, after the other arguments
            assert list(consts) == self.arg_names[len(args):], (self.name, list(consts))
            ptrs = tuple(sorted((n, str(a.dtype)) for n, a in zip(self.arg_names, args) if n.endswith("_ptr")))
            self.seen.append((self.name, tuple(sorted((k, v) for k, v in consts.items())), ptrs))
            return self.fn[grid](*args, num_warps=num_warps, **consts) if num_warps else self.fn[grid](*args, **consts)
        return launch
