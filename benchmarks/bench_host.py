"""Host cost per call on tiny CPU inputs, beside F.cross_entropy / BCE-with-logits: microseconds per
forward + backward (median of rounds of 2,000 calls) and aten ops dispatched per call
(``TorchDispatchMode``). Rows: focalkit's native path (the C kernel), and the Triton path with its
launches recorded instead of run and no content read, as on a GPU ("Python path only": what the host
pays before Triton's own launch cost). Writes ``results/host.json`` and prints a Markdown table.

    python benchmarks/bench_host.py          (the test environment; TRITON_INTERPRET=1 for the Triton row)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import focalkit as fk  # noqa: E402
from focalkit.backends import native, triton as tb  # noqa: E402
from _meta import triton_python_only  # noqa: E402
from test_host_cost import aten_ops  # noqa: E402


def us_per_call(fn, x, *args, rounds=7, n=2000):
    x = x.detach().clone().requires_grad_()

    def step():
        x.grad = None
        fn(x, *args).backward()

    for _ in range(100):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        times.append((time.perf_counter() - t0) * 1e6 / n)
    return sorted(times)[len(times) // 2]


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    t = torch.randint(0, 10, (256,), generator=g)
    xs = torch.randn(1024, 80, generator=g)
    y = (torch.rand(1024, 80, generator=g) < 0.05).float()
    q = torch.rand(1024, 80, generator=g) * y  # IoU-aware scores on the positives
    xd, d = torch.randn(1024, 16, generator=g), torch.rand(1024, generator=g) * 14.9  # DFL, 16 bins
    xt, yt = torch.randn(16, 80, generator=g), (torch.rand(16, 80, generator=g) < 0.05).float()  # host-bound
    rows = {}
    rows["F.cross_entropy (256 x 10)"] = (F.cross_entropy, x, t)
    rows["BCE-with-logits (1024 x 80)"] = (F.binary_cross_entropy_with_logits, xs, y)
    rows["F.cross_entropy (1024 x 16)"] = (lambda a, b: F.cross_entropy(a, b.long()), xd, d)
    rows["BCE-with-logits (16 x 80)"] = (F.binary_cross_entropy_with_logits, xt, yt)
    if native.available():
        rows["focalkit softmax, native"] = (fk.softmax_focal_loss, x, t)
        rows["focalkit sigmoid, native"] = (fk.sigmoid_focal_loss, xs, y)
        rows["focalkit sigmoid (16 x 80), native"] = (fk.sigmoid_focal_loss, xt, yt)
        rows["focalkit varifocal (1024 x 80), native"] = (fk.varifocal_loss, xs, q)
        rows["focalkit DFL (1024 x 16), native"] = (fk.distribution_focal_loss, xd, d)
    out = {}
    for name, (fn, a, b) in rows.items():
        out[name] = {"us": us_per_call(fn, a, b), "aten_ops": sum(aten_ops(fn, a, b).values())}
    if tb.unsupported(torch.zeros(1)) is None:  # the Triton path, Python only
        with triton_python_only():
            for name, fn, a, b in (("focalkit softmax, Triton path (Python only)", fk.softmax_focal_loss, x, t),
                                   ("focalkit sigmoid, Triton path (Python only)", fk.sigmoid_focal_loss, xs, y),
                                   ("focalkit varifocal, Triton path (Python only)", fk.varifocal_loss, xs, q),
                                   ("focalkit DFL, Triton path (Python only)", fk.distribution_focal_loss, xd, d)):
                f = lambda p, q, fn=fn: fn(p, q, backend="triton")
                out[name] = {"us": us_per_call(f, a, b), "aten_ops": sum(aten_ops(f, a, b).values())}
    meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "threads": 1}
    path = Path(__file__).resolve().parent / "results" / "host.json"
    path.write_text(json.dumps({"meta": meta, "rows": out}, indent=2) + "\n")
    print("| call (forward + backward) | us per call | aten ops |\n|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['us']:.1f} | {r['aten_ops']} |")


if __name__ == "__main__":
    main()
