"""Host cost per call, counted (never timed): the aten ops a forward + backward dispatches (a
``TorchDispatchMode``) and the Triton launches it makes. On the GPU path the content checks read
nothing (``_checks.can_read`` is False there), so the Triton counts are taken that way here, with the
launches recorded instead of run. ``benchmarks/bench_host.py`` times the same calls."""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import focalkit as fk
from focalkit import _checks
from focalkit.backends import native, triton as tb


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def aten_ops(fn, x, *args, **kwargs) -> collections.Counter:
    x = x.detach().clone().requires_grad_()
    with _Count() as c:
        fn(x, *args, **kwargs).backward()
    return c.ops


X = torch.randn(64, 10)
T = torch.randint(0, 10, (64,))
Y = (torch.rand(64, 10) < 0.2).float()
# inputs over several programs of the Triton kernels (here, where the grid holds at most 4: 600 rows of
# 10 classes = 3 programs of the loop over few classes; 6,000 sigmoid elements = 4 programs): the forward
# then leaves its partial sums to the finishing kernel. The 64-row inputs above are one program each, whose
# forward finishes the reduction itself: one launch fewer.
XB = torch.randn(600, 10)
TB = torch.randint(0, 10, (600,))
YB = (torch.rand(600, 10) < 0.2).float()


def _scalar(loss):
    """``reduction="none"``: backward through the map's sum (two ops of the test's own: sum, expand)."""
    return loss if loss.dim() == 0 else loss.sum()


@pytest.fixture
def gpu_path(monkeypatch):
    """The Triton path as on a GPU: no content read; launches recorded, not run."""
    if tb.unsupported(torch.zeros(1)) is not None:
        pytest.skip("the interpreter run of CI (TRITON_INTERPRET=1)")
    launches = []
    monkeypatch.setattr(_checks, "can_read", lambda value: False)
    monkeypatch.setattr(tb, "_launch", lambda fn, grid, args, consts, num_warps: launches.append(fn))
    return launches


LAUNCHES = [("mean", True, 2), ("sum", True, 2), ("none", True, 2),
            ("mean", False, 3), ("sum", False, 3), ("none", False, 2)]


@pytest.mark.parametrize("reduction,one_program,launches", LAUNCHES)
def test_triton_softmax_ops_and_launches_per_step(gpu_path, reduction, one_program, launches):
    f = lambda a, b: _scalar(fk.softmax_focal_loss(a, b, reduction=reduction, backend="triton"))
    ops = aten_ops(f, *((X, T) if one_program else (XB, TB)))
    assert len(gpu_path) == launches, gpu_path
    assert sum(ops.values()) <= 12, ops  # allocations, detaches, the seed of backward; no compute
    assert not {k for k in ops if any(s in k for s in ("lt.", "gt.", "any", "where", "_to_copy", "item"))}, ops


@pytest.mark.parametrize("reduction,one_program,launches", LAUNCHES)
def test_triton_sigmoid_ops_and_launches_per_step(gpu_path, reduction, one_program, launches):
    f = lambda a, b: _scalar(fk.sigmoid_focal_loss(a, b, reduction=reduction, backend="triton"))
    ops = aten_ops(f, *((X, Y) if one_program else (XB, YB)))
    assert len(gpu_path) == launches, gpu_path
    assert sum(ops.values()) <= 10, ops
    assert not {k for k in ops if any(s in k for s in ("full", "rsub", "stack", "where", "_to_copy"))}, ops


def test_triton_alpha_tensor_and_normalizer_add_only_their_own_ops(gpu_path):
    a = torch.full((10,), 0.3)
    for x, y, launches in ((X, Y, 2), (XB, YB, 3)):
        gpu_path.clear()
        ops = aten_ops(lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=a, reduction="sum",
                                                          normalizer=torch.tensor(4.0), backend="triton"), x, y)
        assert len(gpu_path) == launches and sum(ops.values()) <= 20, ops


