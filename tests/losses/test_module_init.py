"""Modules validate their arguments once, in ``__init__`` (docs/api.md), and register tensor
arguments as buffers (issue 19, items 7 and 8)."""

import pytest
import torch

import focalkit as fk


@pytest.mark.parametrize("alpha", [-1.0, 1.5, [-0.5, 1.0], "abc", torch.tensor([[0.5]])])
def test_softmax_module_refuses_bad_alpha_at_init(alpha):
    with pytest.raises((ValueError, TypeError), match="alpha"):
        fk.SoftmaxFocalLoss(alpha=alpha)


@pytest.mark.parametrize("cls,name", [(fk.SoftmaxFocalLoss, "weight"), (fk.SigmoidFocalLoss, "weight"),
                                      (fk.SigmoidFocalLoss, "pos_weight")])
def test_modules_refuse_negative_weights_at_init(cls, name):
    with pytest.raises(ValueError, match=name):
        cls(**{name: torch.tensor([1.0, -0.5, 2.0])})


def test_softmax_module_alpha_tensor_is_a_buffer():
    m = fk.SoftmaxFocalLoss(alpha=torch.tensor([0.25, 0.5, 0.75]))
    assert "alpha" in m.state_dict()
    m = m.to(torch.float64)
    assert m.alpha.dtype == torch.float64
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    torch.testing.assert_close(m(x, t), fk.softmax_focal_loss(x, t, alpha=torch.tensor([0.25, 0.5, 0.75],
                                                                                        dtype=torch.float64)))
    m2 = fk.SoftmaxFocalLoss(alpha=[0.25, 0.5, 0.75])
    assert "alpha" in m2.state_dict()
    assert fk.SoftmaxFocalLoss(alpha=0.25).alpha == 0.25
