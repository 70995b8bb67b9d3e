"""``benchmarks/gpu_check.sh --dry-run``: the GPU check's code paths (tests and timings) on the CPU
under Triton's interpreter, so the script is known to run before a GPU is lent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bash script, Linux CI")
def test_gpu_check_dry_run(tmp_path):
    pytest.importorskip("triton")
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, TRITON_INTERPRET="1")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], capture_output=True,
                       text=True, env=env, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert res["meta"]["dry_run"] and len(res["results"]) == 19  # every workload row and dtype of bench_gpu.py
    assert {r["workload"] for r in res["results"]} >= {"segmentation", "LVIS", "RetinaNet", "latency softmax",
                                                       "RetinaNet indices", "VFL 16 x 8400 anchors",
                                                       "DFL 16 x 8400 x 4 sides"}
    flat = [r for r in res["results"] if r["workload"] == "flattened segmentation"]
    assert flat and all("focalkit tiles" in r["ms"] for r in flat)  # the row loop against the tile table
    seg = [r for r in res["results"] if r["workload"] == "segmentation"]
    assert seg and all("focalkit loop" in r["ms"] for r in seg)  # the spatial loop against the spatial tiles
    host = json.loads((tmp_path / "gpu_host.json").read_text())  # the host's time per step taken apart
    assert len(host["rows"]) == 3 and all(r["n_launches"] >= 2 and r["python"] > 0 for r in host["rows"].values())
    assert [r["n_launches"] for r in host["rows"].values()] == [2, 3, 2]  # one program, several, one
    assert [r.get("n_launches_last_program") for r in host["rows"].values()] == [None, 2, None]  # the A/B
    summary = (tmp_path / "gpu_summary.md").read_text()
    assert "| tests |" in summary and " 0 failed" in summary and "tests marked gpu" in summary
    assert "Host time per step, taken apart" in summary
