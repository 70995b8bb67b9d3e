"""The CPU keeps its speed: focalkit's native path at a git ref ("before") and in the working tree
("after"), forward + backward, timed in alternating fresh processes in one run (before first in even
rounds, after first in odd ones), each the best of 5 batches of steps (float32; sigmoid N x 80 at 8M elements, softmax 65,536 x 1000, few classes, and tiny
inputs for the host cost).

    python benchmarks/bench_cpu_before_after.py [--ref 2902b1b] [--rounds 5] [--same-build] [--only TEXT,...]
                                                [--threads N]

``--only``: the rows whose name holds one of the comma-separated texts; ``--threads``: torch's (and the
C kernel's) thread count in the timed processes (default: torch's own). ``--kernel``: the softmax C
kernel alone, both builds loaded in one process and called alternately on the same buffers (for a change
to the C code: no spread between processes, no Python around the call).

The ref's source is checked out into a temporary worktree; where its C kernel is the same it runs
with this tree's compiled kernel, else its own is built there (``--same-build``: use this tree's
anyway, where the C source differs only in what this build does not compile). Writes results/cpu_before_after.json and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, time, torch
import focalkit as fk
only, threads = json.loads(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
cases = {
    "sigmoid 100000 x 80": lambda: (torch.randn(100000, 80), (torch.rand(100000, 80) < 0.01).float(), fk.sigmoid_focal_loss),
    "softmax 65536 x 1000": lambda: (torch.randn(65536, 1000), torch.randint(0, 1000, (65536,)), fk.softmax_focal_loss),
    "sigmoid 1024 x 80": lambda: (torch.randn(1024, 80), (torch.rand(1024, 80) < 0.05).float(), fk.sigmoid_focal_loss),
    "softmax 256 x 10": lambda: (torch.randn(256, 10), torch.randint(0, 10, (256,)), fk.softmax_focal_loss),
    # few classes: rows (CIFAR-like, tabular) and dense prediction (Cityscapes' 19 classes)
    "softmax 262144 x 10": lambda: (torch.randn(262144, 10), torch.randint(0, 10, (262144,)), fk.softmax_focal_loss),
    "softmax (4, 19, 128, 128)": lambda: (torch.randn(4, 19, 128, 128), torch.randint(0, 19, (4, 128, 128)),
                                          fk.softmax_focal_loss),
    # few classes with dense coefficients: label smoothing (rows, dense prediction), probability targets
    "softmax 262144 x 10, label smoothing 0.1": lambda: (
        torch.randn(262144, 10), torch.randint(0, 10, (262144,)),
        lambda a, t: fk.softmax_focal_loss(a, t, label_smoothing=0.1)),
    "softmax (4, 19, 128, 128), label smoothing 0.1": lambda: (
        torch.randn(4, 19, 128, 128), torch.randint(0, 19, (4, 128, 128)),
        lambda a, t: fk.softmax_focal_loss(a, t, label_smoothing=0.1)),
    "softmax (4, 19, 128, 128), label smoothing 0.1, gamma=1.5": lambda: (
        torch.randn(4, 19, 128, 128), torch.randint(0, 19, (4, 128, 128)),
        lambda a, t: fk.softmax_focal_loss(a, t, label_smoothing=0.1, gamma=1.5)),
    "softmax 262144 x 10, probabilities": lambda: (
        torch.randn(262144, 10), torch.softmax(torch.randn(262144, 10), 1), fk.softmax_focal_loss),
    # DFL over 16 bins (ultralytics' reg_max): 65,536 anchors x 4 sides
    "DFL 262144 x 16": lambda: (torch.randn(262144, 16), torch.rand(262144) * 15, fk.distribution_focal_loss),
    # Varifocal over YOLO-style anchors x 80 classes, ultralytics' labels (the C kernel since 48da7f9)
    "VFL 100000 x 80, labels": lambda: (torch.randn(100000, 80), torch.rand(100000, 80) * (torch.rand(100000, 80) < 0.01),
                                        lambda a, q: fk.varifocal_loss(a, q, labels=q > 0)),
    # probability targets at gamma = 0 (cross-entropy against soft labels; DFL's two-hot form)
    "softmax 262144 x 16, probabilities, gamma=0": lambda: (
        torch.randn(262144, 16), torch.softmax(torch.randn(262144, 16), 1),
        lambda a, t: fk.softmax_focal_loss(a, t, gamma=0.0)),
}
out = {}
for name, make in cases.items():
    if only and not any(s in name for s in only):
        continue
    x, t, f = make()
    reps = 200 if x.numel() < 10**6 else 20
    def step():
        a = x.clone().requires_grad_()
        f(a * 1, t).backward()
    for _ in range(3):
        step()
    batches = []  # the best of 5 batches: a VM's stolen time lands in some batches, not in all
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps // 5):
            step()
        batches.append((time.perf_counter() - t0) * 1e3 / (reps // 5))
    out[name] = min(batches)
print(json.dumps(out))
"""

