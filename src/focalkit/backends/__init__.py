"""How an op is computed. ``eager`` is the reference: PyTorch tensor ops on the closed forms of
:mod:`focalkit.core`, wrapped in ``torch.autograd.Function`` so that the gradient is computed in
the forward pass and backward only scales it. ``native`` is the C kernel (CPU) and must reproduce
eager. ``triton`` is the GPU kernels (CUDA tensors; CPU tensors under ``TRITON_INTERPRET=1``).
Selection: ``backend="auto"`` picks native on CPU and triton on CUDA where they cover the arguments,
and eager otherwise (quietly, but with one warning if the native kernel was not built); an
explicit backend that cannot run raises and says why. ``FOCALKIT_BACKEND`` (``eager`` /
``native`` / ``triton`` / ``auto``) overrides the argument, for debugging; it is read once, when
focalkit is imported, so that selection reads nothing but shapes, dtypes and devices (torch.compile
traces it; torch 2.11's Dynamo refuses ``os.environ`` and ``importlib`` calls inside a graph).
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch import Tensor

from focalkit import _checks

_checks.bind_torch()  # before any tensor check (focalkit._checks imports without torch)

from focalkit.backends import eager, native, triton  # noqa: E402

__all__ = ["BACKENDS", "eager", "native", "select", "triton"]

BACKENDS = ("auto", "eager", "native", "triton")
FORCED = os.environ.get("FOCALKIT_BACKEND") or None  # read at import (see the module docstring)
FAST_PATH = ("install a wheel, which carries the kernel (pip install --only-binary=focalkit focalkit), or a C "
             "compiler with OpenMP and reinstall from source (pip install --force-reinstall --no-binary=focalkit "
             "focalkit)")


def _eager_warning() -> str:
    return (f"focalkit: CPU losses run on the eager backend (slower): {native.why_unavailable()}. "
            f"For the native kernel, {FAST_PATH}.")


_warned = False
if not native.available():  # an sdist installed without a compiler, or a stale build: said once, at import
    _warned = True
    warnings.warn(_eager_warning(), RuntimeWarning, stacklevel=2)


def select(op: str, backend: str, logits: Tensor, native_reason: Optional[str],
           triton_reason: Optional[str] = "it has no Triton kernel") -> str:
    """The backend that runs ``op``: "eager", "native" or "triton".

    ``native_reason`` / ``triton_reason``: why that backend cannot take these arguments, or None.
    """
    global _warned
    forced = FORCED
    if forced:
        _checks.choice("FOCALKIT_BACKEND (environment variable)", forced, BACKENDS)
        backend = forced
    _checks.choice("backend", backend, BACKENDS)
    if backend == "eager":
        return "eager"
    if backend in ("native", "triton"):
        mod, reason = (native, native_reason) if backend == "native" else (triton, triton_reason)
        if not mod.available():
            raise RuntimeError(f"backend={backend!r} cannot run: {mod.why_unavailable()}")
        if reason is not None:
            raise ValueError(f"backend={backend!r} cannot run {op} here: {reason}")
        return backend
    # auto
    if logits.device.type == "cuda":
        return "triton" if triton_reason is None else "eager"
    if logits.device.type != "cpu":
        return "eager"
    if not native.available():
        if not _warned and not torch.compiler.is_compiling():  # Dynamo cannot trace warnings.warn (2.11)
            _warned = True
            warnings.warn(_eager_warning(), RuntimeWarning, stacklevel=3)
        return "eager"
    return "native" if native_reason is None else "eager"


def eager_only(op: str, backend: str) -> str:
    """``backend=`` of a loss that has no kernel: "auto" and "eager" run it eagerly; an explicit
    "native" or "triton" raises and says why. ``FOCALKIT_BACKEND`` does not apply (it forces the
    backend of the losses that have kernels, and this one has only eager)."""
    _checks.choice("backend", backend, BACKENDS)
    if backend in ("native", "triton"):
        raise ValueError(f"backend={backend!r} cannot run {op}: it has no {backend} kernel (eager only); "
                         "use 'auto' or 'eager'")
    return backend
