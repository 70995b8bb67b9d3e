"""The C kernel's scan of class indices (``fk_labels_first_bad``, ``fk_labels_weight``): what
``_checks.labels_in_range`` and the softmax mean's denominator read on the CPU in one pass. Each must say
and count exactly what the tensor ops they replace do: the same message naming the first bad value,
and ``_reduce.class_index_count``'s value, with ``ignore_index`` inside or outside the class range,
weights of both float dtypes, every position ignored, and inputs large enough to take two threads."""

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
