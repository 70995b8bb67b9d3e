"""First-call and import-order effects, each in a fresh interpreter: torch.compile holding the
process's first focalkit call (fullgraph, dynamic), a stale native library, FOCALKIT_BACKEND, and
direct calls of the registered ops with every wrong length (an error, never a crash or a read past a
tensor)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from focalkit.backends import native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=full, cwd=ROOT)


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_as_the_first_call(dynamic):
    r = _run(f"""
        import torch
        import focalkit as fk
        torch.manual_seed(0)
        x = torch.randn(16, 5, requires_grad=True)
        y = (torch.rand(16, 5) > 0.7).float()
        t = torch.randint(0, 5, (16,))
        lab = torch.randint(0, 6, (16,))
        def f(x, g):
            return (fk.sigmoid_focal_loss(x, y, gamma=g, alpha=0.3) + fk.softmax_focal_loss(x, t, gamma=g)
                    + fk.sigmoid_focal_loss(x, lab, gamma=g, normalizer="positives")
                    + fk.focal_loss_star(x, y, gamma=g) + fk.quality_focal_loss(x, y * 0.5, beta=g))
        cf = torch.compile(f, fullgraph=True, dynamic={dynamic}, backend="aot_eager")
        for g in (2.0, 1.5):
            out = cf(x, g)
            (gc,) = torch.autograd.grad(out, x)
            ref = f(x, g)
            (gr,) = torch.autograd.grad(ref, x)
            torch.testing.assert_close(out, ref)
            torch.testing.assert_close(gc, gr)
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_compile_catches_bad_sparse_labels_on_every_path():
    r = _run("""
        import torch
        import focalkit as fk
        x = torch.randn(4, 5)
        # under torch.compile nothing is read: the native kernel raises, the eager formula gives NaN
        # at the bad row (docs/api.md, "Bad class indices")
        for backend in ("auto", "eager"):
            for bad in (-1, 6):
                lab = torch.tensor([0, 1, bad, 5])
                f = torch.compile(lambda x: fk.sigmoid_focal_loss(x, lab, backend=backend, reduction="none"),
                                  fullgraph=True, backend="aot_eager")
                try:
                    out = f(x)
                except Exception as exc:
                    assert backend == "auto" and "[0, 5]" in str(exc), exc
                else:
                    assert backend == "eager", f"no error for label {bad} on {backend}"
                    assert torch.isnan(out[2]).all() and torch.isfinite(out[[0, 1, 3]]).all(), out
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler to build the stale library")
def test_stale_library_falls_back_to_eager_with_one_warning(tmp_path):
    src = tmp_path / "stale.c"
    from focalkit._native import ABI_VERSION
    src.write_text(f"int fk_abi_version(void) {{ return {ABI_VERSION}; }}\nint fk_sigmoid_focal_f32(void) {{ return 0; }}\n")
    lib = tmp_path / "stale.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    r = _run(f"""
        import importlib.util, warnings
        real = importlib.util.find_spec
        class Spec:
            origin = {str(lib)!r}
        importlib.util.find_spec = lambda name, *a: Spec() if name == "focalkit._focal_native" else real(name, *a)
        import torch
        with warnings.catch_warnings(record=True) as w:  # said once, at import, with the way to the fast path
            warnings.simplefilter("always")
            import focalkit as fk
            from focalkit.backends import native
            x, y = torch.randn(5, 3), torch.rand(5, 3)
            a = fk.sigmoid_focal_loss(x, y)
            b = fk.softmax_focal_loss(x, torch.tensor([0, 1, 2, 0, 1]))
        importlib.util.find_spec = real
        assert not native.available() and "stale" in native.why_unavailable(), native.why_unavailable()
        assert len(w) == 1 and "eager backend" in str(w[0].message), [str(m.message) for m in w]
        assert "--only-binary=focalkit" in str(w[0].message) and "compiler" in str(w[0].message)
        torch.testing.assert_close(a, fk.sigmoid_focal_loss(x, y, backend="eager"))
        try:
            fk.sigmoid_focal_loss(x, y, backend="native")
        except RuntimeError as exc:
            assert "stale" in str(exc)
        else:
            raise SystemExit("explicit native did not raise")
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_unknown_focalkit_backend_variable_is_named():
    r = _run("""
        import torch, focalkit as fk
        try:
            fk.sigmoid_focal_loss(torch.randn(3), torch.ones(3))
        except ValueError as exc:
            assert "FOCALKIT_BACKEND" in str(exc) and "garbage" in str(exc), exc
            print("OK")
    """, env={"FOCALKIT_BACKEND": "garbage"})
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is a test extra on Linux x86-64")
@pytest.mark.parametrize("versions, broken", [(("3.6.0", "2.4.6"), True), (("3.6.0", "2.3.5"), False),
                                              (("3.7.0", "2.4.6"), False), (("3.2.0+git4e1f0d3", "2.5.0"), True)])
def test_an_interpreter_that_numpy_breaks_is_named_at_import(versions, broken):
    """Triton before 3.7 under NumPy 2.4 fails in its interpreter on every kernel with a message about
    NumPy (triton-lang/triton#9171): found at import (the installed versions, read from the packages'
    metadata), said by an explicit backend, and the CPU's default path runs as before."""
    r = _run(f"""
        import importlib.metadata
        real = importlib.metadata.version
        fake = dict(zip(("triton", "numpy"), {versions!r}))
        importlib.metadata.version = lambda name: fake.get(name) or real(name)
        import torch
        import focalkit as fk
        from focalkit.backends import triton as tb
        importlib.metadata.version = real
        x, t = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
        assert tb.available() == (not {broken}), (tb.available(), tb.why_unavailable())
        if {broken}:
            assert "triton>=3.7 or numpy<2.4" in tb.why_unavailable() and fake["numpy"] in tb.why_unavailable()
            assert "not installed" not in tb.why_unavailable()
            try:
                fk.softmax_focal_loss(x, t, backend="triton")
            except RuntimeError as exc:
                assert "9171" in str(exc) and "backend='triton'" in str(exc), exc
            else:
                raise SystemExit("explicit triton did not raise")
        else:
            assert tb.why_unavailable() == ""
        torch.testing.assert_close(fk.softmax_focal_loss(x, t), fk.softmax_focal_loss(x, t, backend="eager"))
        print("OK")
    """, env={"TRITON_INTERPRET": "1"})
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")
def test_direct_op_calls_with_wrong_lengths_raise_and_never_crash():
    r = _run("""
        import torch
        import focalkit  # registers the ops
        ops = torch.ops.focalkit
        z = torch.zeros(2, 5)
        f32 = torch.float32
        smx = [
            (torch.zeros(2, 50_000), torch.tensor([0, 1]), torch.ones(1)),          # short weight
            (z, torch.tensor([0, 1, 2]), None),                                     # long targets
            (z, torch.tensor([0]), None),                                           # short targets
            (z, torch.zeros(2, 4), None),                                           # probabilities, wrong C
            (z, torch.tensor([0, 1]), torch.ones(5, dtype=torch.int64)),            # integer weight
            (torch.zeros(2, 5, dtype=torch.int64), torch.tensor([0, 1]), None),     # integer logits
            (z, torch.tensor([0, 9]), None),                                        # index out of range
            (z, torch.tensor([0, -3]), None),
        ]
        for i, (logits, t, w) in enumerate(smx):
            for op in (ops.native_softmax_focal, ops.triton_softmax_focal):
                try:
                    out = op(logits, t, w, 2.0, -100, 0.1, "sum", None)
                except (ValueError, RuntimeError) as exc:
                    assert "focalkit" in str(exc) or "Expected" in str(exc), exc
                else:
                    # the GPU kernel cannot tell the host without a sync: a bad index poisons its row
                    if op is ops.triton_softmax_focal and i >= 6 and torch.isnan(out[0]) and torch.isnan(out[1][1]).all():
                        continue
                    raise SystemExit(f"no error: {op} {logits.shape} {t.shape} {None if w is None else w.shape}")
        one = torch.ones(5)
        sig = [
            dict(apos=torch.ones(1)), dict(aneg=torch.ones(2)), dict(pw=torch.ones(4)),
            dict(apos=torch.ones(5, dtype=torch.float64)), dict(weight=torch.ones(3)),
            dict(targets=torch.zeros(2, 4)), dict(targets=torch.tensor([0, 7])), dict(targets=torch.tensor([0, -1])),
            dict(targets=torch.tensor([0.0, 1.0])), dict(den=torch.ones(2)), dict(reduction="bogus"),
            dict(form=5), dict(form=-1),
        ]
        for bad in sig:
            a = dict(logits=z, targets=torch.zeros(2, 5), weight=None, apos=one, aneg=one, pw=one, den=None,
                     reduction="sum", form=1)
            a.update(bad)
            for op in (ops.native_sigmoid_focal, ops.triton_sigmoid_focal):
                try:
                    out = op(a["logits"], a["targets"], a["weight"], a["apos"], a["aneg"], a["pw"], True, True,
                             a["form"], 2.0, a["reduction"], a["den"])
                except (ValueError, RuntimeError) as exc:
                    pass
                else:
                    # the GPU kernel cannot tell the host without a sync: a bad class index poisons its row
                    if op is ops.triton_sigmoid_focal and "targets" in bad and bad["targets"].dtype == torch.int64 \
                            and torch.isnan(out[0]) and torch.isnan(out[1][1]).all():
                        continue
                    raise SystemExit(f"no error: {op} {bad}")
        print("OK")
    """)
    assert r.returncode == 0 and "OK" in r.stdout, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
