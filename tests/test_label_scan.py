"""The C kernel's scan of class indices (``fk_labels_first_bad``, ``fk_labels_weight``): what
``_checks.labels_in_range`` and the softmax mean's denominator read on the CPU in one pass. Each must say
and count exactly what the tensor ops they replace do: the same message naming the first bad value,
and ``_reduce.class_index_count``'s value, with ``ignore_index`` inside or outside the class range,
weights of both float dtypes, every position ignored, and inputs large enough to take two threads.
Also the scan of float values in a range (``fk_range_first_bad``) that ``_checks.in_unit_interval``
and ``_checks.nonnegative`` read: the same message as the tensor ops, NaN passing, an ``allow`` value
rounded as torch rounds it."""

from __future__ import annotations

import pytest
import torch

import focalkit as fk
from focalkit import _checks, _reduce
from focalkit.backends import _ops, native
from conftest import TOL

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel is built in CI")


def _message(labels, lo, hi, ignore):
    try:
        _checks.labels_in_range("targets", labels, lo, hi, ignore, f"to hold class indices in [{lo}, {hi}]")
    except ValueError as exc:
        return str(exc)
    return None


LABELS = [
    (torch.tensor([0, 1, 2, 1]), None),
    (torch.tensor([0, 1, 3, 7]), None),  # 3 first: the first bad value in memory order is named
    (torch.tensor([0, -100, 2, -100]), -100),
    (torch.tensor([0, -100, 2, -3]), -100),
    (torch.tensor([4, 0, 1]), 4),  # the ignore value above the range
    (torch.tensor([[0, 255], [9, 2]]), 255),
    (torch.tensor([-(1 << 63), 0]), None),
]


@pytest.mark.parametrize("labels,ignore", LABELS)
def test_scan_says_what_the_tensor_ops_say(monkeypatch, labels, ignore):
    fast = _message(labels, 0, 2, ignore)
    monkeypatch.setattr(_checks, "_label_scan", lambda labels: None)
    assert fast == _message(labels, 0, 2, ignore)


def test_scan_names_the_first_bad_value_on_two_threads(monkeypatch):
    torch.manual_seed(0)
    labels = torch.randint(0, 19, (4, 256, 256))  # 262,144 positions: past the one-thread size
    labels[labels == 3] = 255
    labels[2, 100, 7], labels[3, 0, 0] = 40, -5
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = _message(labels, 0, 18, 255)
        monkeypatch.setattr(_checks, "_label_scan", lambda labels: None)
        assert fast == _message(labels, 0, 18, 255)
        assert fast is not None and "a value 40" in fast
    finally:
        torch.set_num_threads(before)


def test_scan_takes_an_ignore_index_no_int64_can_equal():
    """The tensor ops cannot compare int64 labels with 2**70 (OverflowError); the scan ignores nothing."""
    assert _message(torch.tensor([2, 0, 1]), 0, 2, 1 << 70) is None
    assert "a value -1" in _message(torch.tensor([2, 0, -1]), 0, 2, 1 << 70)
    assert _ops._host_class_index_count(torch.tensor([2, 0, 1]), 1 << 70, None, 3) == 3.0


def test_scan_is_used_where_it_can_read_and_the_ops_elsewhere():
    assert _checks._label_scan(torch.tensor([0, 1])) is not None
    assert _checks._label_scan(torch.tensor([0, 1], dtype=torch.int32)) is None  # the tensor ops
    assert _checks._label_scan(torch.tensor([[0, 1], [1, 0]]).t()) is None  # not contiguous
    for labels in (torch.tensor([[0, 5], [1, 0]]).t(), torch.tensor([0, 5], dtype=torch.int32)):
        with pytest.raises(ValueError, match="a value 5"):
            fk.softmax_focal_loss(torch.randn(2, 3), labels.reshape(-1) if labels.dim() == 1 else labels[:, 0])


@pytest.mark.parametrize("ignore", [-100, 0, 2, 255])
@pytest.mark.parametrize("wdtype", [None, torch.float32, torch.float64])
@pytest.mark.parametrize("n", [10, 100_000])
def test_host_count_is_class_index_count(ignore, wdtype, n):
    torch.manual_seed(1)
    labels = torch.randint(0, 5, (n,))
    labels[torch.rand(n) < 0.3] = ignore
    w = None if wdtype is None else torch.rand(5, dtype=wdtype) * 3
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        host = _ops._host_class_index_count(labels, ignore, w, 5)
    finally:
        torch.set_num_threads(before)
    want = _reduce.class_index_count(labels, ignore, None if w is None else w.double())
    assert isinstance(host, float)
    assert host == pytest.approx(float(want), rel=1e-12)


