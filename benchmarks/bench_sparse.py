"""Peak extra memory of sigmoid focal loss with sparse class-index targets against the one-hot
route (both on the eager backend, plus one-hot on the native backend), forward + backward, each
configuration in its own process (peak RSS above the inputs).

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
        targets = labels if mode == "sparse" else F.one_hot(labels, c + 1)[:, :c].float()
        backend = "native" if mode == "dense-native" else "eager"
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
    for mode in ("dense", "sparse", "dense-native"):
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
        f"{args.anchors:,} anchors x {args.classes} classes, float32, forward + backward on the eager backend "
        "(sparse targets are not in the native kernel yet; its one-hot figure is the last row), "
        "peak RSS above the inputs (VmHWM reset before the call), each in its own process:", "",
        "| targets | extra peak memory | time |", "|---|---|---|",
        f"| one-hot (`F.one_hot(labels, C+1)[:, :C].float()`) | {mb(res['dense']['extra_peak_bytes'])} | "
        f"{res['dense']['seconds'] * 1e3:.0f} ms |",
        f"| class indices (`targets=labels`, background = C) | {mb(res['sparse']['extra_peak_bytes'])} | "
        f"{res['sparse']['seconds'] * 1e3:.0f} ms |",
        f"| one-hot, native backend | {mb(res['dense-native']['extra_peak_bytes'])} | "
        f"{res['dense-native']['seconds'] * 1e3:.0f} ms |", ""])
    write_section(HERE / "RESULTS.md", "sparse", section)
    print(section)


if __name__ == "__main__":
    main()
