"""``torch.func`` (issue 19, items 1 and 6): ``grad``, ``vmap``, ``jacrev``, ``jvp`` and per-sample
gradients ``vmap(grad(functional_call))`` over every loss and preset, on every backend, against
autograd outside the transforms (the closed-form gradient of the fast path) in float64.

Under a transform the losses run their reference formula as plain differentiable ops
(``backends.eager.composite``); outside one, the kernels and their closed-form gradients. So each
test compares the two, and a transform that failed or gave another gradient fails here."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, jvp, vmap

import focalkit as fk
from device import DEVICE
from focalkit.backends import native, triton
from focalkit.compat import kornia as fk_kornia
from focalkit.compat import torchvision as fk_tv

BACKENDS = ["eager"] + (["native"] if native.available() else []) + \
    (["triton"] if triton.unsupported(torch.zeros(1, device=DEVICE)) is None else [])
N, C = 6, 4


def _data(dev):
    g = torch.Generator().manual_seed(0)
    return dict(
        y=(torch.rand(N, C, generator=g) < 0.4).double().to(dev),
        soft=torch.rand(N, C, generator=g).double().to(dev),
        lab=torch.randint(0, C, (N,), generator=g).to(dev),
        labbg=torch.randint(0, C + 1, (N,), generator=g).to(dev),
        probs=torch.softmax(torch.randn(N, C, generator=g), 1).double().to(dev),
        w=torch.rand(N, C, generator=g).double().to(dev),
        cw=torch.rand(C, generator=g).double().to(dev) + 0.5,
        dfl=(torch.rand(N, generator=g) * (C - 1.001)).double().to(dev),
    )


def _losses(b, d):
    """name -> f(logits) for every closed-form loss and preset (b: the backend; d: the data)."""
    return {
        "sigmoid": lambda x: fk.sigmoid_focal_loss(x, d["y"], backend=b),
        "sigmoid-none-alpha-vec": lambda x: fk.sigmoid_focal_loss(x, d["y"], alpha=d["cw"] / 3, reduction="none",
                                                                 backend=b),
        "sigmoid-soft-linear-pw": lambda x: fk.sigmoid_focal_loss(x, d["soft"], soft_target="linear",
                                                                 pos_weight=d["cw"], backend=b),
        "sigmoid-soft-pt": lambda x: fk.sigmoid_focal_loss(x, d["soft"], weight=d["w"], reduction="sum", backend=b),
        "sigmoid-quality": lambda x: fk.sigmoid_focal_loss(x, d["soft"], soft_target="quality", backend=b),
        "sigmoid-sparse": lambda x: fk.sigmoid_focal_loss(x, d["labbg"], reduction="none", backend=b),
        "sigmoid-positives": lambda x: fk.sigmoid_focal_loss(x, d["y"], normalizer="positives", backend=b),
        "softmax": lambda x: fk.softmax_focal_loss(x, d["lab"], backend=b),
        "softmax-none-weight": lambda x: fk.softmax_focal_loss(x, d["lab"], weight=d["cw"], reduction="none",
                                                              backend=b),
        "softmax-smooth-ignore": lambda x: fk.softmax_focal_loss(
            x, torch.where(d["lab"] == 0, -100, d["lab"]), label_smoothing=0.1, backend=b),
        "softmax-dense": lambda x: fk.softmax_focal_loss(x, d["probs"], reduction="sum", backend=b),
        "softmax-nd": lambda x: fk.softmax_focal_loss(x.reshape(2, 3, C).transpose(1, 2),
                                                      d["lab"].reshape(2, 3), backend=b),
        "focal-star": lambda x: fk.focal_loss_star(x, d["y"], backend=b),
        "qfl": lambda x: fk.quality_focal_loss(x, d["soft"], backend=b),
        "varifocal": lambda x: fk.varifocal_loss(x, d["soft"] * d["y"], backend=b),
        "dfl": lambda x: fk.distribution_focal_loss(x, d["dfl"], backend=b),
        "asymmetric": lambda x: fk.asymmetric_loss(x, d["y"], backend=b),
        "poly1-focal": lambda x: fk.poly1_focal_loss(x, d["y"], backend=b),
        "poly1-ce": lambda x: fk.poly1_cross_entropy(x, d["lab"], backend=b),
        "module": lambda x: fk.SoftmaxFocalLoss(weight=d["cw"], backend=b)(x, d["lab"]),
        "giou": lambda x: fk.giou_loss(_boxes(x), _boxes(d["soft"]), backend=b),
        "focal-eiou": lambda x: fk.focal_eiou_loss(_boxes(x), _boxes(d["soft"]), reduction="none", backend=b),
        "torchvision": lambda x: fk_tv.sigmoid_focal_loss(x, d["y"], reduction="mean"),
        "kornia-focal": lambda x: fk_kornia.focal_loss(x, d["lab"], alpha=0.5, reduction="mean"),
        "kornia-binary": lambda x: fk_kornia.binary_focal_loss_with_logits(x, d["y"], reduction="none"),
    }


def _boxes(x):
    """(x1, y1, x2, y2) boxes from 4 free numbers per row."""
    return torch.cat([x[:, :2], x[:, :2] + x[:, 2:].exp()], 1)


NAMES = list(_losses("eager", _data("cpu")))
PRESETS = ("torchvision", "kornia-focal", "kornia-binary")
# no kernel (autograd through the eager formula), or a preset that picks its backend itself: once
EAGER_ONLY = PRESETS + ("focal-star", "asymmetric", "poly1-focal", "poly1-ce", "giou",
                        "focal-eiou")


def _combos(names):
    return [(b, n) for b in BACKENDS for n in names if b == "eager" or n not in EAGER_ONLY + ("kornia",)]


def _setup(backend, name):
    dev = DEVICE if backend == "triton" else "cpu"
    dtype = torch.float32 if backend == "triton" else torch.float64  # the Triton kernels take float64 too,
    f = _losses(backend, _data(dev))[name]  # but the interpreter is slow; float32 there, float64 elsewhere
    x = torch.randn(N, C, generator=torch.Generator().manual_seed(1), dtype=torch.float64).mul(3).to(dev, dtype)
    return f, x


def _autograd_jacobian(f, x):
    """The Jacobian by a loop of ordinary backward passes (the fast path's closed-form gradient)."""
    return torch.autograd.functional.jacobian(f, x, vectorize=False)


@pytest.mark.parametrize("backend, name", _combos(NAMES))
def test_grad_jacrev_jvp_equal_autograd(backend, name):
    f, x = _setup(backend, name)
    jac = _autograd_jacobian(f, x)
    out_shape = f(x).shape
    if out_shape == ():
        torch.testing.assert_close(grad(f)(x), jac)
    torch.testing.assert_close(jacrev(f)(x), jac)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(x)
    value, tangent = jvp(f, (x,), (v,))
    torch.testing.assert_close(value, f(x))
    torch.testing.assert_close(tangent, (jac.reshape(out_shape.numel(), -1) @ v.reshape(-1)).reshape(out_shape))


@pytest.mark.parametrize("backend, name", _combos(NAMES))
def test_vmap_over_calls_equals_a_loop(backend, name):
    f, x = _setup(backend, name)
    xs = torch.stack([x, x.flip(0) * 0.5, -x])
    torch.testing.assert_close(vmap(f)(xs), torch.stack([f(xi) for xi in xs]))


@pytest.mark.parametrize("backend, name", _combos(["sigmoid", "sigmoid-sparse", "softmax", "softmax-none-weight",
                                                   "qfl", "torchvision", "kornia-focal", "kornia-binary"]))
def test_hessian_under_transforms_equals_create_graph(backend, name):
    f, x = _setup(backend, name)
    f_sum = (lambda a: f(a).sum())
    expected = torch.autograd.functional.hessian(f_sum, x)  # create_graph=True through LossFunction
    torch.testing.assert_close(torch.func.hessian(f_sum)(x), expected)


def _per_sample(loss_fn, backend):
    """vmap(grad(functional_call)) of a small model against a per-sample loop of autograd, float64."""
    torch.manual_seed(0)
    dev = DEVICE if backend == "triton" else "cpu"
    dtype = torch.float32 if backend == "triton" else torch.float64  # the Triton kernels: no float64
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, C)).to(dev, dtype)
    params = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(4)
    inputs = torch.randn(N, 5, generator=g, dtype=torch.float64).to(dev, dtype)
    labels = torch.randint(0, C, (N,), generator=g).to(dev)

    def compute_loss(p, xi, yi):
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_sample = vmap(grad(compute_loss), in_dims=(None, 0, 0))(params, inputs, labels)
    for i in range(N):
        model.zero_grad()
        compute_loss(dict(model.named_parameters()), inputs[i], labels[i]).backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(per_sample[k][i], p.grad, msg=lambda m: f"sample {i}, {k}: {m}")


