"""focalkit's Triton kernels against everything else on a CUDA GPU: the workload table of the GPU-speed
issue, forward + backward, peers side by side in one run.

Run by ``benchmarks/gpu_check.sh`` (``--dry-run``: the same code on the CPU under TRITON_INTERPRET=1 at
tiny sizes, wall-clock timers, no torch.compile and no profiler). Writes ``gpu.json`` and
``gpu_results.md`` into ``--out``.

Per row: the median ms of interleaved rounds (CUDA events) of focalkit (gamma = 2), F.cross_entropy /
BCE-with-logits, the peer (torchvision for sigmoid, kornia for 2-D softmax, where importable),
``torch.compile`` of the textbook formula, ``torch.compile(F.cross_entropy)`` (2-D softmax rows),
Liger-Kernel's cross entropy where installed, and ``torch.empty_like(x).copy_(x)``, the bandwidth
yardstick. Then for focalkit: kernel launches and host microseconds per step (torch.profiler; host
time of a loop of steps with the GPU idle, beside F.cross_entropy's), device time of each focalkit
kernel and its bandwidth (bytes it must move over its time, against the copy's), and the extra peak
memory over the logits' size.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import focalkit as fk
from focalkit.backends import triton as tb
from _meta import triton_switches
from gpu_decide import LOOP_LIMIT

GAMMA = 2.0


def textbook_sigmoid(x, y, gamma=GAMMA, alpha=0.25):
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    pt = p * y + (1 - p) * (1 - y)
    return ((alpha * y + (1 - alpha) * (1 - y)) * (1 - pt) ** gamma * ce).mean()


def textbook_softmax(z, t, gamma=GAMMA):
    logp = torch.log_softmax(z, 1).gather(1, t.unsqueeze(1)).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def textbook_varifocal(x, q, gamma=GAMMA, alpha=0.75):
    """ultralytics' VarifocalLoss formula (labels = q > 0), mean over all elements."""
    lab = (q > 0).to(x.dtype)
    w = alpha * x.sigmoid().pow(gamma) * (1 - lab) + q * lab
    return (F.binary_cross_entropy_with_logits(x.float(), q.float(), reduction="none") * w).mean()


def textbook_dfl(z, y):
    """ultralytics' DFLoss formula: two cross-entropies weighted by the distances to the two bins."""
    tl = y.long()
    wl = tl + 1 - y
    return (F.cross_entropy(z, tl, reduction="none") * wl + F.cross_entropy(z, tl + 1, reduction="none") * (1 - wl)).mean()


def _kornia():
    try:
        from kornia.losses import focal_loss

        return lambda z, t: focal_loss(z, t, alpha=None, gamma=GAMMA, reduction="mean")
    except Exception:  # not installed (a wheel on the GPU machine)
        return None


def _torchvision():
    try:
        from torchvision.ops import sigmoid_focal_loss

        return lambda x, y: sigmoid_focal_loss(x, y, gamma=GAMMA, reduction="mean")
    except Exception:
        return None


def _liger():
    try:
        from liger_kernel.transformers.functional import liger_cross_entropy

        return lambda z, t: liger_cross_entropy(z.clone(), t)  # it writes into its input: timed on a clone
    except Exception:
        return None


