"""What GPU users do, on the test device of ``tests/device.py`` (CUDA in ``benchmarks/gpu_check.sh``,
the CPU in CI): mixed precision with ``GradScaler``, CUDA-graph capture and replay of a training step,
``torch.compile(mode="reduce-overhead")``, no host synchronisation in forward or backward, kernel
launches and extra memory per step, the presets against their peers, and ``normalizer="positives",
sync=True`` in a one-process group. Tests marked ``gpu`` mean something only on CUDA and are skipped
elsewhere; the GPU script counts them."""

from __future__ import annotations

import importlib.util
import os
import socket

import pytest
import torch
import torch.nn.functional as F

import focalkit as fk
from device import DEVICE, ON_GPU

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="a CUDA GPU (benchmarks/gpu_check.sh)")


def _losses(dev):
    """Each kernel loss as ``(name, logits shape, loss(logits) -> scalar)`` with fixed targets."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(64, 20, generator=g) < 0.1).float().to(dev)
    t = torch.randint(0, 20, (64,), generator=g).to(dev)
    tn = torch.randint(0, 19, (2, 16, 24), generator=g).to(dev)
    num_pos = (y > 0).sum()
    return [
        ("sigmoid-mean", (64, 20), lambda z: fk.sigmoid_focal_loss(z, y)),
        ("sigmoid-normalizer", (64, 20), lambda z: fk.sigmoid_focal_loss(z, y, reduction="sum",
                                                                          normalizer=num_pos.clamp(min=1))),
        ("sigmoid-none", (64, 20), lambda z: fk.sigmoid_focal_loss(z, y, reduction="none").sum()),
        ("softmax-2d", (64, 20), lambda z: fk.softmax_focal_loss(z, t)),
        ("softmax-nd", (2, 19, 16, 24), lambda z: fk.softmax_focal_loss(z, tn, ignore_index=255)),
        ("softmax-smooth", (64, 20), lambda z: fk.softmax_focal_loss(z, t, label_smoothing=0.1)),
        ("sigmoid-sparse", (64, 20), lambda z: fk.sigmoid_focal_loss(z, t)),
        ("varifocal", (64, 20), lambda z: fk.varifocal_loss(z, y * 0.8)),
        ("varifocal-labels", (64, 20), lambda z: fk.varifocal_loss(z, y * 0.8, labels=y > 0, reduction="sum",
                                                                   normalizer=num_pos.clamp(min=1))),
        ("dfl", (64, 20), lambda z: fk.distribution_focal_loss(z, t.float() * 0.9)),
    ]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_with_grad_scaler_trains_a_small_model(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).to(DEVICE)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    scaler = torch.amp.GradScaler(DEVICE)
    x = torch.randn(512, 16, device=DEVICE)
    labels = (x[:, :10] * 3).argmax(1)
    multi = F.one_hot(labels, 10).float()
    first = None
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(DEVICE, dtype=dtype):
            z = model(x)
            loss = fk.softmax_focal_loss(z, labels) + fk.sigmoid_focal_loss(z, multi)
        assert z.dtype == dtype and loss.dtype == torch.float32  # docs/api.md, "Mixed precision"
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        first = float(loss.detach()) if first is None else first
    # (early fp16 steps overflow at GradScaler's first scale and are skipped: that is its job)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert float(loss.detach()) < 0.5 * first


def test_grad_scaler_gradient_equals_unscaled():
    for name, shape, loss_fn in _losses(DEVICE):
        x = torch.randn(shape, device=DEVICE, requires_grad=True)
        (loss_fn(x) * 65536.0).backward()
        scaled = x.grad / 65536.0
        x.grad = None
        loss_fn(x).backward()
        torch.testing.assert_close(scaled, x.grad, rtol=1e-6, atol=1e-9, msg=name)


@gpu
@needs_gpu
def test_no_host_synchronisation_in_forward_or_backward():
    for name, shape, loss_fn in _losses(DEVICE):
        x = torch.randn(shape, device=DEVICE, requires_grad=True)
        loss_fn(x).backward()  # warm: compile the kernels first
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            x.grad = None
            loss_fn(x).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@gpu
@needs_gpu
def test_cuda_graph_capture_and_replay_of_a_training_step():
    """A capture fails if anything synchronises the host; replays must give the eager step's values."""
    for name, shape, loss_fn in _losses(DEVICE):
        torch.manual_seed(1)
        lin = torch.nn.Linear(shape[1] if len(shape) == 2 else shape[1], shape[1]).to(DEVICE)
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        static_x = torch.randn(shape, device=DEVICE)

        def step():
            opt.zero_grad(set_to_none=False)
            z = lin(static_x.movedim(1, -1)).movedim(-1, 1)
            loss = loss_fn(z)
            loss.backward()
            opt.step()
            return loss

        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = step()
        p0 = [p.detach().clone() for p in lin.parameters()]
        graph.replay()
        replayed = float(static_loss.detach())
        p1 = [p.detach().clone() for p in lin.parameters()]
        with torch.no_grad():
            for p, v in zip(lin.parameters(), p0):
                p.copy_(v)
        eager = float(step().detach())
        assert abs(replayed - eager) <= 1e-5 * max(1.0, abs(eager)), (name, replayed, eager)
        for p, v in zip(lin.parameters(), p1):
            torch.testing.assert_close(p.detach(), v, msg=name)


