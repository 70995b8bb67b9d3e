"""focalkit.compat.smp against the installed segmentation_models_pytorch: values and gradients over every
mode, reduction and option of its FocalLoss. SMP needs torchvision, so this runs in the benchmark venv:
``.bench/bin/python -m pytest -o addopts= tests/compat/test_smp.py`` (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")

from focalkit.compat import smp as fks  # noqa: E402

GRID = list(itertools.product(["mean", "sum", "none", "batchwise_mean"], [None, 0.25], [None, 255], [False, True],
                              [None, 0.5], [None, [1.0, 2.0, 0.5]], [0.5, 2.0]))


def _data(mode, dtype, from_logits, ignore, g):
    x = torch.randn(2, 3, 5, 4, generator=g, dtype=dtype) * 3
    if not from_logits:
        x = torch.softmax(x, 1) if mode == "multiclass" else torch.sigmoid(x)
    if mode == "multiclass":
        t = torch.randint(0, 3, (2, 5, 4), generator=g)
    else:
        t = torch.rand(2, 3, 5, 4, generator=g, dtype=dtype)
        t[0] = (t[0] > 0.5).to(dtype)  # hard and soft targets
    if ignore is not None and mode != "multilabel":
        t.view(-1)[::5] = ignore
    return x, t


def _run(cls, kw, x, t):
    x = x.clone().requires_grad_()
    out = cls(**kw)(x, t)
    out.sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("dtype,from_logits", [(torch.float32, True), (torch.float64, True), (torch.float64, False)])
def test_focal_loss_equals_smp(mode, dtype, from_logits):
    """float32 against SMP in float64 (SMP's (1 - pt).pow(gamma) loses digits in float32 where focalkit
    does not); probabilities (from_logits=False) in float64 only: their logit transform is ill-conditioned."""
    g = torch.Generator().manual_seed(0)
    checked = 0
    for reduction, alpha, ignore, normalized, reduced, weights, gamma in GRID:
        if weights is not None and (mode == "binary" or reduction in ("none", "batchwise_mean")):
            continue  # SMP: ValueError for binary (tested below); a broadcasting error otherwise
        if mode == "multilabel" and ignore is not None:
            continue  # SMP raises IndexError there (tested below)
        kw = dict(mode=mode, alpha=alpha, gamma=gamma, ignore_index=ignore, from_logits=from_logits,
                  reduction=reduction, normalized=normalized, reduced_threshold=reduced, class_weights=weights)
        x, t = _data(mode, dtype, from_logits, ignore, g)
        want, want_g = _run(smp_losses.FocalLoss, kw, x.double(), t if mode == "multiclass" else t.double())
        got, got_g = _run(fks.FocalLoss, kw, x, t)
        assert got.shape == want.shape and got.dtype == dtype, kw
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got.double(), want, **tol)
        torch.testing.assert_close(got_g.double(), want_g, rtol=tol["rtol"] * 10, atol=tol["atol"])
        checked += 1
    assert checked >= 96


def test_deliberate_differences_and_errors():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(AssertionError):
        smp_losses.FocalLoss("binar")
    with pytest.raises(AssertionError):
        fks.FocalLoss("binar")
    with pytest.raises(ValueError):
        fks.FocalLoss("binar")
    for cls in (smp_losses.FocalLoss, fks.FocalLoss):
        with pytest.raises(ValueError):
            cls("binary", class_weights=[1.0, 2.0])
    t = (torch.rand(2, 3, 4, 4) > 0.5).float()
    t[0, 0, 0, 0] = 255
    with pytest.raises(IndexError):  # SMP's multilabel ignore_index indexes with a mask of the wrong rank
        smp_losses.FocalLoss("multilabel", ignore_index=255)(x, t)
    got = fks.FocalLoss("multilabel", ignore_index=255)(x, t)  # focalkit: per element
    keep = t != 255
    want = torch.stack([smp_losses.FocalLoss("binary")(x[:, c][keep[:, c]], t[:, c][keep[:, c]]) for c in range(3)])
    torch.testing.assert_close(got, want.mean())


def test_finite_where_smp_gives_nan():
    x = torch.tensor([[20.0, -30.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0]])
    smp_losses.FocalLoss("binary", gamma=0.5)(x, t).backward()
    assert torch.isnan(x.grad).any()
    x2 = x.detach().clone().requires_grad_()
    fks.FocalLoss("binary", gamma=0.5)(x2, t).backward()
    assert torch.isfinite(x2.grad).all()


def test_the_preset_does_not_import_smp():
    r = subprocess.run([sys.executable, "-c", "import sys, focalkit.compat.smp; "
                        "assert 'segmentation_models_pytorch' not in sys.modules; print('OK')"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr
