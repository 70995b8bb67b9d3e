"""Tracing without torch.compile (issue 19, item 3): ``make_fx`` in real, fake and symbolic modes and
``FakeTensorMode`` trace every loss; the value checks read nothing from a traced tensor
(``_checks.tracing``) and a kernel is called as its registered op, whose fake implementation gives
the shapes. The traced graph computes the eager values."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

import focalkit as fk
from focalkit.backends import native, triton

BACKENDS = ["eager"] + (["native"] if native.available() else []) + \
    (["triton"] if triton.unsupported(torch.zeros(1)) is None else [])
LOSSES = {
    "sigmoid": lambda a, y, t, b: fk.sigmoid_focal_loss(a, y, backend=b),
    "sigmoid-sparse": lambda a, y, t, b: fk.sigmoid_focal_loss(a, t, backend=b, normalizer="positives"),
    "softmax": lambda a, y, t, b: fk.softmax_focal_loss(a, t, backend=b, label_smoothing=0.1),
    "focal-star": lambda a, y, t, b: fk.focal_loss_star(a, y, gamma=2.0, beta=1.0),
    "qfl": lambda a, y, t, b: fk.quality_focal_loss(a, y * 0.7),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["real", "fake", "symbolic"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_make_fx_traces_and_the_graph_computes_the_loss(name, mode, backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, generator=g)
    y = (torch.rand(8, 5, generator=g) < 0.3).float()
    t = torch.randint(0, 5, (8,), generator=g)
    f = lambda a, yy, tt: LOSSES[name](a, yy, tt, backend)
    graph = make_fx(f, tracing_mode=mode)(x, y, t)
    torch.testing.assert_close(graph(x, y, t), f(x, y, t))


@pytest.mark.parametrize("name", list(LOSSES))
def test_fake_tensor_mode_gives_shapes_without_values(name):
    g = torch.Generator().manual_seed(1)
    x, y, t = torch.randn(8, 5, generator=g), torch.rand(8, 5, generator=g).round(), torch.randint(0, 5, (8,), generator=g)
    with FakeTensorMode() as mode:
        out = LOSSES[name](mode.from_tensor(x), mode.from_tensor(y), mode.from_tensor(t), "auto")
    assert out.shape == () and out.dtype == torch.float32
