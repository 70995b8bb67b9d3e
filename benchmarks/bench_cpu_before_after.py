"""The CPU keeps its speed: focalkit's native path at a git ref ("before") and in the working tree
("after"), forward + backward, timed in alternating fresh processes in one run (float32; sigmoid
N x 80 at 8M elements, softmax 65,536 x 1000, and tiny inputs for the host cost).

    python benchmarks/bench_cpu_before_after.py [--ref 2902b1b] [--rounds 5]

The ref's source is checked out into a temporary worktree and runs with this tree's compiled kernel
(the same C source and ABI: the script refuses otherwise). Writes results/cpu_before_after.json and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import json, sys, time, torch
import focalkit as fk
torch.manual_seed(0)
cases = {
    "sigmoid 100000 x 80": lambda: (torch.randn(100000, 80), (torch.rand(100000, 80) < 0.01).float(), fk.sigmoid_focal_loss),
    "softmax 65536 x 1000": lambda: (torch.randn(65536, 1000), torch.randint(0, 1000, (65536,)), fk.softmax_focal_loss),
    "sigmoid 1024 x 80": lambda: (torch.randn(1024, 80), (torch.rand(1024, 80) < 0.05).float(), fk.sigmoid_focal_loss),
    "softmax 256 x 10": lambda: (torch.randn(256, 10), torch.randint(0, 10, (256,)), fk.softmax_focal_loss),
}
out = {}
for name, make in cases.items():
    x, t, f = make()
    reps = 200 if x.numel() < 10**6 else 20
    def step():
        a = x.clone().requires_grad_()
        f(a * 1, t).backward()
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    out[name] = (time.perf_counter() - t0) * 1e3 / reps
print(json.dumps(out))
"""


def run(src: Path, so: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), TRITON_INTERPRET="0")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=src.parent)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="2902b1b")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sos = list((ROOT / "src" / "focalkit").glob("_focal_native*.so"))
    if not sos:
        raise SystemExit("build the native kernel first (pip install -e .)")
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(wt), args.ref], check=True)
        try:
            same_c = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", args.ref, "--",
                                     "src/focalkit/_native/focal.c"]).returncode == 0
            if not same_c:
                raise SystemExit("the C kernel changed since the ref: build both to compare")
            for so in sos:
                (wt / "src" / "focalkit" / so.name).write_bytes(so.read_bytes())
            res = {"before": [], "after": []}
            for _ in range(args.rounds):  # alternating fresh processes
                res["before"].append(run(wt / "src", sos[0]))
                res["after"].append(run(ROOT / "src", sos[0]))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    med = {k: {c: sorted(r[c] for r in v)[len(v) // 2] for c in v[0]} for k, v in res.items()}
    (ROOT / "benchmarks" / "results" / "cpu_before_after.json").write_text(
        json.dumps({"ref": args.ref, "median_ms": med, "runs": res}, indent=2) + "\n")
    print(f"| native, forward + backward (ms, median of {args.rounds} processes) | before ({args.ref}) | after | after / before |")
    print("|---|---|---|---|")
    for c in med["before"]:
        b, a = med["before"][c], med["after"][c]
        print(f"| {c} | {b:.3f} | {a:.3f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
