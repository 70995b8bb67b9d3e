"""``pip install ".[xgboost,lightgbm,catboost]"`` into a fresh venv installs no torch, and the
objectives and classifiers train there (the install step a GBDT user runs)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CI")
def test_gbdt_extras_install_and_train_without_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{ROOT}[xgboost,lightgbm,catboost]"],
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    code = textwrap.dedent("""
        import importlib.util
        assert importlib.util.find_spec("torch") is None, "torch was installed"
        import numpy as np
        from focalkit.adapters.xgboost import FocalXGBClassifier, focal_objective
        from focalkit.adapters.lightgbm import FocalLGBMClassifier
        from focalkit.adapters.catboost import FocalCatBoostClassifier
        from focalkit import _native
        assert _native.LIB is not None, _native.ERROR
        rng = np.random.default_rng(0)
        X = rng.normal(size=(400, 4)); y = np.where(X[:, 0] + 0.3 * rng.normal(size=400) > 1.0, "yes", "no")
        for cls in (FocalXGBClassifier, FocalLGBMClassifier, FocalCatBoostClassifier):
            clf = cls(gamma=2.0, n_estimators=20).fit(X, y)
            assert (clf.predict(X) == y).mean() > 0.9, cls
        try:
            from focalkit import sigmoid_focal_loss
        except ImportError as exc:
            assert "pip install torch" in str(exc)
        print("OK")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
