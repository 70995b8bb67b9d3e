"""Every loss family traces under torch.compile(fullgraph=True): no graph break, same values and
gradients as eager. aot_eager traces forward and backward through AOTAutograd (fast); inductor,
which generates C++ on CPU, is checked on the two main losses."""

import pytest
import torch

import focalkit as fk

torch.manual_seed(0)
X = torch.randn(64, 5)
Y = (torch.rand(64, 5) < 0.3).float()
T = torch.randint(0, 5, (64,))
T[::7] = -100
L = torch.randint(0, 6, (64,))
B = torch.rand(64, 4) * 10
B = torch.cat([B[:, :2], B[:, :2] + B[:, 2:] + 1], 1)

CASES = {
    "sigmoid": lambda a: fk.sigmoid_focal_loss(a, Y, gamma=0.5, alpha=torch.full((5,), 0.3)),
    "sigmoid-linear": lambda a: fk.sigmoid_focal_loss(a, Y * 0.8, soft_target="linear", normalizer=3.0),
    "sigmoid-signed": lambda a: fk.sigmoid_focal_loss(a, Y * 0.8, soft_target="signed"),
    "sigmoid-bce": lambda a: fk.sigmoid_focal_loss(a, Y * 0.8, soft_target="bce", gamma=0.5),
    "sparse": lambda a: fk.sigmoid_focal_loss(a, L, normalizer="positives"),
    "softmax": lambda a: fk.softmax_focal_loss(a, T, gamma=0.5, label_smoothing=0.1, weight=torch.ones(5)),
    "softmax-probs": lambda a: fk.softmax_focal_loss(a, torch.softmax(Y, 1), gamma=2.0),
    "flsd53": lambda a: fk.softmax_focal_loss(a, T.clamp(min=0), gamma=fk.flsd53_gamma),
    "focal-star": lambda a: fk.focal_loss_star(a, Y, gamma=2.0, beta=1.0),
    "qfl": lambda a: fk.quality_focal_loss(a, Y * 0.7),
    "vfl": lambda a: fk.varifocal_loss(a, Y * 0.7),
    "asl": lambda a: fk.asymmetric_loss(a, Y),
    "poly1-ce": lambda a: fk.poly1_cross_entropy(a, T),
    "giou": lambda a: fk.giou_loss(a[:, :4].abs().cumsum(1), B),
    "ciou": lambda a: fk.ciou_loss(a[:, :4].abs().cumsum(1), B),
}


def _check(fn, backend):
    torch._dynamo.reset()
    x1, x2 = X.clone().requires_grad_(), X.clone().requires_grad_()
    out = torch.compile(fn, fullgraph=True, backend=backend)(x1)
    out.backward()
    ref = fn(x2)
    ref.backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x1.grad, x2.grad)


@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_aot_eager(name):
    _check(CASES[name], "aot_eager")


@pytest.mark.parametrize("name", ["sigmoid", "softmax"])
def test_fullgraph_inductor(name):
    _check(CASES[name], "inductor")
