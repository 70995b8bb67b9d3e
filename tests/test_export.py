"""``torch.export.export`` of a module whose forward returns a focalkit loss, every family: the exported
program's output equals eager."""

from __future__ import annotations

import pytest
import torch

import focalkit as fk

torch.manual_seed(0)
X = torch.randn(16, 5)
Y = (torch.rand(16, 5) < 0.3).float()
T = torch.randint(0, 5, (16,))
T[::5] = -100
L = torch.randint(0, 6, (16,))
B = torch.cat([torch.rand(16, 2) * 5, torch.rand(16, 2) * 5 + 6], 1)

FAMILIES = {
    "sigmoid": lambda a: fk.sigmoid_focal_loss(a, Y, gamma=0.5, alpha=0.25),
    "sigmoid-eager": lambda a: fk.sigmoid_focal_loss(a, Y, backend="eager", soft_target="linear"),
    "sigmoid-sparse": lambda a: fk.sigmoid_focal_loss(a, L, normalizer="positives"),
    "sigmoid-signed": lambda a: fk.sigmoid_focal_loss(a, Y * 0.8, soft_target="signed"),
    "sigmoid-bce": lambda a: fk.sigmoid_focal_loss(a, Y * 0.8, soft_target="bce", gamma=0.5),
    "qfl-activated": lambda a: fk.quality_focal_loss(a.sigmoid(), Y * 0.7, activated=True),
    "sigmoid-ignore": lambda a: fk.sigmoid_focal_loss(a, torch.where(Y > 0, Y, 255.0), ignore_index=255),
    "softmax": lambda a: fk.softmax_focal_loss(a, T, gamma=2.0, label_smoothing=0.1),
    "softmax-eager": lambda a: fk.softmax_focal_loss(a, T, gamma=2.0, backend="eager"),
    "flsd53": lambda a: fk.softmax_focal_loss(a, T.clamp(min=0), gamma=fk.flsd53_gamma),
    "focal-star": lambda a: fk.focal_loss_star(a, Y, gamma=2.0, beta=1.0),
    "qfl": lambda a: fk.quality_focal_loss(a, Y * 0.7),
    "vfl": lambda a: fk.varifocal_loss(a, Y * 0.7),
    "dfl": lambda a: fk.distribution_focal_loss(a, Y[:, 0] * 3.5),
    "asl": lambda a: fk.asymmetric_loss(a, Y),
    "poly1-ce": lambda a: fk.poly1_cross_entropy(a, T.clamp(min=0)),
    "poly1-fl": lambda a: fk.poly1_focal_loss(a, Y),
    "yolo-focal": lambda a: fk.FocalLoss(torch.nn.BCEWithLogitsLoss())(a, Y),
    "yolo-qfocal": lambda a: fk.QFocalLoss(torch.nn.BCEWithLogitsLoss())(a, Y),
    "giou": lambda a: fk.giou_loss(B + a[:, :4].tanh(), B),
    "ciou": lambda a: fk.ciou_loss(B + a[:, :4].tanh(), B),
    "iou-log": lambda a: fk.iou_loss(B + a[:, :4].tanh(), B, mode="log"),
    "focal-eiou": lambda a: fk.focal_eiou_loss(B + a[:, :4].tanh(), B),
    "focal-l1": lambda a: fk.focal_l1_loss(a[:, :4], B[:, :4] / 10),
}


class Head(torch.nn.Module):
    """A linear head and a loss, as a model that returns its training loss is exported."""

    def __init__(self, fn):
        super().__init__()
        self.lin = torch.nn.Linear(5, 5)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.lin(x))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_export_equals_eager(name):
    torch.manual_seed(1)
    mod = Head(FAMILIES[name])
    ep = torch.export.export(mod, (X,))
    torch.testing.assert_close(ep.module()(X), mod(X))
