"""Peak resident memory above a baseline, for one call, on Linux: VmHWM is reset through
/proc/self/clear_refs (write "5") before the call and read after it."""

from __future__ import annotations


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def peak_extra_bytes(fn) -> int:
    """Peak RSS during ``fn()`` minus RSS just before it."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    fn()
    return _status("VmHWM") - base
