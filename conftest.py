"""Root pytest configuration: adapters' doctests need their framework; Keras runs on torch."""

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

collect_ignore = [
    f"src/focalkit/adapters/{name}.py"
    for name in ("xgboost", "lightgbm", "keras")
    if importlib.util.find_spec(name) is None
]
