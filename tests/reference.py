"""Slow, obviously-correct references, written independently of focalkit's closed forms.

* ``mp_*``: 50-digit mpmath evaluations of the textbook definitions, returned as float64 numpy
  arrays. They are the ground truth for values.
* ``torch_*``: the same textbook formulas written naively with torch ops, for ``torch.func``
  autodiff (gradients and Hessians) in float64 at moderate logits, where the naive form is exact.

Shared with the benchmarks.
"""

from __future__ import annotations

from typing import Optional, Sequence

import mpmath as mp
import numpy as np
import torch

mp.mp.dps = 50


def _mpf(v) -> mp.mpf:
    return mp.mpf(float(v))


def _sig(x: mp.mpf) -> mp.mpf:
    return 1 / (1 + mp.exp(-x))


def mp_sigmoid_focal_one(x, y, gamma, alpha=None, pos_weight=1.0, soft="pt") -> float:
    """One element of the sigmoid focal loss (alpha None = off)."""
    x, y, g, pw = _mpf(x), _mpf(y), _mpf(gamma), _mpf(pos_weight)
    p = _sig(x)
    a_pos = mp.mpf(1) if alpha is None else _mpf(alpha)
    a_neg = mp.mpf(1) if alpha is None else 1 - _mpf(alpha)
    if soft == "pt":
        bce = -(pw * y * mp.log(p) + (1 - y) * mp.log(1 - p))
        pt = p * y + (1 - p) * (1 - y)
        a_t = a_pos * y + a_neg * (1 - y)
        return float(a_t * (1 - pt) ** g * bce)
    if soft in ("signed", "bce", "quality"):  # MONAI's sigmoid((1-2y) x)^g, SMP's (1-exp(-BCE))^g, QFL's |y-p|^g
        bce = -(pw * y * mp.log(p) + (1 - y) * mp.log(1 - p))
        mod = _sig((1 - 2 * y) * x) if soft == "signed" else 1 - mp.exp(mp.log(p) * y + mp.log(1 - p) * (1 - y))
        if soft == "quality":
            mod = abs(y - p)
        return float((a_pos * y + a_neg * (1 - y)) * mod ** g * bce)
    pos = -pw * a_pos * (1 - p) ** g * mp.log(p)
    neg = -a_neg * p ** g * mp.log(1 - p)
    return float(y * pos + (1 - y) * neg)


def mp_sigmoid_focal(x: np.ndarray, y: np.ndarray, gamma, alpha=None, pos_weight=None, soft="pt") -> np.ndarray:
    """Elementwise over arrays; ``alpha`` may be a per-class array over the last axis."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    al = None if alpha is None else np.broadcast_to(np.asarray(alpha, dtype=np.float64), x.shape)
    pw = np.ones_like(x) if pos_weight is None else np.broadcast_to(np.asarray(pos_weight, np.float64), x.shape)
    out = np.empty_like(x)
    for i in np.ndindex(x.shape):
        out[i] = mp_sigmoid_focal_one(x[i], y[i], gamma, None if al is None else al[i], pw[i], soft)
    return out


def mp_focal_star(x: np.ndarray, y: np.ndarray, gamma, beta, alpha=None) -> np.ndarray:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    out = np.empty_like(x)
    g, b = _mpf(gamma), _mpf(beta)
    for i in np.ndindex(x.shape):
        xi, yi = _mpf(x[i]), _mpf(y[i])
        a_pos = 1 if alpha is None else _mpf(alpha)
        a_neg = 1 if alpha is None else 1 - _mpf(alpha)
        pos = -mp.log(_sig(g * xi + b)) / g
        neg = -mp.log(_sig(-g * xi + b)) / g
        out[i] = float(yi * a_pos * pos + (1 - yi) * a_neg * neg)
    return out


def mp_softmax_focal(
    z: np.ndarray,
    targets: np.ndarray,
    gamma,
    weight: Optional[Sequence[float]] = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Per-position losses (N, d...) and the ``mean`` denominator of F.cross_entropy's convention.

    ``z`` is (N, C, d...); ``targets`` is int (N, d...) or float probabilities (N, C, d...).
    """
    z = np.asarray(z, np.float64)
    n_cls = z.shape[1]
    zc = np.moveaxis(z, 1, -1)  # (N, d..., C)
    w = [mp.mpf(1)] * n_cls if weight is None else [_mpf(v) for v in weight]
    soft = np.issubdtype(np.asarray(targets).dtype, np.floating)
    tc = np.moveaxis(np.asarray(targets, np.float64), 1, -1) if soft else np.asarray(targets)
    eps = _mpf(label_smoothing)
    losses = np.zeros(zc.shape[:-1])
    den = mp.mpf(0)
    for i in np.ndindex(zc.shape[:-1]):
        row = [_mpf(v) for v in zc[i]]
        lse = mp.log(mp.fsum(mp.exp(v) for v in row))
        logp = [v - lse for v in row]
        if soft:
            q = [(1 - eps) * _mpf(v) + eps / n_cls for v in tc[i]]
            den += 1
        else:
            y = int(tc[i])
            if y == ignore_index:
                continue
            q = [(1 - eps) * (1 if k == y else 0) + eps / n_cls for k in range(n_cls)]
            den += w[y]
        g = _mpf(gamma)
        losses[i] = float(mp.fsum(-w[k] * q[k] * (1 - mp.exp(logp[k])) ** g * logp[k] for k in range(n_cls)))
    return losses, float(den)