def _one_hot(y):
    return (y.unsqueeze(-1) == torch.arange(C, device=y.device)).float()  # F.one_hot reads values: no vmap


PER_SAMPLE = {
    "softmax": lambda b: (lambda z, y: fk.softmax_focal_loss(z, y, weight=torch.linspace(0.5, 2, C, dtype=z.dtype,
                                                                                        device=z.device), backend=b)),
    "sigmoid": lambda b: (lambda z, y: fk.sigmoid_focal_loss(z, _one_hot(y), backend=b)),
    "sigmoid-sparse": lambda b: (lambda z, y: fk.sigmoid_focal_loss(z, y, backend=b)),
    "module": lambda b: fk.SoftmaxFocalLoss(gamma=1.5, backend=b),
    "torchvision": lambda b: (lambda z, y: fk_tv.sigmoid_focal_loss(z, _one_hot(y), reduction="mean")),
    "kornia": lambda b: (lambda z, y: fk_kornia.focal_loss(z, y, alpha=0.25, reduction="mean")),
    "kornia-binary": lambda b: (lambda z, y: fk_kornia.binary_focal_loss_with_logits(z, _one_hot(y), reduction="mean")),
}


@pytest.mark.parametrize("backend, name", _combos(list(PER_SAMPLE)))
def test_per_sample_gradients_equal_a_loop(backend, name):
    """DP-SGD's per-sample gradients (Opacus, the PyTorch tutorial): vmap(grad(functional_call))."""
    _per_sample(PER_SAMPLE[name](backend), backend)


def test_checks_under_vmap_skip_batched_values_and_keep_metadata_checks():
    """The value checks cannot read a batched tensor (no 'data-dependent control flow' blamed on the
    user); shape and argument checks still raise focalkit's message."""
    lab = torch.tensor([[0, 1], [2, 3]])
    out = vmap(lambda t: fk.softmax_focal_loss(torch.zeros(2, C, dtype=torch.float64), t))(lab)
    assert out.shape == (2,) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="Expected `gamma`"):
        vmap(lambda t: fk.softmax_focal_loss(torch.zeros(2, C), t, gamma=-1.0))(lab)
    with pytest.raises(ValueError, match="targets"):
        vmap(lambda x: fk.sigmoid_focal_loss(x, torch.zeros(3)))(torch.zeros(2, 4))


def test_inplace_grad_is_refused_under_transforms():
    x = torch.randn(N, C, dtype=torch.float64)
    y = (torch.rand(N, C) < 0.5).double()
    for backend in BACKENDS[:2]:
        with pytest.raises(RuntimeError, match="inplace_grad=True cannot run under torch.func"):
            vmap(lambda a, t: fk.sigmoid_focal_loss(a * 1, t, inplace_grad=True, backend=backend))(x, y)
