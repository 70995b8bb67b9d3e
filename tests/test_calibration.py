import mpmath as mp
import numpy as np
import pytest
import torch

from focalkit import expected_calibration_error, focal_calibration_map

mp.mp.dps = 40


def _dF(p, g):
    """F'(p) for F(p) = -(1-p)^g log p, in mpmath."""
    return g * (1 - p) ** (g - 1) * mp.log(p) - (1 - p) ** g / p if g else -1 / p


def _binary_minimiser(eta, g, a):
    """argmin_p  eta a F(p) + (1-eta)(1-a) F(1-p), by bisection on the derivative."""
    a = mp.mpf(a)
    lo, hi = mp.mpf("1e-30"), 1 - mp.mpf("1e-30")
    for _ in range(200):
        mid = (lo + hi) / 2
        d = eta * a * _dF(mid, g) - (1 - eta) * (1 - a) * _dF(1 - mid, g)
        lo, hi = (mid, hi) if d < 0 else (lo, mid)
    return float((lo + hi) / 2)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
def test_binary_map_inverts_minimiser(gamma, alpha):
    p = np.linspace(0.01, 0.99, 41)
    a = mp.mpf(0.5 if alpha is None else alpha)
    # The map in 40 digits; float64 rounding of eta near 1 is ill-conditioned to invert, so the
    # minimiser is recovered from this exact eta and the float64 map is compared to it.
    eta_mp = [(1 - a) * _dF(1 - mp.mpf(v), gamma) / (a * _dF(mp.mpf(v), gamma) + (1 - a) * _dF(1 - mp.mpf(v), gamma))
              for v in p]
    got = focal_calibration_map(p, gamma, alpha)
    np.testing.assert_allclose(got, [float(e) for e in eta_mp], rtol=1e-12)
    back = np.array([_binary_minimiser(e, gamma, a) for e in eta_mp])
    np.testing.assert_allclose(back, p, rtol=0, atol=1e-8)


def test_binary_spec_values():
    assert abs(focal_calibration_map(np.array([0.62661]), 2.0)[0] - 0.8) < 2e-5
    assert abs(focal_calibration_map(np.array([0.52685]), 2.0, 0.25)[0] - 0.8) < 2e-5
    assert abs(focal_calibration_map(np.array([0.42152]), 2.0)[0] - 0.3) < 2e-5
    np.testing.assert_allclose(focal_calibration_map(np.array([0.2, 0.7]), 0.0), [0.2, 0.7], rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_map_satisfies_stationarity(gamma, weighted):
    """eta_k w_k F'(p_k) is the same for every class: p is the minimiser for the mapped eta."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(50, 3, generator=g, dtype=torch.float64) * 2, 1)
    w = torch.tensor([1.0, 2.5, 0.4], dtype=torch.float64) if weighted else None
    eta = focal_calibration_map(p, gamma, w, dim=1)
    torch.testing.assert_close(eta.sum(1), torch.ones(50, dtype=torch.float64))
    ww = w if weighted else torch.ones(3, dtype=torch.float64)
    for i in range(50):
        lam = [eta[i, k].item() * ww[k].item() * float(_dF(mp.mpf(p[i, k].item()), gamma)) for k in range(3)]
        np.testing.assert_allclose(lam, [lam[0]] * 3, rtol=1e-8)


def test_softmax_binary_agree():
    p = torch.tensor([0.3, 0.62661, 0.9], dtype=torch.float64)
    two = torch.stack([p, 1 - p], 1)
    torch.testing.assert_close(focal_calibration_map(two, 2.0, dim=1)[:, 0], focal_calibration_map(p, 2.0))
    assert isinstance(focal_calibration_map(p.numpy(), 2.0), np.ndarray)


def test_ece():
    assert expected_calibration_error([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == 0.0
    assert abs(expected_calibration_error([0.9, 0.9, 0.2, 0.2], [1, 0, 0, 0], n_bins=10) - 0.3) < 1e-12
    top = np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # bins: 0.8 x2 (acc 1/2), 0.7 (acc 1), 0.6 (acc 0) -> (2*0.3 + 0.3 + 0.6) / 4
    assert abs(expected_calibration_error(top, np.array([0, 1, 1, 1])) - 0.375) < 1e-12
    rng = np.random.default_rng(0)
    p = rng.random(200000)
    assert expected_calibration_error(p, rng.random(200000) < p) < 0.01
    with pytest.raises(ValueError, match="labels"):
        expected_calibration_error(top, np.array([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(p, p, n_bins=0)
