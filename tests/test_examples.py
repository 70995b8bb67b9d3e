"""The examples run (``--quick`` sizes)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_sklearn_pipeline_example_runs():
    pytest.importorskip("lightgbm")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "sklearn_pipeline.py"), "--quick"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "grid search" in r.stdout and "Brier score, focal + isotonic" in r.stdout
