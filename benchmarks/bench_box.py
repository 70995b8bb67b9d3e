"""Box losses, forward + backward on N boxes (default 1e6, float32), focalkit beside torchvision.ops.

Run in the benchmark venv (torch 2.14.1 + torchvision 0.29.1; see RESULTS.md):

    python benchmarks/bench_box.py [--boxes 1000000] [--repeats 7]

Writes benchmarks/results/box.json and the box section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import focalkit as fk
from _meta import run_metadata
from bench_gbdt import write_section

HERE = Path(__file__).resolve().parent


def boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 20 + 1], 1)


def time_fb(fns, a, b, repeats):
    """Forward + backward of each fn, interleaved call by call so that machine drift hits all alike."""
    def step(fn):
        x = a.clone().requires_grad_()
        fn(x, b).backward()
    ts = [[] for _ in fns]
    for fn in fns:
        step(fn)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            step(fn)
            ts[i].append(time.perf_counter() - t0)
    return [{"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)} for t in ts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--boxes", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    try:
        from torchvision import ops
    except ImportError:
        ops = None
    a, b = boxes(args.boxes, 0), boxes(args.boxes, 1)
    rows = {}
    pairs = [("GIoU", fk.giou_loss, "generalized_box_iou_loss"), ("DIoU", fk.diou_loss, "distance_box_iou_loss"),
             ("CIoU", fk.ciou_loss, "complete_box_iou_loss"), ("EIoU", fk.eiou_loss, None),
             ("Focal-EIoU", fk.focal_eiou_loss, None), ("IoU", fk.iou_loss, None)]
    for name, ours, tv in pairs:
        fns = [lambda x, y, f=ours: f(x, y, reduction="mean")]
        if ops is not None and tv is not None:
            fns.append(lambda x, y, f=getattr(ops, tv): f(x, y, reduction="mean"))
        timed = time_fb(fns, a, b, args.repeats)
        row = {"focalkit": timed[0]}
        if len(timed) == 2:
            row["torchvision"] = timed[1]
            row["ratio_torchvision_over_focalkit"] = row["torchvision"]["median_s"] / row["focalkit"]["median_s"]
        rows[name] = row
    result = {"meta": run_metadata(("torch", "torchvision")), "args": vars(args), "results": rows}
    out = HERE / "results" / "box.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    ms = lambda t: f"{t['median_s'] * 1e3:.0f} ms ({t['min_s'] * 1e3:.0f}-{t['max_s'] * 1e3:.0f})"  # noqa: E731
    m = result["meta"]
    lines = ["## Box losses (`benchmarks/bench_box.py`)", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             f"Forward + backward, reduction mean, {args.boxes:,} float32 boxes, median (min-max) of {args.repeats} "
             "calls interleaved with torchvision's:",
             "", "| loss | focalkit | torchvision | torchvision / focalkit (goal >= 1) |", "|---|---|---|---|"]
    for name, row in rows.items():
        tv = ms(row["torchvision"]) if "torchvision" in row else "-"
        ratio = f"{row['ratio_torchvision_over_focalkit']:.2f}" if "torchvision" in row else "-"
        lines.append(f"| {name} | {ms(row['focalkit'])} | {tv} | {ratio} |")
    section = "\n".join(lines) + "\n"
    write_section(HERE / "RESULTS.md", "box", section)
    print(section)


if __name__ == "__main__":
    main()
