"""Run metadata shared by the benchmark scripts (machine, versions, commit, command)."""

from __future__ import annotations

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
