"""Focal loss, side by side with the peers, forward and forward + backward (float32, CPU).

Run in the benchmark venv (torch 2.14.1, torchvision 0.29.1, kornia, fvcore; see RESULTS.md):

    python benchmarks/bench_focal.py [--quick]

Sigmoid focal loss (gamma 2, alpha 0.25, 1 % positives) on N x 80 logits: focalkit (each CPU
backend, and native with inplace_grad), torchvision.ops.sigmoid_focal_loss, fvcore, kornia.losses.binary_focal_loss_with_logits,
torch.compile of the textbook formula and F.binary_cross_entropy_with_logits (the gamma = 0 floor).
Softmax focal loss (gamma 2) on N x 1000 logits with class indices: focalkit (native, native with
inplace_grad, eager), kornia.losses.focal_loss, torch.compile of the textbook formula and
F.cross_entropy. Each call gets fresh logits (a clone, outside the timer). Median and
min-max over calls interleaved across implementations; peak extra memory (RSS above the inputs) of
forward + backward, each implementation in its own process. Writes results/focal.json and the focal
section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
# One compiled graph per size and mode (forward / forward+backward): more than dynamo's default limit of 8,
# past which it would silently run the textbook formula eagerly.
torch._dynamo.config.recompile_limit = 64


def textbook_sigmoid(x, y, alpha=0.25, gamma=2.0):
    """The formula as papers and blog posts write it (torchvision's), for torch.compile to fuse."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    a_t = alpha * y + (1 - alpha) * (1 - y)
    return (a_t * ce * (1 - p_t) ** gamma).mean()


def textbook_softmax(x, y, gamma=2.0):
    logp_t = F.log_softmax(x, 1).gather(1, y.unsqueeze(1)).squeeze(1)
    return (-(1 - logp_t.exp()) ** gamma * logp_t).mean()


def sigmoid_impls():
    import focalkit as fk

    impls = {
        "focalkit native": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="native"),
        "focalkit native, inplace_grad": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="native",
                                                                            inplace_grad=True),
        "focalkit eager": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="eager"),
        "torch.compile(textbook)": torch.compile(textbook_sigmoid, dynamic=False),
        "BCE-with-logits (floor)": lambda x, y: F.binary_cross_entropy_with_logits(x, y),
    }
    try:
        from torchvision.ops import sigmoid_focal_loss as tv
        impls["torchvision"] = lambda x, y: tv(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    try:
        from fvcore.nn import sigmoid_focal_loss as fv
        impls["fvcore"] = lambda x, y: fv(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    try:
        from kornia.losses import binary_focal_loss_with_logits as kb
        impls["kornia"] = lambda x, y: kb(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    return impls


def softmax_impls():
    import focalkit as fk

    impls = {
        "focalkit native": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="native"),
        "focalkit native, inplace_grad": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="native",
                                                                            inplace_grad=True),
        "focalkit eager": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="eager"),
        "torch.compile(textbook)": torch.compile(textbook_softmax, dynamic=False),
        "cross_entropy (floor)": lambda x, y: F.cross_entropy(x, y),
    }
    try:
        from kornia.losses import focal_loss as kf
        impls["kornia"] = lambda x, y: kf(x, y, alpha=None, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    return impls


def data(kind, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "sigmoid":
        x = torch.randn(n, 80, generator=g) * 3
        y = (torch.rand(n, 80, generator=g) < 0.01).float()
    else:
        x = torch.randn(n, 1000, generator=g) * 3
        y = torch.randint(0, 1000, (n,), generator=g)
    return x, y


def time_all(impls, x, y, repeats, backward):
    def call(fn):
        # Fresh logits (inplace_grad overwrites them), produced by an op as a model's are (inplace_grad is
        # refused on a leaf): a clone, whose backward hands the gradient on unchanged, so no row pays
        # for it, and the leaf's AccumulateGrad keeps that very buffer.
        xx = x.detach().clone().requires_grad_(backward)
        xx = xx.clone() if backward else xx
        t0 = time.perf_counter()
        out = fn(xx, y)
        if backward:
            out.backward()
        return time.perf_counter() - t0
    ts = {k: [] for k in impls}
    for fn in impls.values():
        call(fn)  # warm-up (and compilation)
    for _ in range(repeats):
        for k, fn in impls.items():
            ts[k].append(call(fn))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for k, v in ts.items()}


def child(kind, name, n):
    x, y = data(kind, n)
    fn = (sigmoid_impls() if kind == "sigmoid" else softmax_impls())[name]
    from _mem import peak_extra_bytes

    fn(x.clone().requires_grad_().clone(), y).backward()  # warm-up (and compilation) outside the measurement
    xx = x.clone().requires_grad_().clone()  # logits produced by an op, as in call() above
    extra = peak_extra_bytes(lambda: fn(xx, y).backward())
    print(json.dumps({"extra_peak_bytes": extra, "logits_bytes": x.numel() * 4}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    from _meta import run_metadata
    from bench_gbdt import write_section

    repeats = 3 if args.quick else 7
    sig_sizes = [125, 1250, 12500, 100_000, 200_000] if not args.quick else [125, 100_000]
    soft_sizes = [16, 1024, 16384, 65536] if not args.quick else [16, 65536]
    res = {"sigmoid": {}, "softmax": {}, "memory": {}}
    for kind, sizes, impls in (("sigmoid", sig_sizes, sigmoid_impls()), ("softmax", soft_sizes, softmax_impls())):
        for n in sizes:
            x, y = data(kind, n)
            res[kind][n] = {"forward": time_all(impls, x, y, repeats, False),
                            "forward+backward": time_all(impls, x, y, repeats, True)}
            print(kind, n, "done", file=sys.stderr)
        headline = 100_000 if kind == "sigmoid" else 65_536
        res["memory"][kind] = {}
        for name in impls:
            # A fixed mmap threshold: glibc's sliding one would serve the measured call from memory the
            # warm-up call freed, and the peak would read 0.
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--child", kind, name, str(headline)], capture_output=True,
                                 text=True, check=True, env=env)
            res["memory"][kind][name] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"meta": run_metadata(("torch", "torchvision", "kornia", "fvcore")), "results": res}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "focal.json").write_text(json.dumps(result, indent=2, default=str))
    section = render(result)
    write_section(HERE / "RESULTS.md", "focal", section)
    print(section)


