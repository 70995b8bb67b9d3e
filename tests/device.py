"""The device the kernel tests run on, named in one place: CUDA when ``TRITON_INTERPRET=0`` and a GPU
is there (``benchmarks/gpu_check.sh``), else the CPU (CI runs the Triton kernels in Triton's
interpreter). And the one helper that builds a reference on the CPU.

``pytest.mark.gpu`` marks a test that means something only on a GPU (64-bit offsets over 2^31
elements, a CUDA-graph capture, ...); the GPU script counts them in its summary."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
ON_GPU = not INTERPRET and torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"


def to_cpu(value: Any, dtype: torch.dtype | None = None) -> Any:
    """A CPU copy of every tensor in ``value`` (tuples, lists and dicts walked), floating ones cast to
    ``dtype`` when given; everything else as it is."""
    if isinstance(value, torch.Tensor):
        v = value.detach().cpu()
        return v.to(dtype) if dtype is not None and v.is_floating_point() else v
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v, dtype) for k, v in value.items()}
    return value


def cpu_reference(fn: Callable, *args: Any, dtype: torch.dtype | None = torch.float64, **kwargs: Any) -> Any:
    """``fn`` on CPU copies of every tensor argument, keyword arguments included (float64 by default)."""
    return fn(*to_cpu(args, dtype), **to_cpu(kwargs, dtype))
