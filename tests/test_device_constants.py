"""``focalkit._device.constant``: a per-class host vector copied to a device once, then reused (a copy
from the host synchronises a CUDA stream). Meta stands for the device: a copy onto it is recorded by
``HostToDevice`` (``tests/test_no_host_read.py``), which runs every loss and preset this way."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from focalkit import _device
from test_no_host_read import HostToDevice

META = torch.device("meta")


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch):
    """Each test starts from an empty cache (other tests' losses fill it)."""
    monkeypatch.setattr(_device, "_CACHE", collections.OrderedDict())


def test_a_vector_is_copied_once_per_device_and_dtype():
    values = torch.tensor([0.1, 0.2, 0.7])
    with HostToDevice() as seen:
        a = _device.constant(values, META, torch.float32)
        b = _device.constant(values.clone(), META, torch.float32)
        c = _device.constant(values, META, torch.float64)
    assert a is b and a.shape == (3,) and a.dtype == torch.float32 and c.dtype == torch.float64
    assert seen.copies == [(3,), (3,)]  # float32 once, float64 once


def test_a_cpu_tensor_is_keyed_by_its_values_and_shape():
    t = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    with HostToDevice() as seen:
        a = _device.constant(t, META, torch.float32)
        b = _device.constant(t.clone(), META, torch.float32)
        c = _device.constant(t.reshape(4), META, torch.float32)
        t[0, 0] = 5.0  # changed in place: new values, a new copy
        d = _device.constant(t, META, torch.float32)
    assert a is b and a.shape == (2, 2) and c is not a and c.shape == (4,) and d is not a
    assert len(seen.copies) == 3


def test_the_values_copied_are_the_host_values_in_the_dtype():
    for values, dtype in ((torch.tensor([0.25, 0.5]), torch.float32), (torch.tensor([1, 2, 3]), torch.int64),
                          (torch.tensor([1, 2, 3]), torch.float64), (torch.tensor([[0.1, 0.3]], dtype=torch.float64),
                                                                    torch.float32),
                          (torch.tensor([1.5, -2.0], dtype=torch.bfloat16), torch.float32),
                          (torch.tensor(0.3), torch.bfloat16)):
        want = torch.as_tensor(values).to(dtype)
        got = _device.host_tensor(_device._key(values), dtype)  # what the device copy is made from
        assert got.shape == want.shape and got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        on_meta = _device.constant(values, META, dtype)
        assert on_meta.dtype == dtype and on_meta.shape == want.shape


def test_no_cache_for_what_needs_a_gradient_or_is_traced():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    with HostToDevice() as seen:
        a = _device.constant(w, META, torch.float32)
        b = _device.constant(w, META, torch.float32)
    assert a is not b and a.requires_grad and len(seen.copies) == 2  # the gradient flows: copied each time
    graph = make_fx(lambda v: v * _device.constant(torch.tensor([2.0, 3.0]), torch.device("cpu"), torch.float32))
    torch.testing.assert_close(graph(torch.ones(2))(torch.ones(2)), torch.tensor([2.0, 3.0]))


def test_the_cache_is_bounded():
    for i in range(_device._CACHE_SIZE + 10):
        _device.constant(torch.tensor([float(i)]), META, torch.float32)
    assert len(_device._CACHE) == _device._CACHE_SIZE


def test_threads_share_the_cache_safely():
    """Many threads asking for more vectors than the cache holds: every answer right, no error."""
    import threading

    errors: list = []

    def work(seed: int) -> None:
        try:
            for i in range(200):
                v = torch.tensor([float((seed + i) % (_device._CACHE_SIZE + 7))])
                out = _device.constant(v, META, torch.float32)
                assert out.shape == (1,) and _device._key(v)[0] == (v.item(),)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(_device._CACHE) <= _device._CACHE_SIZE
