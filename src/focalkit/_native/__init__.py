"""The C kernel's loader: plain ctypes, no torch, so the GBDT adapters can call it without PyTorch.

``LIB`` is the loaded ``focalkit._focal_native`` with its argument types set, or None; ``ERROR`` says
why not (not built, unloadable, a stale build without a symbol or of another ABI). Loaded once, at
import (a dlopen, about a millisecond), so ``torch.compile`` never traces into ctypes.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path
from typing import Optional

ABI_VERSION = 18
_SIGNATURES = {  # symbol: argument types -> result type
    "fk_sigmoid_focal_f32": "vp vp vp vp vp vp vp i64 i64 i32 i32 dbl dbl vp vp i32 pdbl -> i32",
    "fk_sigmoid_focal_f64": "vp vp vp vp vp vp vp i64 i64 i32 i32 dbl dbl vp vp i32 pdbl -> i32",
    "fk_count_soft_f32": "vp i64 i32 -> i64",
    "fk_count_soft_f64": "vp i64 i32 -> i64",
    "fk_softmax_focal_f32": "vp vp vp vp i64 i64 i64 i64 dbl dbl dbl vp vp i32 pdbl -> i32",
    "fk_softmax_focal_f64": "vp vp vp vp i64 i64 i64 i64 dbl dbl dbl vp vp i32 pdbl -> i32",
    "fk_varifocal_f32": "vp vp vp vp i64 dbl dbl i32 dbl vp vp i32 pdbl -> i32",
    "fk_varifocal_f64": "vp vp vp vp i64 dbl dbl i32 dbl vp vp i32 pdbl -> i32",
    "fk_dfl_f32": "vp vp vp i64 i64 dbl vp vp i32 pdbl -> i32",
    "fk_dfl_f64": "vp vp vp i64 i64 dbl vp vp i32 pdbl -> i32",
    "fk_gbdt_binary_f64": "vp vp vp i64 dbl dbl dbl dbl vp vp vp i32 -> i32",
    "fk_gbdt_softmax_f64": "vp vp vp i64 i64 dbl dbl vp vp vp i32 -> i32",
    "fk_gbdt_binary_ders_f64": "vp vp i32 vp i64 dbl dbl dbl dbl vp -> i32",
    "fk_labels_first_bad": "vp i64 i64 i64 i64 i32 i32 -> i64",
    "fk_labels_weight": "vp vp i32 i64 i64 i64 i32 i32 -> dbl",
    "fk_range_first_bad_f32": "vp i64 dbl dbl dbl i32 i32 -> i64",
    "fk_range_first_bad_f64": "vp i64 dbl dbl dbl i32 i32 -> i64",
}
_TYPES = {"vp": ctypes.c_void_p, "i64": ctypes.c_int64, "i32": ctypes.c_int, "dbl": ctypes.c_double,
          "pdbl": ctypes.POINTER(ctypes.c_double)}


def load(origin: Optional[str] = None) -> tuple[Optional[ctypes.CDLL], Optional[str]]:
    """The library at ``origin`` (default: the installed extension), or why it cannot be used."""
    if origin is None:
        spec = importlib.util.find_spec("focalkit._focal_native")
        if spec is None or spec.origin is None:
            return None, ("the compiled extension focalkit._focal_native is not installed "
                          "(no C compiler at install time?)")
        origin = spec.origin
    try:
        lib = ctypes.CDLL(str(Path(origin)))
        version = lib.fk_abi_version()
        if version != ABI_VERSION:
            return None, (f"{origin} was built for ABI {version}, this focalkit needs {ABI_VERSION} "
                          "(a stale build: reinstall focalkit)")
        for name, sig in _SIGNATURES.items():
            args, res = sig.split(" -> ")
            fn = getattr(lib, name)
            fn.argtypes = [_TYPES[a] for a in args.split()]
            fn.restype = _TYPES[res]
    except (OSError, AttributeError) as exc:
        return None, f"cannot use {origin}: {exc} (a stale or broken build: reinstall focalkit)"
    return lib, None


LIB, ERROR = load()


BINARY_DERS = None if LIB is None else LIB.fk_gbdt_binary_ders_f64  # CatBoost's blocks


def ignore_arg(ignore: Optional[int]) -> tuple[int, int]:
    """``(ignore, has_ignore)`` for the class-index scans (``fk_labels_*``): an ignore index that no
    int64 can equal (None, or beyond its range) ignores nothing."""
    if ignore is None or not -(1 << 63) <= ignore < (1 << 63):
        return 0, 0
    return ignore, 1


def threads() -> int:
    """OpenMP threads for a call: torch's setting where torch is loaded, else the machine's cores."""
    import os
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return torch.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