def mp_varifocal_one(x, q, alpha, gamma, iou_weighted=True, label=None) -> tuple[float, float]:
    """One element of Varifocal Loss (mmdet's definition; ``label`` None: positives where q > 0) and its
    derivative in x (mpmath's numerical differentiation of the textbook form)."""
    q, a, g = _mpf(q), _mpf(alpha), _mpf(gamma)
    lab = (mp.mpf(1) if q > 0 else mp.mpf(0)) if label is None else _mpf(label)

    def f(t):
        p = _sig(t)
        bce = -(q * mp.log(p) + (1 - q) * mp.log(1 - p))
        w_pos = q if iou_weighted else mp.mpf(1)
        return (lab * w_pos + (1 - lab) * a * p ** g) * bce

    return float(f(_mpf(x))), float(mp.diff(f, _mpf(x)))


def mp_dfl_row(z: Sequence[float], y: float) -> tuple[float, list]:
    """Distribution Focal Loss of one row of bins (y clamped into [0, n]) and its gradient."""
    zs = [_mpf(v) for v in z]
    n = len(zs) - 1
    yv = min(max(_mpf(y), mp.mpf(0)), mp.mpf(n))
    left = min(int(mp.floor(yv)), n - 1)
    wl, wr = left + 1 - yv, yv - left
    lse = mp.log(mp.fsum(mp.exp(v) for v in zs))
    loss = lse - wl * zs[left] - wr * zs[left + 1]
    grad = [mp.exp(v - lse) - (wl if k == left else 0) - (wr if k == left + 1 else 0) for k, v in enumerate(zs)]
    return float(loss), [float(g) for g in grad]


def mp_class_balanced(counts: Sequence[int], beta: float) -> np.ndarray:
    b = _mpf(beta)
    inv = [(1 - b) / (1 - b ** int(n)) if n > 0 else mp.mpf(0) for n in counts]
    s = mp.fsum(inv)
    return np.array([float(len(counts) * v / s) for v in inv])


# ---- naive torch formulas, for autodiff in float64 at moderate logits ----

