"""Root pytest configuration: adapters' doctests need their framework; Keras runs on torch; the
Triton kernels run in Triton's interpreter (on the CPU), unless a real GPU session overrides it."""

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TRITON_INTERPRET", "1")

collect_ignore = [
    f"src/focalkit/adapters/{name}.py"
    for name in ("xgboost", "lightgbm", "catboost", "keras")
    if importlib.util.find_spec(name) is None
]
if importlib.util.find_spec("keras") is None:
    collect_ignore.append("src/focalkit/compat/keras.py")
if importlib.util.find_spec("triton") is None:
    collect_ignore.append("src/focalkit/backends/_triton")
