"""Small host values (per-class ``alpha``, class weights) placed on the logits' device without a copy
that synchronises.

``torch.tensor(values, device="cuda")`` and ``cpu_tensor.to("cuda")`` copy from pageable host memory.
On CUDA that copy waits for the stream to drain (``memcpy_and_sync``): a device synchronisation every
step. Inside a CUDA-graph capture it is refused. So a per-class vector given as a list (made a CPU
tensor by its loss), or held as a CPU tensor by a module that was not moved to the device, is copied
once per (values, device, dtype) and kept. Later steps reuse the device copy. Nothing here writes to a returned tensor, and the losses only
read it.

No copy is cached while anything traces (``torch.compile`` makes its own constants), and none for a
tensor that requires grad (its gradient must flow). A CPU tensor's values are read on the host to key
the cache: that is a host read, and no device waits for it. An in-place change of the tensor
therefore gets a new copy."""

from __future__ import annotations

import collections
import threading

import torch
from torch import Tensor

from focalkit import _checks

_MAX_VALUES = 65536  # longer vectors are copied as they are (the key would cost more than it saves)
_CACHE: "collections.OrderedDict[tuple, Tensor]" = collections.OrderedDict()
_CACHE_SIZE = 64
_LOCK = threading.Lock()


def constant(values: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``values`` as a tensor of ``dtype`` on ``device``: a CPU tensor's device copy made once and reused."""
    if values.device == device or values.requires_grad or values.device.type != "cpu" or device.type == "cpu" \
            or values.numel() > _MAX_VALUES or _checks.tracing(values):
        return values.to(device=device, dtype=dtype)
    key = _key(values) + (str(device), dtype)
    with _LOCK:  # threads share the cache (nn.DataParallel's replicas, data-loading threads)
        out = _CACHE.get(key)
        if out is not None:
            _CACHE.move_to_end(key)
            return out
    out = host_tensor(key, dtype).to(device)  # the one synchronising copy
    with _LOCK:
        _CACHE[key] = out
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return out


def _key(values: Tensor) -> tuple:
    """``(flat values, shape)`` of a CPU tensor, read on the host."""
    return tuple(values.reshape(-1).tolist()), tuple(values.shape)


def host_tensor(key: tuple, dtype: torch.dtype) -> Tensor:
    """The CPU tensor of a cache key's values: what is copied to the device."""
    return torch.tensor(key[0], dtype=dtype).reshape(key[1])