def test_host_count_of_every_position_ignored_gives_a_mean_of_zero():
    logits = torch.randn(6, 4, requires_grad=True)
    targets = torch.full((6,), -100)
    assert _ops._host_class_index_count(targets, -100, None, 4) == 0.0
    loss = fk.softmax_focal_loss(logits, targets, backend="native")
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros(6, 4))


@pytest.mark.parametrize("ignore", [-100, 0])
def test_native_mean_with_weights_matches_eager(ignore):
    torch.manual_seed(2)
    logits = torch.randn(64, 7, 9, dtype=torch.float64)
    targets = torch.randint(0, 7, (64, 9))
    targets[:, ::4] = ignore
    w = torch.rand(7, dtype=torch.float64) + 0.1
    got = fk.softmax_focal_loss(logits, targets, weight=w, ignore_index=ignore, backend="native")
    want = fk.softmax_focal_loss(logits, targets, weight=w, ignore_index=ignore, backend="eager")
    torch.testing.assert_close(got, want, rtol=TOL[torch.float64][0], atol=0)



def _unit_message(value, allow=None):
    try:
        _checks.in_unit_interval("targets", value, allow)
    except ValueError as exc:
        return str(exc)
    return None


def _weight_message(value):
    try:
        _checks.nonnegative("weight", value)
    except ValueError as exc:
        return str(exc)
    return None


F32_EDGE = 16777217  # 2**24 + 1: no float32 holds it; a float32 tensor compares with 2**24


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("values,allow", [
    ([0.0, 1.0, 0.5, -0.0], None),
    ([0.0, 1.5, -2.0], None),  # 1.5 first: the first bad value in memory order is named
    ([0.2, float("nan"), 1.0], None),  # NaN passes: it propagates
    ([0.2, float("nan"), -1e-30], None),
    ([1.0 + 2 ** -23, 0.0], None),
    ([float("inf"), 0.0], None),
    ([-float("inf"), 0.0], None),
    ([0.0, -100.0, 1.0], -100),
    ([0.0, -100.0, 2.0], -100),
    ([-1.0, 0.5], 2),
    ([float(1 << 24), 0.5], F32_EDGE),  # allowed in float32 (rounded as torch rounds it), not in float64
    ([3.0, 0.5], 3.0000001),
])
def test_range_scan_says_what_the_tensor_ops_say(monkeypatch, dtype, values, allow):
    value = torch.tensor(values, dtype=dtype)
    assert _checks._first_outside(value, 0.0, 1.0, allow) is not None
    fast = _unit_message(value, allow), _weight_message(value)
    monkeypatch.setattr(_checks, "_first_outside", lambda *args: None)
    assert fast == (_unit_message(value, allow), _weight_message(value))


def test_range_scan_names_the_first_bad_value_on_two_threads(monkeypatch):
    torch.manual_seed(0)
    value = torch.rand(4, 256, 256)  # 262,144 values: past the one-thread size
    value[value < 0.01] = -100.0
    value[2, 100, 7], value[3, 0, 0] = 1.25, -0.5
    weight = value.abs()
    weight[3, 200, 1] = -7.0
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for allow in (-100, None):
            fast = _unit_message(value, allow), _weight_message(weight)
            monkeypatch.setattr(_checks, "_first_outside", lambda *args: None)
            assert fast == (_unit_message(value, allow), _weight_message(weight))
            monkeypatch.undo()
            assert "a value 1.25" in fast[0] if allow is not None else "a value -100.0" in fast[0]
            assert "a value -7.0" in fast[1]
    finally:
        torch.set_num_threads(before)


