"""The kernels as ``torch.library`` custom ops: ``torch.library.opcheck`` (schema, fake tensors,
autograd registration, AOT dispatch) and ``torch.compile(fullgraph=True)`` on each kernel backend."""

import importlib.util

import pytest
import torch

import focalkit as fk
from device import DEVICE
from focalkit.backends import native, triton

HAS_TRITON = triton.unsupported(torch.zeros(1, device=DEVICE)) is None
BACKENDS = (["native"] if native.available() else []) + (["triton"] if HAS_TRITON else [])


def _ops(backend):
    return (native.sigmoid_op, native.softmax_op) if backend == "native" else (triton.sigmoid_op, triton.softmax_op)


def _sigmoid_samples(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=dtype, requires_grad=True)
    y = (torch.rand(6, 3, generator=g) < 0.4).to(dtype)
    v = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float32 if dtype != torch.float64 else dtype)
    one = torch.ones_like(v)
    den = torch.tensor(4.0, dtype=v.dtype)
    yield (x, y, None, v, 1 - v, one, True, True, 1, 2.0, "mean", den)
    yield (x, y, torch.rand(6, 3, generator=g, dtype=dtype), one, one, one * 2, False, True, 0, 0.5, "none", None)
    yield (x, y * 0.7, None, v, 1 - v, one, True, False, 0, 1.0, "sum", None)
    yield (x, y * 0.7, None, v, 1 - v, one, True, False, 2, 1.5, "none", None)  # "signed"
    yield (x, y * 0.7, None, one, one, one * 2, False, True, 3, 0.5, "sum", None)  # "bce"


def _softmax_samples(dtype):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, 3, generator=g, dtype=dtype, requires_grad=True)
    t = torch.randint(0, 4, (5, 3), generator=g)
    t[0, 0] = -100
    q = torch.softmax(torch.randn(5, 4, 3, generator=g, dtype=dtype), 1)
    den = torch.tensor(7.0, dtype=torch.float32 if dtype != torch.float64 else dtype)
    yield (x, t, None, 2.0, -100, 0.0, "mean", den)
    yield (x, t, torch.rand(4, generator=g, dtype=dtype), 1.5, -100, 0.1, "none", None)
    yield (x, q, None, 0.0, -100, 0.2, "sum", None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    sig, smx = _ops(backend)
    dtypes = [torch.float64, torch.float32] if backend == "native" else [torch.float32]
    dev = "cpu" if backend == "native" else DEVICE

    def on(args):
        return tuple(a.detach().to(dev).requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                     for a in args)

    for dtype in dtypes:
        for args in _sigmoid_samples(dtype):
            torch.library.opcheck(sig, on(args))
        for args in _softmax_samples(dtype):
            torch.library.opcheck(smx, on(args))


X = torch.randn(64, 5)
Y = (torch.rand(64, 5) < 0.3).float()
T = torch.randint(0, 5, (64,))
T[::7] = -100
CASES = {
    "sigmoid-linear": lambda a, b, c: fk.sigmoid_focal_loss(a, c["Y"] * 0.8, soft_target="linear", normalizer=3.0,
                                                            backend=b),
    "sigmoid-signed": lambda a, b, c: fk.sigmoid_focal_loss(a, c["Y"] * 0.8, soft_target="signed", backend=b),
    "sigmoid-bce": lambda a, b, c: fk.sigmoid_focal_loss(a, c["Y"] * 0.8, soft_target="bce", gamma=0.5, backend=b),
    "sigmoid-none": lambda a, b, c: fk.sigmoid_focal_loss(a, c["Y"], alpha=c["A"], reduction="none",
                                                          soft_target="linear", backend=b).sum(),
    "softmax": lambda a, b, c: fk.softmax_focal_loss(a, c["T"], gamma=0.5, label_smoothing=0.1, weight=c["W"],
                                                     backend=b),
    "softmax-nd": lambda a, b, c: fk.softmax_focal_loss(a.view(8, 8, 5).transpose(1, 2), c["T"].clamp(min=0).view(8, 8),
                                                        reduction="none", backend=b).mean(),
}


def _consts(dev):
    return dict(X=X.to(dev), Y=Y.to(dev), T=T.to(dev), A=torch.full((5,), 0.3, device=dev),
                W=torch.ones(5, device=dev))


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_compile_runs_the_kernel_op(backend, name, dynamic):
    """Static and dynamic shapes; for Triton in CI, the interpreter on CPU tensors: the same selection
    code as on CUDA (where ``benchmarks/gpu_check.sh`` runs this file)."""
    fn = CASES[name]
    c = _consts(DEVICE if backend == "triton" else "cpu")
    torch._dynamo.reset()
    x1, x2 = c["X"].clone().requires_grad_(), c["X"].clone().requires_grad_()
    out = torch.compile(lambda a: fn(a, backend, c), fullgraph=True, backend="aot_eager", dynamic=dynamic)(x1)
    out.backward()
    ref = fn(x2, "eager", c)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")
def test_compiled_graph_calls_the_native_op():
    seen = []

    def count(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(lambda a: fk.softmax_focal_loss(a, T), fullgraph=True, backend=count)(X)
    assert any("native_softmax_focal" in s for s in seen)


def test_inplace_grad_under_compile_raises():
    torch._dynamo.reset()
    with pytest.raises(Exception, match="inplace_grad"):
        torch.compile(lambda a: fk.softmax_focal_loss(a, T, inplace_grad=True), fullgraph=True,
                      backend="aot_eager")(X.clone())


def test_compile_never_calls_what_dynamo_skips():
    """torch 2.11's Dynamo refuses ``importlib.util.find_spec`` (2.13 traces it): with it raising after
    import, and ``os.environ`` reads raising too, as focalkit's modules see them, compiled calls of
    every kernel backend still run."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import importlib.util, os, sys, types, torch
        import focalkit as fk
        def refuse(*a, **k):
            raise RuntimeError("traced code called importlib.util.find_spec")
        fake_importlib = types.SimpleNamespace(util=types.SimpleNamespace(find_spec=refuse))
        class Env(dict):
            def get(self, *a, **k):
                raise RuntimeError("traced code read os.environ")
            __getitem__ = get
        fake_os = types.SimpleNamespace(**{{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}})
        fake_os.environ = Env(os.environ)
        for name, mod in list(sys.modules.items()):  # what focalkit's own modules see
            if name.startswith("focalkit") and getattr(mod, "os", None) is os:
                mod.os = fake_os
            if name.startswith("focalkit") and getattr(mod, "importlib", None) is not None:
                mod.importlib = fake_importlib
        for backend in {BACKENDS!r} + ["auto"]:
            dev = {DEVICE!r} if backend in ("triton", "auto") else "cpu"
            x = torch.randn(16, 5, device=dev, requires_grad=True)
            y = (torch.rand(16, 5, device=dev) < 0.3).float()
            t = torch.randint(0, 5, (16,), device=dev)
            for dyn in (False, True):
                torch._dynamo.reset()
                f = torch.compile(lambda a: fk.sigmoid_focal_loss(a, y, backend=backend)
                                  + fk.softmax_focal_loss(a, t, backend=backend), fullgraph=True, backend="aot_eager",
                                  dynamic=dyn)
                f(x).backward()
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
