"""Triton kernels against their peers on a CUDA GPU: forward + backward, CUDA events, interleaved.

Run by ``benchmarks/gpu_check.sh`` (``--dry-run``: the same code on the CPU under TRITON_INTERPRET=1
at tiny sizes, wall-clock timers, no torch.compile). Writes ``gpu.json`` and ``gpu_results.md`` into
``--out``. Rows per size and dtype: focalkit (triton), torchvision's / kornia's loss where installed,
``F.binary_cross_entropy_with_logits`` / ``F.cross_entropy``, ``torch.compile`` of the textbook
formula, and ``torch.empty_like(x).copy_(x)``, the bandwidth floor (bytes read + written)."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import focalkit as fk


def textbook_sigmoid(x, y, gamma=2.0, alpha=0.25):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    pt = p * y + (1 - p) * (1 - y)
    return ((alpha * y + (1 - alpha) * (1 - y)) * (1 - pt) ** gamma * ce).mean()


def textbook_softmax(z, t, gamma=2.0):
    logp = torch.log_softmax(z, 1).gather(1, t[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def peers():
    out = {}
    try:
        from torchvision.ops import sigmoid_focal_loss as tv

        out["torchvision"] = lambda x, y: tv(x, y, reduction="mean")
    except Exception:  # not installed
        pass
    try:
        from kornia.losses import focal_loss as kf

        out["kornia"] = lambda z, t: kf(z, t, alpha=None, gamma=2.0, reduction="mean")
    except Exception:
        pass
    return out


def timer(device):
    if device == "cuda":
        def run(fn, reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / reps
    else:
        def run(fn, reps):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            return (time.perf_counter() - t0) * 1e3 / reps
    return run


def fwd_bwd(loss_fn, x, *rest):
    def step():
        x.grad = None
        loss_fn(x, *rest).backward()
    return step


def bench_case(kind, n, c, dtype, device, dry, rounds, reps):
    run = timer(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(n // c, c, device=device, generator=g, dtype=torch.float32) * 2).to(dtype).requires_grad_()
    ps = peers()
    rows = {}
    if kind == "sigmoid":
        y = (torch.rand(x.shape, device=device, generator=g) < 0.05).to(dtype)
        rows["focalkit"] = fwd_bwd(lambda a, b: fk.sigmoid_focal_loss(a, b, backend="triton"), x, y)
        rows["focalkit inplace_grad"] = fwd_bwd(lambda a, b: fk.sigmoid_focal_loss(a * 1, b, backend="triton",
                                                                                    inplace_grad=True), x, y)
        if "torchvision" in ps:
            rows["torchvision"] = fwd_bwd(ps["torchvision"], x, y)
        rows["F.binary_cross_entropy_with_logits"] = fwd_bwd(lambda a, b: F.binary_cross_entropy_with_logits(a, b), x, y)
        if not dry:
            rows["torch.compile(textbook)"] = fwd_bwd(torch.compile(textbook_sigmoid), x, y)
        moved = x.numel() * x.element_size() * (2 + 1)  # read logits and targets, write the gradient
    else:
        t = torch.randint(0, c, (x.shape[0],), device=device, generator=g)
        rows["focalkit"] = fwd_bwd(lambda a, b: fk.softmax_focal_loss(a, b, backend="triton"), x, t)
        if "kornia" in ps:
            rows["kornia"] = fwd_bwd(ps["kornia"], x, t)
        rows["F.cross_entropy"] = fwd_bwd(lambda a, b: F.cross_entropy(a, b), x, t)
        if not dry:
            rows["torch.compile(textbook)"] = fwd_bwd(torch.compile(textbook_softmax), x, t)
        moved = x.numel() * x.element_size() * 2  # read logits, write the gradient
    src = x.detach()
    rows["copy (bandwidth floor)"] = lambda: torch.empty_like(src).copy_(src)
    for fn in rows.values():  # warm-up and compile
        fn()
        fn()
    times = {k: [] for k in rows}
    for _ in range(rounds):  # interleaved
        for k, fn in rows.items():
            times[k].append(run(fn, reps))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    copy_ms = med["copy (bandwidth floor)"]
    copy_bytes = 2 * src.numel() * src.element_size()
    res = {"kind": kind, "elements": x.numel(), "shape": list(x.shape), "dtype": str(dtype).replace("torch.", ""),
           "ms": med, "copy_GBps": copy_bytes / copy_ms / 1e6,
           "focalkit_GBps": moved / med["focalkit"] / 1e6,
           "focalkit_fraction_of_copy_bandwidth": (moved / med["focalkit"]) / (copy_bytes / copy_ms)}
    for peer in ("torchvision", "kornia"):
        if peer in med:
            res[f"speedup_vs_{peer}"] = med[peer] / med["focalkit"]
    del x, src
    if device == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    sizes = [(4096, 64)] if dry else [(16 * 2 ** 20, 80), (128 * 2 ** 20, 80)]
    smx_c = 64 if dry else 1000
    results = []
    for n, c in sizes:
        for dtype in (torch.float32, torch.bfloat16):
            results.append(bench_case("sigmoid", n, c, dtype, device, dry, 3 if dry else 7, 1 if dry else 5))
            results.append(bench_case("softmax", n - n % smx_c, smx_c, dtype, device, dry, 3 if dry else 7,
                                      1 if dry else 5))
            print(json.dumps(results[-2]), json.dumps(results[-1]), flush=True)
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "driver": (torch.cuda.get_device_properties(0).name and __import__("subprocess").run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                text=True).stdout.strip()) if device == "cuda" else None,
            "torch": torch.__version__, "triton": __import__("triton").__version__, "dry_run": dry}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [f"## GPU (`benchmarks/gpu_check.sh`{' --dry-run' if dry else ''})", "",
             f"{meta['device']}, driver {meta['driver']}, torch {meta['torch']}, triton {meta['triton']}. "
             "Forward + backward, median ms of interleaved rounds (CUDA events).", "",
             "| loss | elements | dtype | focalkit ms | peer ms | x peer | BCE/CE ms | compile ms | copy ms | "
             "of copy bandwidth |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        peer = "torchvision" if r["kind"] == "sigmoid" else "kornia"
        base = "F.binary_cross_entropy_with_logits" if r["kind"] == "sigmoid" else "F.cross_entropy"
        ms = r["ms"]
        lines.append(f"| {r['kind']} | {r['elements']:,} | {r['dtype']} | {ms['focalkit']:.3f} | "
                     f"{ms.get(peer, float('nan')):.3f} | {r.get('speedup_vs_' + peer, float('nan')):.1f} | "
                     f"{ms[base]:.3f} | {ms.get('torch.compile(textbook)', float('nan')):.3f} | "
                     f"{ms['copy (bandwidth floor)']:.3f} | {100 * r['focalkit_fraction_of_copy_bandwidth']:.0f} % |")
    (out / "gpu_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