@gpu
@needs_gpu
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_torch_compile_on_cuda(mode):
    for name, shape, loss_fn in _losses(DEVICE):
        torch._dynamo.reset()
        x = torch.randn(shape, device=DEVICE, requires_grad=True)
        xe = x.detach().clone().requires_grad_()
        f = torch.compile(loss_fn, fullgraph=True, mode=mode)
        for _ in range(3):  # reduce-overhead records its CUDA graph on a later call
            x.grad = None
            out = f(x)
            out.backward()
        ref = loss_fn(xe)
        ref.backward()
        torch.testing.assert_close(out.detach(), ref.detach(), rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(x.grad, xe.grad, rtol=1e-5, atol=1e-6, msg=name)


@gpu
@needs_gpu
@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_inductor_dynamic_on_cuda(dynamic):
    torch._dynamo.reset()
    f = torch.compile(lambda z, t: fk.softmax_focal_loss(z, t) + fk.sigmoid_focal_loss(z, F.one_hot(t, 20).float()),
                      fullgraph=True, dynamic=dynamic)
    for n in (32, 48, 64):
        x = torch.randn(n, 20, device=DEVICE, requires_grad=True)
        t = torch.randint(0, 20, (n,), device=DEVICE)
        out = f(x, t)
        out.backward()
        xe = x.detach().clone().requires_grad_()
        ref = fk.softmax_focal_loss(xe, t) + fk.sigmoid_focal_loss(xe, F.one_hot(t, 20).float())
        ref.backward()
        torch.testing.assert_close(x.grad, xe.grad, rtol=1e-5, atol=1e-6)


def _step_launches(loss_fn, x, t) -> int:
    """Kernel launches of one forward + backward of ``loss_fn(x, t)`` after a first (compiling) one."""
    x.requires_grad_()

    def step():
        x.grad = None
        loss_fn(x, t).backward()

    step()
    torch.cuda.synchronize()
    return _launches(step)


def _launches(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    return sum(1 for n in names if "LaunchKernel" in n or "Memcpy" in n or "Memset" in n)


@gpu
@needs_gpu
def test_at_most_four_launches_and_one_logits_of_extra_memory_per_step():
    """Counts, not times: kernel launches per forward + backward, and the extra peak memory."""
    g = torch.Generator(device="cuda").manual_seed(0)
    cases = [("sigmoid", torch.randn(4096, 80, device="cuda", generator=g),
              (torch.rand(4096, 80, device="cuda", generator=g) < 0.05).float(), fk.sigmoid_focal_loss),
             ("softmax", torch.randn(4096, 1000, device="cuda", generator=g),
              torch.randint(0, 1000, (4096,), device="cuda", generator=g), fk.softmax_focal_loss),
             ("softmax-nd", torch.randn(4, 19, 64, 64, device="cuda", generator=g),
              torch.randint(0, 19, (4, 64, 64), device="cuda", generator=g), fk.softmax_focal_loss),
             ("sigmoid-sparse", torch.randn(4096, 80, device="cuda", generator=g),
              torch.randint(0, 81, (4096,), device="cuda", generator=g), fk.sigmoid_focal_loss),
             ("varifocal", torch.randn(4096, 80, device="cuda", generator=g),
              torch.rand(4096, 80, device="cuda", generator=g) * (torch.rand(4096, 80, device="cuda", generator=g)
                                                                  < 0.05), fk.varifocal_loss),
             ("dfl", torch.randn(16384, 16, device="cuda", generator=g),
              torch.rand(16384, device="cuda", generator=g) * 14.9, fk.distribution_focal_loss)]
    for name, x, t, loss_fn in cases:
        assert _step_launches(loss_fn, x, t) <= 4, name
        x.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss_fn(x, t).backward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        assert extra <= x.numel() * x.element_size() + 2 ** 20, (name, extra / (x.numel() * x.element_size()))


@gpu
@needs_gpu
def test_three_launches_where_the_forward_is_one_program():
    """Small inputs, whose step is the host's: the forward's one program finishes the reduction (no
    ``finish_kernel``), so a step is the forward, autograd's seed and the backward."""
    g = torch.Generator(device="cuda").manual_seed(0)
    cases = [("softmax 256 x 10", torch.randn(256, 10, device="cuda", generator=g),
              torch.randint(0, 10, (256,), device="cuda", generator=g), fk.softmax_focal_loss),
             ("sigmoid 16 x 64", torch.randn(16, 64, device="cuda", generator=g),
              (torch.rand(16, 64, device="cuda", generator=g) < 0.1).float(), fk.sigmoid_focal_loss),
             ("dfl 64 x 16", torch.randn(64, 16, device="cuda", generator=g),
              torch.rand(64, device="cuda", generator=g) * 14.9, fk.distribution_focal_loss)]
    for name, x, t, loss_fn in cases:
        assert _step_launches(loss_fn, x, t) == 3, name


@gpu
@needs_gpu
def test_last_program_finish_on_cuda(monkeypatch):
    """``LAST_PROGRAM_FINISH`` on a GPU, where programs run at once: over thousands of programs the last
    one's sum (an acquire-release ticket) gives the loss and gradient of the forward + ``finish_kernel``
    pair within a few float32 ulp, the same bits on every one of 20 runs (a partial read before its store
    would vary), no ``finish_kernel`` launched, and the same values from a CUDA-graph replay."""
    from focalkit.backends import triton as tb

    g = torch.Generator(device="cuda").manual_seed(0)
    cases = [("sigmoid 2M", torch.randn(25600, 80, device="cuda", generator=g),
              (torch.rand(25600, 80, device="cuda", generator=g) < 0.05).float(), fk.sigmoid_focal_loss),
             ("softmax 16384 x 100", torch.randn(16384, 100, device="cuda", generator=g),
              torch.randint(0, 100, (16384,), device="cuda", generator=g), fk.softmax_focal_loss),
             ("softmax 4096 x 19, weights", torch.randn(4096, 19, device="cuda", generator=g),
              torch.randint(0, 19, (4096,), device="cuda", generator=g),
              lambda a, b: fk.softmax_focal_loss(a, b, weight=torch.linspace(0.5, 2, 19, device="cuda"))),
             ("softmax-nd", torch.randn(4, 19, 64, 64, device="cuda", generator=g),
              torch.randint(0, 19, (4, 64, 64), device="cuda", generator=g), fk.softmax_focal_loss),
             ("varifocal", torch.randn(25600, 80, device="cuda", generator=g),
              torch.rand(25600, 80, device="cuda", generator=g) * (torch.rand(25600, 80, device="cuda", generator=g)
                                                                   < 0.05), fk.varifocal_loss),
             ("dfl", torch.randn(16384, 16, device="cuda", generator=g),
              torch.rand(16384, device="cuda", generator=g) * 14.9, fk.distribution_focal_loss)]

    def run(loss_fn, x, t):
        x = x.detach().requires_grad_()
        loss = loss_fn(x, t)
        loss.backward()
        return loss.detach(), x.grad

    for name, x, t, loss_fn in cases:
        monkeypatch.setattr(tb, "LAST_PROGRAM_FINISH", False)
        want = run(loss_fn, x, t)
        monkeypatch.setattr(tb, "LAST_PROGRAM_FINISH", True)
        runs = [run(loss_fn, x, t) for _ in range(20)]
        for got in runs:
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=2 ** -21, atol=0, msg=name)
            for a, b in zip(got, runs[0]):
                assert torch.equal(a, b), name
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            run(loss_fn, x, t)
            torch.cuda.synchronize()
        kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        assert not any("finish_kernel" in k for k in kernels), (name, kernels)
        static_x = x.detach().clone().requires_grad_()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            loss_fn(static_x, t).backward()
        torch.cuda.current_stream().wait_stream(s)
        static_x.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = loss_fn(static_x, t)
            static_loss.backward()
        for _ in range(3):
            static_x.grad.zero_()
            graph.replay()
            torch.testing.assert_close(static_loss.detach(), want[0], rtol=2 ** -21, atol=0, msg=name)
            torch.testing.assert_close(static_x.grad, want[1], rtol=2 ** -21, atol=0, msg=name)


def test_presets_against_their_peers_on_the_device():
    """torchvision (on GPU machines) and kornia (a wheel there; in the test extra here), where they import."""
    peers = [m for m in ("torchvision", "kornia") if importlib.util.find_spec(m) is not None]
    ran = []
    g = torch.Generator().manual_seed(4)
    x0 = (torch.randn(256, 20, generator=g) * 3).to(DEVICE)
    y = (torch.rand(256, 20, generator=g) < 0.1).float().to(DEVICE)
    t = torch.randint(0, 20, (256,), generator=g).to(DEVICE)
    for peer in peers:
        try:
            if peer == "torchvision":
                from torchvision.ops import sigmoid_focal_loss as theirs

                from focalkit.compat.torchvision import sigmoid_focal_loss as ours
                pairs = [(lambda z: ours(z, y, reduction="mean"), lambda z: theirs(z, y, reduction="mean"))]
            else:
                import kornia.losses as kl

                from focalkit.compat import kornia as ck
                pairs = [(lambda z: ck.focal_loss(z, t, alpha=0.5, reduction="mean"),
                          lambda z: kl.focal_loss(z, t, alpha=0.5, reduction="mean")),
                         (lambda z: ck.binary_focal_loss_with_logits(z, y, reduction="mean"),
                          lambda z: kl.binary_focal_loss_with_logits(z, y, reduction="mean"))]
        except Exception as exc:  # an import that breaks beside this torch: said, not hidden
            pytest.fail(f"{peer} is installed but does not import: {exc}")
        for ours_fn, theirs_fn in pairs:
            a, b = x0.clone().requires_grad_(), x0.clone().requires_grad_()
            o1, o2 = ours_fn(a), theirs_fn(b)
            o1.backward()
            o2.backward()
            torch.testing.assert_close(o1, o2, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
        ran.append(peer)
    if not ran:
        pytest.skip("neither torchvision nor kornia is installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", [pytest.param("nccl", marks=[gpu, needs_gpu]), "gloo"])
def test_positives_normalizer_synced_in_a_one_process_group(backend):
    import torch.distributed as dist

    if not dist.is_available() or (backend == "nccl" and not dist.is_nccl_available()):
        pytest.skip(f"torch.distributed {backend} is not available")
    dev = "cuda" if backend == "nccl" else "cpu"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", world_size=1, rank=0)
    try:
        g = torch.Generator().manual_seed(5)
        x = torch.randn(128, 20, generator=g).to(dev).requires_grad_()
        y = (torch.rand(128, 20, generator=g) < 0.05).float().to(dev)
        synced = fk.sigmoid_focal_loss(x, y, reduction="sum", normalizer="positives", sync=True)
        synced.backward()
        xe = x.detach().clone().requires_grad_()
        plain = fk.sigmoid_focal_loss(xe, y, reduction="sum", normalizer=float((y > 0).sum().clamp(min=1)))
        plain.backward()
        torch.testing.assert_close(synced, plain)
        torch.testing.assert_close(x.grad, xe.grad)
    finally:
        dist.destroy_process_group()