# name, kind, shape, dtypes; "dry" shapes replace them under --dry-run
WORKLOADS = [
    ("segmentation", "softmax", (8, 19, 512, 1024), ("float32", "bfloat16")),
    ("ADE-like", "softmax", (16, 150, 128, 128), ("float32",)),
    ("LVIS", "softmax", (65536, 1203), ("float32", "bfloat16")),
    ("long-tail", "softmax", (8192, 21843), ("float32",)),
    ("vocab-32000", "softmax", (16384, 32000), ("float32",)),
    ("flattened segmentation", "softmax", (4194304, 19), ("float32", "bfloat16")),
    ("RetinaNet", "sigmoid", (1920000, 80), ("float32", "bfloat16")),
    ("sigmoid 16M", "sigmoid", (209716, 80), ("float32", "bfloat16")),
    ("RetinaNet indices", "sparse", (1920000, 80), ("float32",)),
    ("VFL 16 x 8400 anchors", "varifocal", (134400, 80), ("float32", "bfloat16")),
    ("DFL 16 x 8400 x 4 sides", "dfl", (537600, 16), ("float32",)),
    ("latency softmax", "softmax", (256, 10), ("float32",)),
    ("latency sigmoid", "sigmoid", (1024, 80), ("float32",)),
]
DRY = {"segmentation": (2, 19, 4, 8), "ADE-like": (2, 150, 2, 2), "LVIS": (4, 1203), "long-tail": (2, 5000),
       "vocab-32000": (1, 9000), "flattened segmentation": (64, 19), "RetinaNet": (64, 80),
       "sigmoid 16M": (32, 80), "latency softmax": (16, 10), "latency sigmoid": (32, 80),
       "RetinaNet indices": (64, 80), "VFL 16 x 8400 anchors": (64, 80), "DFL 16 x 8400 x 4 sides": (64, 16)}


def _timer(device):
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


