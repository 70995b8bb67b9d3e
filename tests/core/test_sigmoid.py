"""core.sigmoid: the two soft forms agree on hard targets to machine precision, at every logit."""

import pytest
import torch

from focalkit.core import sigmoid_focal_linear, sigmoid_focal_pt


@pytest.mark.parametrize("dtype,lim,rtol", [(torch.float64, 40.0, 1e-13), (torch.float32, 16.0, 2e-6)])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_pt_gradient_does_not_cancel_for_confident_hard_targets(dtype, lim, rtol, gamma):
    # B' = c p - w y cancels where y = 1 and p rounds to 1 (|x| > 17 in float32, > 37 in float64);
    # (1 - y) p - w y (1 - p) does not. The linear form has no such term: the two must agree.
    x = torch.linspace(-lim, lim, 801, dtype=dtype)
    for y in (torch.ones_like(x), torch.zeros_like(x)):
        pw = torch.full_like(x, 3.0)
        a = sigmoid_focal_pt(x, y, gamma, 0.25, pw)
        b = sigmoid_focal_linear(x, y, gamma, 0.25, pw)
        torch.testing.assert_close(a.grad, b.grad, rtol=rtol, atol=0)
        torch.testing.assert_close(a.loss, b.loss, rtol=rtol, atol=0)