def render(r):
    m, res = r["meta"], r["results"]
    ms = lambda t: f"{t['median_s'] * 1e3:.2f} ({t['min_s'] * 1e3:.2f}-{t['max_s'] * 1e3:.2f})"  # noqa: E731
    lines = ["## Focal loss kernels (`benchmarks/bench_focal.py`)", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             "Times in ms, median (min-max) of calls interleaved across implementations, float32, CPU, "
             f"{torch.get_num_threads()} threads.", ""]
    for kind, width, ref in (("sigmoid", 80, "torchvision"), ("softmax", 1000, "kornia")):
        lines.append(f"### {'Sigmoid focal loss, N x 80 (1 % positives)' if kind == 'sigmoid' else 'Softmax focal loss, N x 1000, class indices'}")
        lines.append("")
        for mode in ("forward+backward", "forward"):
            sizes = list(res[kind])
            names = list(res[kind][sizes[0]][mode])
            lines += [f"{mode}:", "", "| implementation | " + " | ".join(f"{int(n) * width:,} elements" for n in sizes)
                      + f" | {ref} / it at the largest |", "|---" * (len(sizes) + 2) + "|"]
            big = res[kind][sizes[-1]][mode]
            for name in names:
                ratio = big[ref]["median_s"] / big[name]["median_s"] if ref in big else float("nan")
                lines.append(f"| {name} | " + " | ".join(ms(res[kind][n][mode][name]) for n in sizes)
                             + f" | {ratio:.1f}x |")
            lines.append("")
        mem = res["memory"][kind]
        lines += [f"Peak extra memory, forward + backward ({'100,000 x 80' if kind == 'sigmoid' else '65,536 x 1000'}), "
                  "each in its own process:", "", "| implementation | MiB | x logits |", "|---|---|---|"]
        for name, v in mem.items():
            lines.append(f"| {name} | {v['extra_peak_bytes'] / 2**20:.0f} | {v['extra_peak_bytes'] / v['logits_bytes']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