def test_range_scan_is_used_where_it_can_read_and_the_ops_elsewhere():
    assert _checks._first_outside(torch.tensor([0.0, 1.0]), 0.0, 1.0, None) == -1
    assert _checks._first_outside(torch.tensor([0.0, 1.0], dtype=torch.float16), 0.0, 1.0, None) is None
    assert _checks._first_outside(torch.tensor([[0.0, 1.0], [1.0, 0.0]]).t(), 0.0, 1.0, None) is None
    for targets in (torch.tensor([[0.0, 5.0], [1.0, 0.0]]).t(), torch.tensor([[0.0, 5.0]], dtype=torch.bfloat16),
                    torch.tensor([[0.0, 5.0]])):
        with pytest.raises(ValueError, match="a value 5.0"):
            fk.sigmoid_focal_loss(torch.randn(targets.shape).to(targets.dtype), targets)
    for weight in (torch.tensor([[1.0, 9.0], [-5.0, 9.0]])[:, 0], torch.tensor([1.0, -5.0], dtype=torch.float64),
                   torch.tensor([1.0, -5.0])):
        with pytest.raises(ValueError, match="a value -5.0"):
            fk.softmax_focal_loss(torch.randn(3, 2, dtype=weight.dtype), torch.tensor([0, 1, 1]), weight=weight)


I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def _first_bad_ref(y, lo, hi, ignore):
    bad = (y < lo) | (y > hi)
    if ignore is not None:
        bad &= y != ignore
    idx = bad.nonzero()
    return int(idx[0]) if len(idx) else -1


@pytest.mark.parametrize("n", [1, 7, 33, 70, 65537])
def test_vectorised_scans_equal_the_tensor_ops_at_every_length_and_extreme(n):
    """The C passes compare as one unsigned range test and OR / sum 0-1 lanes (so that they vectorise):
    the same first bad position and count as the tensor ops, for lengths around the vector width and
    past the one-thread size, int64 extremes, an ignore index inside, at and outside the range, an empty
    range (lo > hi) and no class at all."""
    from focalkit import _native
    lib = _native.LIB
    g = torch.Generator().manual_seed(n)
    pool = torch.tensor([I64_MIN, I64_MIN + 1, -101, -100, -1, 0, 1, 2, 4, 5, 6, 254, 255, I64_MAX - 1, I64_MAX])
    for trial in range(12):
        y = torch.randint(0, 6, (n,), generator=g)
        if trial % 3:  # a few values from the pool, at random places (most of the tensor stays in range)
            k = max(1, n // 50)
            y[torch.randint(0, n, (k,), generator=g)] = pool[torch.randint(0, len(pool), (k,), generator=g)]
        for lo, hi in ((0, 5), (0, 4), (1, 2), (0, 0), (3, 2), (I64_MIN, I64_MAX), (I64_MIN, 0), (-100, 254)):
            for ignore in (None, -100, 0, 5, 255, I64_MIN, I64_MAX):
                want = _first_bad_ref(y, lo, hi, ignore)
                got = lib.fk_labels_first_bad(y.data_ptr(), n, lo, hi, *_native.ignore_arg(ignore), 2)
                assert got == want, (trial, lo, hi, ignore)
        for C in (0, 1, 5, 6, 255):
            for ignore in (None, -100, 0, 4, I64_MAX):
                want = int(((y >= 0) & (y < C) & (y != ignore if ignore is not None else True)).sum())
                got = lib.fk_labels_weight(y.data_ptr(), None, 0, n, C, *_native.ignore_arg(ignore), 2)
                assert got == want, (trial, C, ignore)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 33, 70, 65537])
def test_vectorised_range_scan_at_every_length(dtype, n):
    from focalkit import _native
    fn = _native.LIB.fk_range_first_bad_f64 if dtype == torch.float64 else _native.LIB.fk_range_first_bad_f32
    g = torch.Generator().manual_seed(n)
    pool = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, -1e-45, 1.0000001, 2.0, -100.0, 3e38],
                        dtype=dtype)
    inf = float("inf")
    for trial in range(12):
        y = torch.rand(n, generator=g, dtype=dtype)
        if trial % 3:
            k = max(1, n // 50)
            y[torch.randint(0, n, (k,), generator=g)] = pool[torch.randint(0, len(pool), (k,), generator=g)]
        for lo, hi in ((0.0, 1.0), (0.0, inf), (-inf, inf), (0.5, 0.25)):
            for allow in (None, -100.0, 2.0, inf):
                bad = (y < lo) | (y > hi)
                if allow is not None:
                    bad &= y != allow
                idx = bad.nonzero()
                want = int(idx[0]) if len(idx) else -1
                got = fn(y.data_ptr(), n, lo, hi, 0.0 if allow is None else allow, allow is not None, 2)
                assert got == want, (trial, lo, hi, allow)
