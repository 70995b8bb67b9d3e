"""The GBDT and Keras adapters import and run with torch made unimportable (a fresh interpreter with
an import hook that refuses it); ``from focalkit import sigmoid_focal_loss`` then says what to install."""

import os
import subprocess
import sys
import textwrap

import pytest

from focalkit import _native


NO_TORCH = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (made unimportable)", name=name)
sys.meta_path.insert(0, _NoTorch())
"""


def _run(code: str, **env):
    r = subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **env))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.skipif(_native.LIB is None, reason="the GBDT objectives run on the native kernel without torch")
@pytest.mark.parametrize("lib", ["xgboost", "lightgbm"])
def test_gbdt_adapter_trains_without_torch(lib):
    pytest.importorskip(lib)
    _run(f"""
        import sys
        import numpy as np
        import focalkit
        try:
            from focalkit import sigmoid_focal_loss
        except ImportError as exc:
            assert "pip install torch" in str(exc)
        else:
            raise SystemExit("the torch API imported without torch")
        from focalkit.adapters import {lib} as ad
        rng = np.random.default_rng(0)
        X = rng.normal(size=(300, 4)); y = (X[:, 0] + 0.3 * rng.normal(size=300) > 1.0).astype(float)
        obj = ad.focal_objective(gamma=2.0, alpha=0.25)
        g, h = obj(y, np.zeros(300))
        assert g.shape == (300,) and (h > 0).all()
        m = ad.softmax_focal_objective(2.0, weight=[1.0, 2.0, 0.5])
        g, h = m(rng.integers(0, 3, 50).astype(float), np.zeros((50, 3)))
        assert g.shape == (50, 3)
        if "{lib}" == "xgboost":
            import xgboost as xgb
            d = xgb.DMatrix(X, y, base_margin=np.full(300, obj.init_margin(y)))
            xgb.train({{"disable_default_eval_metric": 1}}, d, 5, obj=obj)
        else:
            import lightgbm as lgb
            lgb.train({{"objective": obj, "verbose": -1}}, lgb.Dataset(X, y), 5)
        assert not [k for k in sys.modules if k.split(".")[0] == "torch"]
        print("OK")
    """)


def test_keras_adapter_without_torch():
    pytest.importorskip("keras")
    pytest.importorskip("jax")  # in the test extra: Keras's backend where torch is absent
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    r = subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent("""
        import sys
        import numpy as np
        from focalkit.adapters.keras import BinaryFocalLoss, CategoricalFocalLoss
        import keras
        assert keras.backend.backend() == "jax", keras.backend.backend()
        print(float(BinaryFocalLoss()(np.array([1.0, 0.0]), np.array([0.3, -1.0], dtype="float32"))))
        print(float(CategoricalFocalLoss(class_counts=[50, 5])(np.eye(2), np.zeros((2, 2), dtype="float32"))))
        assert not [k for k in sys.modules if k.split(".")[0] == "torch"]
        print("OK")
    """)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]