# --kernel: both C libraries in one process, the softmax kernel called through its C ABI on the same
# buffers, the two alternating call by call (no process-to-process spread; no Python around the call)
KERNEL_CHILD = r"""
import ctypes, json, sys, time, torch
torch.manual_seed(0)
libs = {}
for side, path in json.loads(sys.argv[1]).items():
    lib = ctypes.CDLL(path)
    f = lib.fk_softmax_focal_f32
    f.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.c_double] * 3 + [ctypes.c_void_p] * 2 + [
        ctypes.c_int, ctypes.POINTER(ctypes.c_double)]
    f.restype = ctypes.c_int
    libs[side] = f
cases = {  # name: (N, C, S, class indices?, label smoothing, gamma)
    "class indices 262144 x 10": (262144, 10, 1, True, 0.0, 2.0),
    "class indices (4, 19, 128 x 128)": (4, 19, 16384, True, 0.0, 2.0),
    "label smoothing 0.1, 262144 x 10": (262144, 10, 1, True, 0.1, 2.0),
    "label smoothing 0.1, (4, 19, 128 x 128)": (4, 19, 16384, True, 0.1, 2.0),
    "label smoothing 0.1, (4, 19, 128 x 128), gamma=1.5": (4, 19, 16384, True, 0.1, 1.5),
    "probabilities, 262144 x 10": (262144, 10, 1, False, 0.0, 2.0),
    "probabilities, 262144 x 16, gamma=0": (262144, 16, 1, False, 0.0, 0.0),
}
out = {}
for name, (n, c, s, idx, eps, g) in cases.items():
    z = torch.randn(n, c, s)
    y = torch.randint(0, c, (n, s)) if idx else None
    q = None if idx else torch.softmax(torch.randn(n, c, s), 1)
    grad = torch.empty_like(z)
    acc = ctypes.c_double()
    args = (z.data_ptr(), None if y is None else y.data_ptr(), None if q is None else q.data_ptr(), None, n, c, s, -100,
            eps, g, 1.0 / (n * s), None, grad.data_ptr(), 1, ctypes.byref(acc))
    times = {side: [] for side in libs}
    for i in range(23):
        for side, f in (libs.items() if i % 2 == 0 else reversed(list(libs.items()))):
            t0 = time.perf_counter()
            rc = f(*args)
            dt = (time.perf_counter() - t0) * 1e3
            assert rc == 0, rc
            if i >= 3:
                times[side].append(dt)
    out[name] = {side: sorted(v)[len(v) // 2] for side, v in times.items()}
print(json.dumps(out))
"""


def kernel_ab(before_so: Path, after_so: Path) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="0")
    r = subprocess.run([sys.executable, "-c", KERNEL_CHILD, json.dumps({"before": str(before_so), "after": str(after_so)})],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(src: Path, so: Path, only: list, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), TRITON_INTERPRET="0")
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps([only, threads])], capture_output=True, text=True,
                       env=env, cwd=src.parent)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="2902b1b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--same-build", action="store_true",
                    help="the C source changed since the ref only where this build is the same (e.g. glibc-version "
                         "guards): compare the Python paths on this tree's kernel anyway")
    ap.add_argument("--only", default="", help="comma-separated texts: the rows whose name holds one")
    ap.add_argument("--threads", type=int, default=0, help="threads in the timed processes (0: torch's default)")
    ap.add_argument("--kernel", action="store_true",
                    help="time the softmax C kernel alone instead: both builds in one process, call by call "
                         "(one thread; writes results/kernel_before_after.json)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    sos = list((ROOT / "src" / "focalkit").glob("_focal_native*.so"))
    if not sos:
        raise SystemExit("build the native kernel first (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), args.ref], check=True)
        try:
            same_c = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", args.ref, "--",
                                     "src/focalkit/_native/focal.c"]).returncode == 0
            if same_c or args.same_build:
                for so in sos:
                    (wt / "src" / "focalkit" / so.name).write_bytes(so.read_bytes())
            else:  # the ref's own kernel, built in its worktree with the same compiler and flags
                subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=wt, check=True,
                               capture_output=True)
            # the working tree's sources are timed from a copy beside the ref's, so that both sides run from
            # the same kind of place (this VM timed the same files 5 to 20 % slower from the repository)
            after = Path(tmp) / "after" / "src"
            shutil.copytree(ROOT / "src", after, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            if args.kernel:
                ab = kernel_ab(next((wt / "src" / "focalkit").glob("_focal_native*.so")), sos[0])
                (ROOT / "benchmarks" / "results" / "kernel_before_after.json").write_text(
                    json.dumps({"ref": args.ref, "median_ms": ab}, indent=2) + "\n")
                print(f"| softmax C kernel, loss and gradient (ms, median of 20 calls, alternating, 1 thread) "
                      f"| before ({args.ref}) | after | after / before |\n|---|---|---|---|")
                for c, v in ab.items():
                    print(f"| {c} | {v['before']:.3f} | {v['after']:.3f} | {v['after'] / v['before']:.2f} |")
                return
            res = {"before": [], "after": []}
            trees = {"before": wt / "src", "after": after}
            for i in range(args.rounds):  # alternating fresh processes, in alternating order: the second
                for side in ("before", "after") if i % 2 == 0 else ("after", "before"):  # of a pair read up
                    res[side].append(run(trees[side], sos[0], only, args.threads))  # to 10 % slower here
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    med = {k: {c: sorted(r[c] for r in v)[len(v) // 2] for c in v[0]} for k, v in res.items()}
    (ROOT / "benchmarks" / "results" / "cpu_before_after.json").write_text(
        json.dumps({"ref": args.ref, "only": only, "threads": args.threads or None, "median_ms": med, "runs": res}, indent=2) + "\n")
    what = f"ms, median of {args.rounds} processes" + (f", {args.threads} thread(s)" if args.threads else "")
    print(f"| native, forward + backward ({what}) | before ({args.ref}) | after | after / before |")
    print("|---|---|---|---|")
    for c in med["before"]:
        b, a = med["before"][c], med["after"][c]
        print(f"| {c} | {b:.3f} | {a:.3f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
