"""Where the host's time goes in one forward + backward of a tiny input (the GPU idle): cProfile of
many steps of focalkit beside F.cross_entropy / BCE, on CUDA (or the CPU with --cpu). Prints the
microseconds per step and the top functions by own time."""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

import torch
import torch.nn.functional as F

import focalkit as fk

dev = "cpu" if "--cpu" in sys.argv else "cuda"
x = torch.randn(256, 10, device=dev, requires_grad=True)
t = torch.randint(0, 10, (256,), device=dev)
xs = torch.randn(1024, 80, device=dev, requires_grad=True)
y = (torch.rand(1024, 80, device=dev) < 0.05).float()


def step(fn, a, b):
    def run():
        a.grad = None
        fn(a, b).backward()
    return run


cases = {"focalkit softmax": step(fk.softmax_focal_loss, x, t), "F.cross_entropy": step(F.cross_entropy, x, t),
         "focalkit sigmoid": step(fk.sigmoid_focal_loss, xs, y),
         "BCE": step(F.binary_cross_entropy_with_logits, xs, y)}
for name, fn in cases.items():
    for _ in range(20):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(500):
        fn()
    t1 = time.perf_counter()
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"{name}: {(t1 - t0) * 1e6 / 500:.1f} us per step (host)")
for name in ("focalkit softmax", "focalkit sigmoid"):
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(500):
        cases[name]()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(14)
    print(name, "\n", "\n".join(s.getvalue().splitlines()[6:24]))
