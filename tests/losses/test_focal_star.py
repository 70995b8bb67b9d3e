import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reference as ref
from focalkit import FocalLossStar, focal_loss_star

D = torch.float64


def _data(shape=(5, 4), soft=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=D) * 4
    y = torch.rand(*shape, generator=g, dtype=D) if soft else (torch.rand(*shape, generator=g) < 0.4).to(D)
    return x, y


@pytest.mark.parametrize("gamma,beta", [(1.0, 0.0), (2.0, 1.0), (4.0, 0.0), (0.5, -1.0)])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("soft", [False, True])
def test_values_match_mpmath(gamma, beta, alpha, soft):
    x, y = _data(soft=soft)
    got = focal_loss_star(x, y, gamma=gamma, beta=beta, alpha=alpha, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref.mp_focal_star(x.numpy(), y.numpy(), gamma, beta, alpha),
                               rtol=1e-12)


def test_gamma1_beta0_is_bce():
    x, y = _data(soft=True)
    torch.testing.assert_close(focal_loss_star(x, y), F.binary_cross_entropy_with_logits(x, y),
                               rtol=1e-13, atol=0)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gradcheck(reduction):
    x, y = _data(soft=True)
    w = torch.rand(5, 4, dtype=D)
    assert torch.autograd.gradcheck(
        lambda t: focal_loss_star(t, y, gamma=2.0, beta=1.0, alpha=0.3, weight=w, reduction=reduction),
        (x.clone().requires_grad_(),))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_finite_at_extremes(dtype):
    x = torch.tensor([1e4, -1e4, 17.0, -17.0, 37.0, -37.0], dtype=dtype).repeat(2).requires_grad_()
    y = torch.cat([torch.ones(6), torch.zeros(6)]).to(dtype)
    out = focal_loss_star(x, y, gamma=4.0, beta=0.0, reduction="none")
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_module_equals_function():
    x, y = _data()
    m = FocalLossStar(gamma=2.0, beta=1.0, alpha=0.25, reduction="sum")
    torch.testing.assert_close(m(x, y), focal_loss_star(x, y, gamma=2.0, beta=1.0, alpha=0.25, reduction="sum"))
