"""focalkit.compat.transformers against transformers' own loss functions (transformers is in the test
extra): values and gradients equal in float64, finite where transformers' are NaN, and the whole
Deformable DETR loss equal to ``DeformableDetrForObjectDetectionLoss``."""

from __future__ import annotations

import math

import pytest
import torch

tl = pytest.importorskip("transformers.loss.loss_for_object_detection")

from transformers.loss import loss_deformable_detr, loss_grounding_dino  # noqa: E402

from focalkit.compat import transformers as fkt  # noqa: E402

PAIRS = {
    "detr": (fkt.sigmoid_focal_loss, tl.sigmoid_focal_loss),
    "deformable": (fkt.deformable_detr_sigmoid_focal_loss,
                   lambda x, t, nb, alpha=0.25, gamma=2: loss_deformable_detr.sigmoid_focal_loss(
                       x, t, nb, alpha=alpha, gamma=gamma) * x.shape[1]),
    "grounding_dino": (fkt.grounding_dino_sigmoid_focal_loss, loss_grounding_dino.sigmoid_focal_loss),
}


def _both(name, x, t, *args, **kw):
    ours_fn, theirs_fn = PAIRS[name]
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours_fn(x1, t, *args, **kw), theirs_fn(x2, t, *args, **kw)
    a.backward()
    b.backward()
    return a, b, x1.grad, x2.grad


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("shape", [(2, 30, 5), (7, 64)])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2), (-1, 2), (0.75, 1.5), (0.25, 0)])
@pytest.mark.parametrize("num_boxes", [3, 2.5, "tensor"])
def test_equals_transformers(name, shape, alpha, gamma, num_boxes):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    t = (torch.rand(shape, generator=g) < 0.2).double()
    nb = torch.tensor(4.0, dtype=torch.float64) if num_boxes == "tensor" else num_boxes
    a, b, ga, gb = _both(name, x, t, nb, alpha=alpha, gamma=gamma)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_where_transformers_is_nan(name, dtype):
    """gamma < 1 at a saturated sigmoid: transformers' ``(1 - p_t) ** gamma`` has an infinite derivative
    at 0, times 0: its gradient is NaN; focalkit's is finite, and the values agree."""
    x = torch.tensor([[40.0, -40.0, 0.5], [-120.0, 3.0, 120.0]], dtype=dtype)
    t = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=dtype)
    a, b, ga, gb = _both(name, x, t, 2, gamma=0.5)
    torch.testing.assert_close(a, b)
    assert torch.isnan(gb).any() and torch.isfinite(ga).all()
    ok = ~torch.isnan(gb)
    torch.testing.assert_close(ga[ok], gb[ok])


def test_integer_one_hot_targets_and_errors():
    x = torch.randn(2, 4, 3)
    t = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 4)), 3)  # int64, as RT-DETR builds them
    torch.testing.assert_close(fkt.sigmoid_focal_loss(x, t, 2.0), fkt.sigmoid_focal_loss(x, t.float(), 2.0))
    with pytest.raises(ValueError, match="inputs"):
        fkt.sigmoid_focal_loss(torch.randn(5), torch.ones(5), 1)
    with pytest.raises(ValueError, match="normalizer"):
        fkt.grounding_dino_sigmoid_focal_loss(torch.randn(5), torch.ones(5), 0)


def test_rt_detr_focal_path_passes_alpha_into_num_boxes():
    """The bug noted in the module docstring, shown on transformers' own code: RT-DETR's loss_labels_focal
    calls sigmoid_focal_loss(src_logits, target, alpha, gamma) positionally."""
    import inspect

    from transformers.loss import loss_rt_detr

    src = inspect.getsource(loss_rt_detr.RTDetrLoss.loss_labels_focal)
    assert "sigmoid_focal_loss(src_logits, target, self.alpha, self.gamma)" in src
    params = list(inspect.signature(loss_rt_detr.sigmoid_focal_loss).parameters)
    assert params[:4] == ["inputs", "targets", "num_boxes", "alpha"]  # so alpha -> num_boxes, gamma -> alpha


def _tiny_detr():
    pytest.importorskip("scipy")
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, ResNetConfig

    cfg = DeformableDetrConfig(
        backbone_config=ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1],
                                     out_features=["stage2", "stage3", "stage4"]),
        use_timm_backbone=False, use_pretrained_backbone=False, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=20,
        num_labels=3, num_feature_levels=3, encoder_n_points=2, decoder_n_points=2)
    torch.manual_seed(0)
    return DeformableDetrForObjectDetection(cfg)


LABELS = [{"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.3]])},
          {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]


def test_deformable_detr_loss_equals_transformers():
    model = _tiny_detr()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # the same dropout in both passes
    theirs = model(pixel_values=x, labels=LABELS)
    model.loss_function = fkt.deformable_detr_loss
    torch.manual_seed(2)
    ours = model(pixel_values=x, labels=LABELS)
    assert sorted(ours.loss_dict) == sorted(theirs.loss_dict)
    for k in theirs.loss_dict:
        torch.testing.assert_close(ours.loss_dict[k], theirs.loss_dict[k], msg=k)
    torch.testing.assert_close(ours.loss, theirs.loss)
    params = [p for p in model.parameters() if p.requires_grad]
    g_ours = torch.autograd.grad(ours.loss, params, allow_unused=True)
    g_theirs = torch.autograd.grad(theirs.loss, params, allow_unused=True)
    for a, b in zip(g_ours, g_theirs):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