def _step(loss_fn, x, *rest):
    def step():
        x.grad = None
        loss_fn(x, *rest).backward()
    return step


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def host_us(step, device, reps=200):
    """Host microseconds per step: a loop of steps without synchronising, on an idle GPU."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    t1 = time.perf_counter()
    _sync(device)
    return (t1 - t0) * 1e6 / reps


def profile_step(step, device):
    """(launches, {kernel name: device ms}) of one step."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
        _sync(device)
    launches, kernels = 0, {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CPU and any(k in e.name for k in ("LaunchKernel", "Memcpy",
                                                                                        "Memset")):
            launches += 1
        elif e.device_type == torch.autograd.DeviceType.CUDA:
            kernels[e.name] = kernels.get(e.name, 0.0) + e.device_time_total / 1e3
    return launches, kernels


def peak_extra(step, x, device):
    if device != "cuda":
        return float("nan")
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / (x.numel() * x.element_size())


def _softmax_switched(**switches):
    """The softmax step with ``backends/triton.py``'s switches set (``_meta.triton_switches``): the rows
    without the loop over few classes (``ROW_LOOP_MAX_C=0``, the tile table) and the N-D positions in the
    loop over their classes (``SPATIAL_LOOP_MAX_C``, off by default), each beside the default, settle
    which is faster on this GPU."""
    def run(z, t):
        with triton_switches(**switches):
            return fk.softmax_focal_loss(z, t, gamma=GAMMA, backend="triton")
    return run


def _baseline(rows):
    """torch's own loss of the row: BCE-with-logits or F.cross_entropy."""
    return "BCE" if "BCE" in rows else "F.cross_entropy"


def bench_row(name, kind, shape, dtype, device, dry, rounds, reps):
    run = _timer(device)
    g = torch.Generator(device=device).manual_seed(0)
    x = (torch.randn(shape, device=device, generator=g) * 2).to(dtype).requires_grad_()
    rows, peer = {}, None
    if kind in ("sigmoid", "sparse"):
        focal = lambda a, b: fk.sigmoid_focal_loss(a, b, gamma=GAMMA, backend="triton")  # noqa: E731
        if kind == "sigmoid":
            y = (torch.rand(shape, device=device, generator=g) < 0.01).to(dtype)
            t = y
            moved = {"forward": 2, "backward": 3}  # logits-sized tensors read / written
        else:  # class indices, C = background (RetinaNet, DETR heads): no one-hot tensor
            t = torch.randint(0, shape[1] * 100, shape[:1], device=device, generator=g).clamp(max=shape[1])
            y = F.one_hot(t, shape[1] + 1)[:, :shape[1]].to(dtype)  # the dense targets the others need
            moved = {"forward": 1, "backward": 2}
        rows["focalkit"] = _step(focal, x, t)
        if kind == "sparse":
            rows["focalkit dense one-hot"] = _step(focal, x, y)
        rows["BCE"] = _step(lambda a, b: F.binary_cross_entropy_with_logits(a, b), x, y)
        tv = _torchvision()
        if tv is not None:
            rows["torchvision"] = _step(tv, x, y)
            peer = "torchvision"
        if not dry:
            rows["compile(textbook)"] = _step(torch.compile(textbook_sigmoid), x, y)
        other = (t, y)
    elif kind == "varifocal":
        q = torch.rand(shape, device=device, generator=g) * (torch.rand(shape, device=device, generator=g) < 0.01)
        q = q.to(dtype)
        rows["focalkit"] = _step(lambda a, b: fk.varifocal_loss(a, b, gamma=GAMMA, backend="triton"), x, q)
        rows["BCE"] = _step(lambda a, b: F.binary_cross_entropy_with_logits(a, b), x, q)
        rows["ultralytics formula"] = _step(textbook_varifocal, x, q)
        peer = "ultralytics formula"
        if not dry:
            rows["compile(textbook)"] = _step(torch.compile(textbook_varifocal), x, q)
        other = (q,)
        moved = {"forward": 2, "backward": 3}
    elif kind == "dfl":
        yd = torch.rand(shape[:1], device=device, generator=g) * (shape[1] - 1.01)
        rows["focalkit"] = _step(lambda a, b: fk.distribution_focal_loss(a, b, backend="triton"), x, yd)
        rows["F.cross_entropy"] = _step(lambda a, b: F.cross_entropy(a, b.long()), x, yd)
        rows["ultralytics formula"] = _step(textbook_dfl, x, yd)
        peer = "ultralytics formula"
        if not dry:
            rows["compile(textbook)"] = _step(torch.compile(textbook_dfl), x, yd)
        other = (yd,)
        moved = {"forward": 1, "backward": 2}
    else:
        t = torch.randint(0, shape[1], shape[:1] + shape[2:], device=device, generator=g)
        rows["focalkit"] = _step(lambda a, b: fk.softmax_focal_loss(a, b, gamma=GAMMA, backend="triton"), x, t)
        if len(shape) == 2 and tb.softmax_tile(shape[1], False) == tb.ROW_LOOP:
            rows["focalkit tiles"] = _step(_softmax_switched(ROW_LOOP_MAX_C=0), x, t)  # the same rows on the tile table
        if len(shape) > 2 and shape[1] <= LOOP_LIMIT and tb.softmax_tile(shape[1], True) != tb.SPATIAL_LOOP:
            rows["focalkit loop"] = _step(_softmax_switched(SPATIAL_LOOP_MAX_C=LOOP_LIMIT), x, t)  # the same positions in the loop
        rows["F.cross_entropy"] = _step(lambda a, b: F.cross_entropy(a, b), x, t)
        if len(shape) == 2:
            kf = _kornia()
            if kf is not None:
                rows["kornia"] = _step(kf, x, t)
                peer = "kornia"
            lg = _liger()
            if lg is not None and dtype == torch.float32:
                rows["Liger CE (incl. clone)"] = _step(lg, x, t)
            if not dry:
                rows["compile(textbook)"] = _step(torch.compile(textbook_softmax), x, t)
                rows["compile(F.cross_entropy)"] = _step(torch.compile(F.cross_entropy), x, t)
        other = (t,)
        moved = {"forward": 1, "backward": 2}
    src = x.detach()
    rows["copy"] = lambda: torch.empty_like(src).copy_(src)
    for fn in rows.values():  # warm-up: compile, autotune
        fn()
        fn()
    times = {k: [] for k in rows}
    for _ in range(rounds):  # interleaved
        for k, fn in rows.items():
            times[k].append(run(fn, reps))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    logits_bytes = x.numel() * x.element_size()
    copy_bw = 2 * logits_bytes / med["copy"]  # bytes per ms
    res = {"workload": name, "kind": kind, "shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
           "elements": x.numel(), "ms": med, "peer": peer}
    if peer:
        res["speedup_vs_peer"] = med[peer] / med["focalkit"]
    if not dry:
        launches, kernels = profile_step(rows["focalkit"], device)
        res["launches"] = launches
        res["launches_F"] = profile_step(rows[_baseline(rows)], device)[0]
        fk_kernels = {k: v for k, v in kernels.items()
                      if any(s in k for s in ("sigmoid_", "softmax_", "vfl_", "dfl_", "finish"))}
        res["kernels_ms"] = fk_kernels
        for part, n_tensors in moved.items():
            key = [k for k in fk_kernels if ("fwd" if part == "forward" else "bwd") in k]
            if key:
                ms = fk_kernels[key[0]]
                # targets of class indices are small next to the logits; the sigmoid's are logits-sized
                res[f"{part}_kernel_fraction_of_copy_bandwidth"] = n_tensors * logits_bytes / ms / copy_bw
        res["peak_extra_x_logits"] = peak_extra(rows["focalkit"], x, device)
    if math.prod(shape) <= 1 << 20:  # small inputs: the host's cost per step decides
        reps = 2 if dry else 200
        res["host_us"] = host_us(rows["focalkit"], device, reps)
        res["host_us_F"] = host_us(rows[_baseline(rows)], device, reps)
    del x, src, rows, other
    if device == "cuda":
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    args = ap.parse_args()
    dry = args.dry_run
    device = "cpu" if dry else "cuda"
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "triton": __import__("triton").__version__, "dry_run": dry,
            "gamma": GAMMA}
    if device == "cuda":
        meta["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                        capture_output=True, text=True).stdout.strip()
    results = []
    for name, kind, shape, dtypes in WORKLOADS:
        if args.only and name not in args.only.split(","):
            continue
        for dt in dtypes:
            r = bench_row(name, kind, DRY[name] if dry else shape, getattr(torch, dt), device, dry,
                          2 if dry else 7, 1 if dry else 5)
            results.append(r)
            print(json.dumps(r), flush=True)
            write(Path(args.out), meta, results, dry)  # after every row: a stage timeout keeps what ran


def write(out, meta, results, dry):
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [f"## GPU workloads (`benchmarks/gpu_check.sh`{' --dry-run' if dry else ''})", "",
             f"{meta['device']}, torch {meta['torch']}, triton {meta['triton']}. Forward + backward, gamma = 2, "
             "median ms of interleaved rounds (CUDA events); (tiles: the same rows without the loop over few "
             "classes; loop: the same N-D positions in the loop over their classes, off by default); launches per "
             "step (torch.profiler); forward / "
             "backward kernel bandwidth as a fraction of the copy's; extra peak memory in logits.", "",
             "| workload | dtype | focalkit | F.ce / BCE | peer | compile(textbook) | compile(F.ce) | Liger | copy "
             "| launches (F) | fwd / bwd bw | extra mem | host us (F) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in results:
        ms = r["ms"]
        base = ms.get("BCE", ms.get("F.cross_entropy"))
        peer = f"{r['peer']} {ms[r['peer']]:.3f}" if r["peer"] else "-"
        tiles = f" (tiles {ms['focalkit tiles']:.3f})" if "focalkit tiles" in ms else ""
        tiles += f" (loop {ms['focalkit loop']:.3f})" if "focalkit loop" in ms else ""
        lines.append(
            f"| {r['workload']} {tuple(r['shape'])} | {r['dtype']} | {ms['focalkit']:.3f}{tiles} | {base:.3f} "
            f"| {peer} | "
            f"{ms.get('compile(textbook)', nan):.3f} | {ms.get('compile(F.cross_entropy)', nan):.3f} | "
            f"{ms.get('Liger CE (incl. clone)', nan):.3f} | {ms['copy']:.3f} | "
            f"{r.get('launches', '-')} ({r.get('launches_F', '-')}) | "
            f"{100 * r.get('forward_kernel_fraction_of_copy_bandwidth', nan):.0f} / "
            f"{100 * r.get('backward_kernel_fraction_of_copy_bandwidth', nan):.0f} % | "
            f"{r.get('peak_extra_x_logits', nan):.2f} | "
            f"{r.get('host_us', nan):.0f} ({r.get('host_us_F', nan):.0f}) |")
    (out / "gpu_results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
    import sys

    print(Path(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "benchmarks/results")
          .joinpath("gpu_results.md").read_text())
