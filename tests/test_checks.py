"""Bad inputs raise ValueError / TypeError whose message names the argument (and the bad value)."""

import pytest
import torch
from torch import nn

from focalkit import (
    FocalLoss,
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
    class_balanced_weights,
    focal_loss_star,
    sigmoid_focal_loss,
    softmax_focal_loss,
)

X = torch.randn(4, 3)
Y = torch.rand(4, 3)
T = torch.tensor([0, 1, 2, 1])

CASES = [
    # (id, callable, exception, argument named, value shown)
    ("gamma<0", lambda: sigmoid_focal_loss(X, Y, gamma=-1.0), ValueError, "gamma", "-1.0"),
    ("gamma nan", lambda: softmax_focal_loss(X, T, gamma=float("nan")), ValueError, "gamma", "nan"),
    ("gamma int beyond float", lambda: sigmoid_focal_loss(X, Y, gamma=10 ** 400), ValueError, "gamma", "1000"),
    ("ignore_index int beyond float", lambda: sigmoid_focal_loss(X, Y, ignore_index=-(10 ** 400)), ValueError,
     "ignore_index", "-1000"),
    ("weight negative beside NaN", lambda: softmax_focal_loss(X, T, weight=torch.tensor([float("nan"), -1.0, 1.0])),
     ValueError, "weight", "-1.0"),
    ("weight negative beside NaN, bfloat16", lambda: softmax_focal_loss(
        X.bfloat16(), T, weight=torch.tensor([float("nan"), -1.0, 1.0], dtype=torch.bfloat16)),
     ValueError, "weight", "-1.0"),
    ("gamma str", lambda: sigmoid_focal_loss(X, Y, gamma="2"), TypeError, "gamma", "'2'"),
    ("alpha>1", lambda: sigmoid_focal_loss(X, Y, alpha=1.5), ValueError, "alpha", "1.5"),
    ("alpha<0", lambda: sigmoid_focal_loss(X, Y, alpha=-1), ValueError, "alpha", "-1"),
    ("alpha wrong length", lambda: sigmoid_focal_loss(X, Y, alpha=torch.rand(5)), ValueError, "alpha", "(5,)"),
    ("alpha tensor out of range", lambda: sigmoid_focal_loss(X, Y, alpha=torch.tensor([0.1, 2.0, 0.3])),
     ValueError, "alpha", "2.0"),
    ("reduction", lambda: sigmoid_focal_loss(X, Y, reduction="avg"), ValueError, "reduction", "'avg'"),
    ("reduction softmax", lambda: softmax_focal_loss(X, T, reduction=None), ValueError, "reduction", "None"),
    ("soft_target", lambda: sigmoid_focal_loss(X, Y, soft_target="quadratic"), ValueError, "soft_target",
     "'quadratic'"),
    ("integer logits", lambda: sigmoid_focal_loss(torch.ones(4, 3, dtype=torch.long), Y), TypeError, "logits",
     "torch.int64"),
    ("integer logits softmax", lambda: softmax_focal_loss(T.view(2, 2), T[:2]), TypeError, "logits", "int64"),
    ("logits not tensor", lambda: sigmoid_focal_loss([1.0, 2.0], Y), TypeError, "logits", "list"),
    ("targets shape", lambda: sigmoid_focal_loss(X, Y[:, :2]), ValueError, "targets", "(4, 2)"),
    ("weight not broadcastable", lambda: sigmoid_focal_loss(X, Y, weight=torch.ones(2)), ValueError, "weight",
     "(2,)"),
    ("pos_weight not broadcastable", lambda: sigmoid_focal_loss(X, Y, pos_weight=torch.ones(4)), ValueError,
     "pos_weight", "(4,)"),
    ("softmax weight length", lambda: softmax_focal_loss(X, T, weight=torch.ones(4)), ValueError, "weight",
     "(4,)"),
    ("float class targets", lambda: softmax_focal_loss(X, T.float()), TypeError, "targets", "(4,)"),
    ("bool class targets", lambda: softmax_focal_loss(X, T > 0), TypeError, "targets", "torch.bool"),
    ("class index too large", lambda: softmax_focal_loss(X, torch.tensor([0, 1, 3, 1])), ValueError, "targets",
     "3"),
    ("class index negative", lambda: softmax_focal_loss(X, torch.tensor([0, -2, 1, 1])), ValueError, "targets",
     "-2"),
    ("class targets shape", lambda: softmax_focal_loss(X, T[:3]), ValueError, "targets", "(3,)"),
    ("label_smoothing", lambda: softmax_focal_loss(X, T, label_smoothing=1.5), ValueError, "label_smoothing",
     "1.5"),
    ("ignore_index float", lambda: softmax_focal_loss(X, T, ignore_index=1.5), TypeError, "ignore_index", "1.5"),
    ("normalizer with none", lambda: sigmoid_focal_loss(X, Y, reduction="none", normalizer=2.0), ValueError,
     "normalizer", "2.0"),
    ("normalizer <= 0", lambda: softmax_focal_loss(X, T, normalizer=0), ValueError, "normalizer", "0"),
    ("normalizer shape", lambda: softmax_focal_loss(X, T, normalizer=torch.ones(2)), ValueError, "normalizer",
     "(2,)"),
    ("FL* gamma 0", lambda: focal_loss_star(X, Y, gamma=0.0), ValueError, "gamma", "0.0"),
    ("cb beta 1", lambda: class_balanced_weights([1, 2], beta=1.0), ValueError, "beta", "1.0"),
    ("cb negative count", lambda: class_balanced_weights([1, -2]), ValueError, "counts", "-2"),
    ("cb all zero", lambda: class_balanced_weights([0, 0]), ValueError, "counts", "[0, 0]"),
    ("cb fractional count", lambda: class_balanced_weights([1.5, 2]), ValueError, "counts", "1.5"),
    ("module gamma", lambda: SigmoidFocalLoss(gamma=-0.5), ValueError, "gamma", "-0.5"),
    ("module reduction", lambda: SoftmaxFocalLoss(reduction="batchmean"), ValueError, "reduction", "batchmean"),
    ("module weight 2-D", lambda: SoftmaxFocalLoss(weight=torch.ones(2, 2)), ValueError, "weight", "(2, 2)"),
    ("wrapper alpha None", lambda: FocalLoss(nn.BCEWithLogitsLoss(), alpha=None), TypeError, "alpha", "None"),
    ("softmax 1 class dim", lambda: softmax_focal_loss(torch.randn(()), torch.tensor(0)), ValueError, "logits",
     "()"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_and_names_argument(case):
    _, fn, exc, name, shown = case
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert f"`{name}`" in msg and shown in msg, msg
    assert msg.startswith("Expected ")


def test_at_least_fifteen_distinct_cases():
    assert len({c[0] for c in CASES}) >= 15


def test_device_mismatch_is_named():
    meta = torch.ones(4, 3, device="meta")
    with pytest.raises(ValueError, match="`targets`"):
        sigmoid_focal_loss(X, meta)
