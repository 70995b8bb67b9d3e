"""How an op is computed. ``eager`` is the reference: PyTorch tensor ops on the closed forms of
:mod:`focalkit.core`, wrapped in ``torch.autograd.Function`` so that the gradient is computed in
the forward pass and backward only scales it. ``native`` is the C kernel (CPU) and must reproduce
eager. Selection: ``backend="auto"`` picks native on CPU where it covers the arguments and eager
otherwise (quietly, but with one warning if the native kernel was not built); an explicit backend
that cannot run raises and says why. ``FOCALKIT_BACKEND`` (``eager`` / ``native`` / ``auto``)
overrides the argument, for debugging.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch import Tensor

from focalkit import _checks
from focalkit.backends import eager, native

__all__ = ["BACKENDS", "eager", "native", "select"]

BACKENDS = ("auto", "eager", "native", "triton")
_warned = False


def select(op: str, backend: str, logits: Tensor, native_reason: Optional[str]) -> str:
    """The backend that runs ``op``: "eager" or "native"."""
    global _warned
    backend = os.environ.get("FOCALKIT_BACKEND") or backend
    _checks.choice("backend", backend, BACKENDS)
    if backend == "eager":
        return "eager"
    if backend == "triton":
        raise RuntimeError("backend='triton' cannot run: the Triton kernels are not part of this version")
    if backend == "native":
        if not native.available():
            raise RuntimeError(f"backend='native' cannot run: {native.why_unavailable()}")
        if native_reason is not None:
            raise ValueError(f"backend='native' cannot run {op} here: {native_reason}")
        if torch.compiler.is_compiling():
            raise RuntimeError("backend='native' cannot run under torch.compile yet; use 'auto' or 'eager'")
        return "native"
    # auto
    if logits.device.type != "cpu" or torch.compiler.is_compiling():
        return "eager"
    if not native.available():
        if not _warned:
            _warned = True
            warnings.warn(f"focalkit: using the eager backend: {native.why_unavailable()}", RuntimeWarning,
                          stacklevel=3)
        return "eager"
    return "native" if native_reason is None else "eager"
