"""``focalkit compare``'s table reader on a generated 200 MB CSV: time and peak memory.

Run: ``python benchmarks/bench_cli.py [--mb 200]``. Writes ``benchmarks/results/cli.json``. The
reader runs in a child process so that its peak resident memory (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CHILD = """
import sys, time, resource
from focalkit.cli import read_table
t0 = time.perf_counter()
X, y, classes, names = read_table(sys.argv[1], "label")
dt = time.perf_counter() - t0
with open("/proc/self/status") as fh:
    hwm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM:"))
print(dt, hwm, X.shape[0], X.shape[1], len(classes))
"""


def make_csv(path: Path, mb: float, cols: int = 20, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    rows = 0
    with path.open("w") as fh:
        fh.write(",".join([f"f{j}" for j in range(cols)] + ["label"]) + "\n")
        while path.stat().st_size < mb * 1e6 if rows else True:
            block = rng.standard_normal((100_000, cols))
            labels = rng.choice(5, size=100_000, p=[0.9, 0.05, 0.03, 0.015, 0.005])
            lines = "\n".join(",".join(f"{v:.6f}" for v in r) + f",{c}" for r, c in zip(block, labels))
            fh.write(lines + "\n")
            fh.flush()
            rows += 100_000
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=200.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        rows = make_csv(path, args.mb)
        size = path.stat().st_size
        out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
        dt, hwm, n, d, k = out.stdout.split()
    res = {"file_mb": size / 1e6, "rows": int(n), "features": int(d), "classes": int(k), "seconds": float(dt),
           "peak_rss_mb": int(hwm) / 1e6, "peak_over_file": int(hwm) / size}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "cli.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