@pytest.mark.parametrize("family", ["softmax", "sigmoid", "varifocal", "dfl"])
def test_last_program_finish_takes_the_finishing_launch_off_several_programs(gpu_path, monkeypatch, family):
    """``LAST_PROGRAM_FINISH``: over several programs the forward's last program finishes (an atomic
    ticket): 2 Triton launches per step, not 3, for one torch op more or less (the ticket's zeros in
    place of the finishing kernel's output and partials)."""
    x, t = {"softmax": (XB, TB), "sigmoid": (XB, YB), "varifocal": (XB, QB), "dfl": (XB, DISTB)}[family]
    fn = {"softmax": fk.softmax_focal_loss, "sigmoid": fk.sigmoid_focal_loss, "varifocal": fk.varifocal_loss,
          "dfl": fk.distribution_focal_loss}[family]
    f = lambda a, b: fn(a, b, backend="triton")
    before = aten_ops(f, x, t)
    assert len(gpu_path) == 3
    gpu_path.clear()
    monkeypatch.setattr(tb, "LAST_PROGRAM_FINISH", True)
    after = aten_ops(f, x, t)
    assert len(gpu_path) == 2 and all(k.__name__ != "finish_kernel" for k in gpu_path), gpu_path
    assert abs(sum(after.values()) - sum(before.values())) <= 1, (before, after)
    assert any(k.startswith("aten.zero") for k in after), after  # the ticket starts at 0 on every call


@pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")
def test_native_ops_per_step():
    """On the CPU the class indices are read by the C kernel's scan (the range check and the mean's
    weighted count, one pass each, no tensor op), and the denominator and one class value reach the
    kernel as host numbers, and the sigmoid's float targets are checked in [0, 1] by the C kernel's scan
    too, as weights are checked >= 0: what is left is the gradient buffer, the result, detaches, views
    and autograd's own ops. Softmax / with weights / sigmoid: 11 / 18 / 24 before the host numbers
    (24 / - / 33 before the class-index scan), 7 / 14 / 14 before the range scans; the float32 / float64
    sigmoid takes its tensors as they are (no 2-D view: 11 before)."""
    TI = T.clone()
    TI[::5] = -100
    for kwargs, bound, t in (({}, 7, TI), ({"weight": torch.rand(10) + 0.5}, 11, TI), ({"ignore_index": 0}, 7, T)):
        ops = aten_ops(lambda a, b: fk.softmax_focal_loss(a, b, **kwargs), X, t)
        assert sum(ops.values()) <= bound, ops
        assert not {k for k in ops if any(s in k for s in ("lt.", "gt.", "ne.", "eq.", "bitwise", "any.", "sum.",
                                                           "where", "index", "_to_copy", "lift_fresh", "min",
                                                           "_local_scalar_dense"))}, ops
    ops = aten_ops(fk.sigmoid_focal_loss, X, Y)
    assert sum(ops.values()) <= 7, ops
    assert not {k for k in ops if any(s in k for s in ("full", "rsub", "lift_fresh", "_to_copy", "aminmax",
                                                       "_local_scalar_dense", "lt.", "gt.", "view", "slice",
                                                       "reshape"))}, ops


Q = torch.rand(64, 10) * Y  # IoU-aware scores on the positives
DIST = torch.rand(64) * 8.9  # DFL distances over 10 bins (64 rows: one program of the 128-row tile)
QB = torch.rand(600, 10) * YB
DISTB = torch.rand(600) * 8.9


@pytest.mark.parametrize("reduction,one_program,launches", LAUNCHES)
def test_triton_varifocal_and_dfl_ops_and_launches_per_step(gpu_path, reduction, one_program, launches):
    """Varifocal and DFL launch as the sigmoid and softmax kernels do, with no compute op on the host."""
    x, q, d = (X, Q, DIST) if one_program else (XB, QB, DISTB)
    for f, t in ((lambda a, b: _scalar(fk.varifocal_loss(a, b, reduction=reduction, backend="triton")), q),
                 (lambda a, b: _scalar(fk.distribution_focal_loss(a, b, reduction=reduction, backend="triton")), d)):
        gpu_path.clear()
        ops = aten_ops(f, x, t)
        assert len(gpu_path) == launches, gpu_path
        assert sum(ops.values()) <= 10, ops
        assert not {k for k in ops if any(s in k for s in ("full", "rsub", "where", "_to_copy", "item", "scatter",
                                                           "softmax", "exp."))}, ops


@pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")
def test_native_varifocal_and_dfl_ops_per_step():
    """One C call each: a bounded count, no elementwise formula dispatched as aten ops. 7 each: the
    gradient buffer, the result as one 0-dim tensor (no ``lift_fresh`` copy), detaches and autograd's
    own ops (was 9 before the result's ``scalar_tensor``)."""
    for f, t in ((fk.varifocal_loss, Q), (fk.distribution_focal_loss, DIST)):
        ops = aten_ops(f, X, t)
        assert sum(ops.values()) <= 7, ops
        assert "aten.lift_fresh.default" not in ops, ops
        assert not {k for k in ops if any(s in k for s in ("log_sigmoid", "softmax", "exp.", "scatter"))}, ops
