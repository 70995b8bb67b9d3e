"""Peak extra memory and time of sigmoid focal loss with sparse class-index targets against the
one-hot route, on the eager and the native backend, forward + backward, each configuration in its
own process (peak RSS above the inputs; one call, so the time includes first-call costs).

    python benchmarks/bench_sparse.py [--anchors 100000] [--classes 80]

Writes benchmarks/results/sparse.json and the sparse section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = {"dense": "one-hot (`F.one_hot(labels, C+1)[:, :C].float()`)",
         "sparse": "class indices (`targets=labels`, background = C)",
         "dense-native": "one-hot (`F.one_hot(labels, C+1)[:, :C].float()`)",
         "sparse-native": "class indices (`targets=labels`, background = C)"}


def child(mode: str, n: int, c: int) -> None:
    import torch
    import torch.nn.functional as F

    import focalkit as fk

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, generator=g).requires_grad_()
    labels = torch.randint(0, c + 1, (n,), generator=g)  # c = background
    from _mem import peak_extra_bytes

    def step():
        # what users do today: one-hot over C+1, drop the background column, cast to float
        targets = labels if mode.startswith("sparse") else F.one_hot(labels, c + 1)[:, :c].float()
        backend = "native" if mode.endswith("native") else "eager"
        fk.sigmoid_focal_loss(x, targets, normalizer="positives", backend=backend).backward()

    t0 = time.perf_counter()
    extra = peak_extra_bytes(step)
    dt = time.perf_counter() - t0
    print(json.dumps({"extra_peak_bytes": extra, "seconds": dt, "logits_bytes": x.numel() * 4}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchors", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.anchors, args.classes)
    from _meta import run_metadata
    from bench_gbdt import write_section

    res = {}
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--anchors", str(args.anchors),
                              "--classes", str(args.classes)], capture_output=True, text=True, check=True)
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"meta": run_metadata(), "args": {"anchors": args.anchors, "classes": args.classes}, "results": res}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "sparse.json").write_text(json.dumps(result, indent=2))
    lb = res["dense"]["logits_bytes"]
    mb = lambda b: f"{b / 2**20:.1f} MiB ({b / lb:.2f}x logits)"  # noqa: E731
    m = result["meta"]
    section = "\n".join([
        "## Sparse targets for sigmoid focal loss (`benchmarks/bench_sparse.py`)", "",
        f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
        f"{args.anchors:,} anchors x {args.classes} classes, float32, forward + backward, peak RSS above the "
        "inputs (VmHWM reset before the call), each in its own process:", "",
        "| targets | backend | extra peak memory | time |", "|---|---|---|---|"]
        + [f"| {MODES[mode]} | {mode.split('-')[-1] if '-' in mode else 'eager'} | "
           f"{mb(res[mode]['extra_peak_bytes'])} | {res[mode]['seconds'] * 1e3:.0f} ms |" for mode in MODES] + [""])
    write_section(HERE / "RESULTS.md", "sparse", section)
    print(section)


if __name__ == "__main__":
    main()