def torch_sigmoid_focal(x, y, gamma, alpha=None, pos_weight=None, soft="pt"):
    p = torch.sigmoid(x)
    pw = 1.0 if pos_weight is None else pos_weight
    a_pos = 1.0 if alpha is None else alpha
    a_neg = 1.0 if alpha is None else 1.0 - alpha
    if soft == "pt":
        bce = -(pw * y * torch.log(p) + (1 - y) * torch.log(1 - p))
        pt = p * y + (1 - p) * (1 - y)
        return (a_pos * y + a_neg * (1 - y)) * (1 - pt) ** gamma * bce
    if soft in ("signed", "bce", "quality"):
        bce = -(pw * y * torch.log(p) + (1 - y) * torch.log(1 - p))
        mod = torch.sigmoid((1 - 2 * y) * x) if soft == "signed" else \
            1 - torch.exp(y * torch.log(p) + (1 - y) * torch.log(1 - p))  # p_t = exp(-BCE), BCE without pw
        if soft == "quality":
            mod = (y - p).abs()
        return (a_pos * y + a_neg * (1 - y)) * mod ** gamma * bce
    return -y * pw * a_pos * (1 - p) ** gamma * torch.log(p) - (1 - y) * a_neg * p ** gamma * torch.log(1 - p)


def torch_focal_star(x, y, gamma, beta, alpha=None):
    a_pos = 1.0 if alpha is None else alpha
    a_neg = 1.0 if alpha is None else 1.0 - alpha
    pos = -torch.log(torch.sigmoid(gamma * x + beta)) / gamma
    neg = -torch.log(torch.sigmoid(-gamma * x + beta)) / gamma
    return y * a_pos * pos + (1 - y) * a_neg * neg


def torch_quality_focal(x, y, beta, alpha=None, pos_weight=None):
    p = torch.sigmoid(x)
    pw = 1.0 if pos_weight is None else pos_weight
    bce = -(pw * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    a_t = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return a_t * (y - p).abs() ** beta * bce


def torch_softmax_focal(z, coef, gamma, dim=1):
    """Per-position loss for per-class coefficients ``coef`` (weight times target mass)."""
    p = torch.softmax(z, dim)
    return -(coef * (1 - p) ** gamma * torch.log(p)).sum(dim)


# ---- boxes: one pair at a time, plain Python floats ----

def ref_box_loss(kind: str, b1, b2, eps: float = 1e-7, gamma: float = 0.5) -> float:
    import math

    x1, y1, x2, y2 = map(float, b1)
    u1, v1, u2, v2 = map(float, b2)
    w1, h1, w2, h2 = max(x2 - x1, 0.0), max(y2 - y1, 0.0), max(u2 - u1, 0.0), max(v2 - v1, 0.0)
    inter = max(0.0, min(x2, u2) - max(x1, u1)) * max(0.0, min(y2, v2) - max(y1, v1))
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / (union + eps)
    cw, ch = max(x2, u2) - min(x1, u1), max(y2, v2) - min(y1, v1)
    rho2 = ((x1 + x2) / 2 - (u1 + u2) / 2) ** 2 + ((y1 + y2) / 2 - (v1 + v2) / 2) ** 2
    if kind == "iou":
        return 1 - iou
    if kind == "giou":
        return 1 - iou + (cw * ch - union) / (cw * ch + eps)
    diou = 1 - iou + rho2 / (cw ** 2 + ch ** 2 + eps)
    if kind == "diou":
        return diou
    if kind == "ciou":
        v = 4 / math.pi ** 2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
        return diou + v / (1 - iou + v + eps) * v
    eiou = 1 - iou + rho2 / (cw ** 2 + ch ** 2 + eps) + (w1 - w2) ** 2 / (cw ** 2 + eps) + (h1 - h2) ** 2 / (ch ** 2 + eps)
    if kind == "eiou":
        return eiou
    if kind == "focal_eiou":
        return iou ** gamma * eiou
    raise ValueError(kind)


def ref_focal_l1(x: float, alpha: float, beta: float) -> float:
    import math

    if x == 0:
        return 0.0
    if x <= 1:
        return -alpha * x * x * (2 * math.log(beta * x) - 1) / 4
    return -alpha * math.log(beta) * x + (2 * alpha * math.log(beta) + alpha) / 4
