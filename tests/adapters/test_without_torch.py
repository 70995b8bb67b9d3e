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


def _run_plain(code: str, **env):
    """A fresh interpreter where torch is installed and importable."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, **env))
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.parametrize("backend", ["jax", "numpy"])
def test_keras_adapter_on_a_non_torch_backend_never_imports_torch(backend):
    """Issue 19, item 16: torch is installed here, and still not imported by the Keras adapter on JAX /
    NumPy, nor by the GBDT adapters, nor by ``import focalkit`` itself; the torch API then loads on first use."""
    pytest.importorskip("jax" if backend == "jax" else "keras")
    _run_plain("""
        import sys
        import numpy as np
        import focalkit.adapters.keras as k
        loss = k.SparseCategoricalFocalLoss()(np.array([1, 0]), np.array([[0.5, 2.0], [1.0, -1.0]], dtype="float32"))
        assert np.isfinite(float(loss))
        import focalkit
        for lib in ("xgboost", "lightgbm", "catboost"):
            try:
                __import__(f"focalkit.adapters.{lib}")
            except ImportError:
                pass
        assert "torch" not in sys.modules, [m for m in sys.modules if m.startswith("torch")][:5]
        f = focalkit.sigmoid_focal_loss  # the torch API, loaded now
        import torch
        assert float(f(torch.zeros(2), torch.ones(2), alpha=None, gamma=0.0)) > 0
        try:
            f(torch.zeros(2), torch.ones(3))
        except ValueError as e:
            assert "Expected `targets`" in str(e), e
        print("OK")
    """, KERAS_BACKEND=backend)


def test_import_focalkit_after_torch_registers_the_ops():
    """With torch imported first (what ``torch.export.load`` of a focalkit graph needs), ``import
    focalkit`` loads the torch API and registers its custom ops at once."""
    _run_plain("""
        import torch
        import focalkit
        assert "sigmoid_focal_loss" in vars(focalkit)
        assert hasattr(torch.ops.focalkit, "native_softmax_focal") and hasattr(torch.ops.focalkit, "triton_sigmoid_focal")
        print("OK")
    """)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_keras_losses_take_half_dtypes_on_every_backend(backend):
    """Issue 19, item 11: ``dtype="bfloat16"`` / ``"float16"`` on Keras's NumPy and JAX backends (NumPy has no
    bfloat16 log-sum-exp): halves computed in float32, returned in the loss's dtype, close to float32."""
    pytest.importorskip("jax" if backend == "jax" else "keras")
    _run_plain("""
        import numpy as np
        import keras
        from focalkit.adapters import keras as fka
        from focalkit.compat import keras as fkk
        y = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype="float32")
        p = np.array([[0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]], dtype="float32")
        z = np.log(p)
        cases = [(fka.BinaryFocalLoss, y, z), (fka.CategoricalFocalLoss, y, z),
                 (fka.SparseCategoricalFocalLoss, y.argmax(1), z),
                 (fkk.BinaryFocalCrossentropy, y, p), (fkk.CategoricalFocalCrossentropy, y, p)]
        for cls, t, pred in cases:
            ref = float(keras.ops.convert_to_numpy(cls(dtype="float32")(t, pred)))
            for dt in ("bfloat16", "float16"):
                out = cls(dtype=dt)(t, pred)
                assert keras.backend.standardize_dtype(out.dtype) == dt, (cls.__name__, dt, out.dtype)
                got = float(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")))
                assert abs(got - ref) <= 2e-2 * abs(ref), (cls.__name__, dt, got, ref)
        print("OK")
    """, KERAS_BACKEND=backend)
