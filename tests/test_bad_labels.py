"""The rule for bad class indices where values are not read first (docs/api.md, "Bad class
indices"): NaN loss and gradient at that position and nowhere else, on every backend; no device
assertion (the CUDA context survives), no host synchronisation. Run in a fresh process on the device
of ``tests/device.py`` (CUDA in ``benchmarks/gpu_check.sh``; in CI the CPU, with the value checks
turned off as they are on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from device import DEVICE, ON_GPU

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys, torch
    import focalkit as fk
    from focalkit import _checks
    dev = sys.argv[1]
    if dev == "cpu":  # what a GPU does: no value is read before the call
        _checks.can_read = lambda value: False
    backends = ["eager"] + (["triton"] if fk.backends.triton.unsupported(torch.zeros(1, device=dev)) is None else [])
    for backend in backends:
        for shape in ((4, 5), (2, 5, 3)):
            x = torch.randn(shape, device=dev, requires_grad=True)
            t = torch.randint(0, 5, shape[:1] + shape[2:], device=dev)
            t.view(-1)[1] = 9
            t.view(-1)[2] = -3
            if t.numel() > 3:
                t.view(-1)[3] = -100  # ignored: 0, not NaN
            loss = fk.softmax_focal_loss(x, t, reduction="none", backend=backend)
            loss.sum().backward()
            flat = loss.detach().reshape(-1).cpu()
            assert torch.isnan(flat[1]) and torch.isnan(flat[2]), (backend, flat)
            assert flat[3] == 0 and torch.isfinite(flat[[0] + list(range(4, flat.numel()))]).all(), (backend, flat)
            g = x.grad.movedim(1, -1).reshape(-1, 5).cpu()
            assert torch.isnan(g[1]).all() and torch.isnan(g[2]).all() and (g[3] == 0).all(), backend
            mean = fk.softmax_focal_loss(x, t, weight=torch.ones(5, device=dev), backend=backend)
            assert torch.isnan(mean.cpu()), backend
        # sparse sigmoid targets: background = C, beyond is bad
        x = torch.randn(4, 5, device=dev, requires_grad=True)
        lab = torch.tensor([0, 5, 7, -1], device=dev)
        out = fk.sigmoid_focal_loss(x, lab, reduction="none", backend=backend)
        out.sum().backward()
        o = out.detach().cpu()
        assert torch.isfinite(o[:2]).all() and torch.isnan(o[2:]).all(), o
    # the context survives: later calls work
    y = torch.ones(3, device=dev) * 2
    assert float(y.sum()) == 6.0
    print("OK", backends)
""")


def test_bad_class_index_is_nan_at_its_position_and_the_process_goes_on():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", SCRIPT, DEVICE], capture_output=True, text=True, env=env,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    if ON_GPU:
        assert "triton" in r.stdout
