"""Run metadata shared by the benchmark scripts (machine, versions, commit, command)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from importlib import metadata


def run_metadata(packages=("torch", "numpy")) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(__file__)).stdout.strip()
    except OSError:
        commit = ""
    versions = {}
    for p in packages:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "commit": commit,
            "python": platform.python_version(), "machine": f"{cpu}, {os.cpu_count()} cores", "versions": versions}


@contextlib.contextmanager
def triton_python_only(record: list | None = None, read: bool = False):
    """focalkit's Triton path with Triton's launches taken out, on any device: each launch appended to
    ``record`` as ``(fn, grid, args, consts, num_warps)`` (or dropped) instead of made, and, unless
    ``read``, no tensor content read on the host (``_checks.can_read`` False, as for CUDA tensors). What
    is left is the Python, the aten ops and autograd a GPU step pays before Triton's own launch cost
    (``bench_host.py``'s "Python only" rows, ``host_profile.py``'s ``python`` column)."""
    from focalkit import _checks
    from focalkit.backends import triton as tb

    real_launch, real_read = tb._launch, _checks.can_read
    tb._launch = (lambda *a: None) if record is None else (lambda *a: record.append(a))
    if not read:
        _checks.can_read = lambda value: False
    try:
        yield record
    finally:
        tb._launch, _checks.can_read = real_launch, real_read


@contextlib.contextmanager
def triton_switches(**values):
    """``backends/triton.py``'s module switches (``ROW_LOOP_MAX_C=0``, ``LAST_PROGRAM_FINISH=True``, ...)
    set for the block, then put back: a benchmark's A/B of what the defaults would change."""
    from focalkit.backends import triton as tb

    keep = {k: getattr(tb, k) for k in values}
    try:
        for k, v in values.items():
            setattr(tb, k, v)
        yield
    finally:
        for k, v in keep.items():
            setattr(tb, k, v)
