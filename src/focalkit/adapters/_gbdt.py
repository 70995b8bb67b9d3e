"""Shared NumPy-level pieces of the XGBoost, LightGBM and CatBoost objectives. Tree learners take a
Newton step -sum(g) / sum(h), so every Hessian handed over is floored to ``hessian_floor`` > 0; focal
loss is not convex where the true class's probability is small (docs/adapters.md).

No torch: loss, gradient and Hessian come from the C kernel (``focalkit._native``, float64, OpenMP),
whose formulas are ``focalkit.core``'s (tests/adapters compare the two). Where the kernel was not
built, ``focalkit.core`` computes them if torch is installed; otherwise an error says what to do."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import ctypes

import numpy as np

from focalkit import _checks, _native

Alpha = Union[float, None]
DEFAULT_HESSIAN_FLOOR = 1e-6


def check_params(gamma: float, alpha: Alpha, hessian_floor: float) -> Tuple[float, Alpha, float]:
    gamma = _checks.gamma(gamma)
    alpha = None if alpha is None else _checks.number("alpha", alpha, lo=0.0, hi=1.0)
    floor = _checks.number("hessian_floor", hessian_floor, lo=0.0, lo_open=True)
    return gamma, alpha, floor


def check_class_weight(weight) -> Optional[np.ndarray]:
    if weight is None:
        return None
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0):
        _checks.fail("weight", "to be a 1-D sequence of non-negative per-class weights", weight)
    return w


def _sample_weight(sample_weight, n: int) -> Optional[np.ndarray]:
    """Sample weights: one finite value >= 0 per row (the package's one rule for weights)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.size == 0:
        return None
    if w.size != n:
        _checks.fail("sample_weight", f"to have {n} entries", f"{w.size}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = w[~np.isfinite(w) | (w < 0)][0]
        _checks.fail("sample_weight", "to hold finite values >= 0", f"a value {float(bad)!r}")
    return w


def binary_labels(label) -> np.ndarray:
    """Binary labels: finite values in [0, 1] (0/1, or soft targets); NaN, 2 or -1 are refused."""
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(y) | (y < 0) | (y > 1)
    if bad.any():
        _checks.fail("label", "to hold finite values in [0, 1] for a binary focal objective", f"a value {float(y[bad][0])!r}")
    return y


def class_labels(label, n_cls: int) -> np.ndarray:
    """Class labels for a softmax objective: whole numbers in [0, num_class)."""
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(y) | (y < 0) | (y >= n_cls) | (y != np.round(y))
    if bad.any():
        _checks.fail("label", f"to hold class indices 0, 1, ..., {n_cls - 1} (num_class={n_cls})",
                     f"a value {float(y[bad][0])!r}")
    return y.astype(np.int64)


def class_scores(score, n: int) -> np.ndarray:
    """Raw scores (n, K) of a softmax objective; K < 2 means the library was not given ``num_class``."""
    z = np.asarray(score, dtype=np.float64)
    if n == 0 or z.size % max(n, 1) or z.size // max(n, 1) < 2:
        _checks.fail("num_class", f"(the library's parameter) to be set to the number of classes K >= 2 for a "
                     f"softmax focal objective: raw scores must be (n, K) for n={n} labels",
                     f"scores of shape {z.shape}")
    return z.reshape(n, -1)


def _ptr(a: Optional[np.ndarray]):
    return None if a is None else a.ctypes.data  # an int: c_void_p takes it, data_as costs microseconds


def _out(shape) -> np.ndarray:
    """An output buffer, touched here, in one thread: first-touch page faults taken by several OpenMP
    threads at once cost 3x the kernel itself on virtual machines like CI's (measured: 23 against 7 ms
    for 1e6 rows), one thread's cost 1 ms."""
    out = np.empty(shape)
    out.fill(0.0)
    return out


def _kernel():
    if _native.LIB is None:
        raise RuntimeError(f"focalkit's GBDT objectives need the native kernel: {_native.ERROR}")
    return _native.LIB


def _binary(margin, label, gamma: float, alpha: Alpha, sample_weight, floor: float, loss: bool, gh: bool):
    """(loss, grad, hess) per row, each None unless asked. Labels in (0, 1) use the linear (expected
    hard-label) soft form; 0/1 labels its one live term."""
    x = np.ascontiguousarray(margin, dtype=np.float64).reshape(-1)
    y = np.ascontiguousarray(label, dtype=np.float64).reshape(-1)
    if y.size != x.size:
        _checks.fail("label", f"to have one value per raw score ({x.size})", f"{y.size} labels")
    w = _sample_weight(sample_weight, x.size)
    w = None if w is None else np.ascontiguousarray(w)
    if _native.LIB is None and _torch_available():
        return _binary_torch(x, binary_labels(y), gamma, alpha, w, floor, loss, gh)
    n = x.size
    out_l = _out(n) if loss else None
    out_g = _out(n) if gh else None
    out_h = _out(n) if gh else None
    apos, aneg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    # the kernel checks the labels in its own pass (3: one outside [0, 1] or NaN, nothing computed)
    rc = _kernel().fk_gbdt_binary_f64(_ptr(x), _ptr(y), _ptr(w), n, gamma, apos, aneg, floor, _ptr(out_l),
                                      _ptr(out_g), _ptr(out_h), _native.threads())
    if rc == 3:
        binary_labels(y)  # raises, naming the first bad label
    if rc != 0:  # pragma: no cover - arguments are checked above
        raise RuntimeError(f"focalkit GBDT kernel failed with code {rc}")
    return out_l, out_g, out_h


def _torch_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _binary_torch(x, y, gamma, alpha, w, floor, loss, gh):
    """The same through focalkit.core, where the kernel was not built (needs torch)."""
    import torch

    from focalkit.core import sigmoid_focal_linear

    t = sigmoid_focal_linear(torch.from_numpy(x), torch.from_numpy(y), gamma, alpha, hessian=True)
    wt = 1.0 if w is None else torch.from_numpy(w)
    return ((t.loss * wt).numpy() if loss else None, (t.grad * wt).numpy() if gh else None,
            (t.hess * wt).clamp_min(floor).numpy() if gh else None)


def binary_ders_block(margin, label, sample_weight, gamma: float, alpha: Alpha, floor: float) -> np.ndarray:
    """(n, 2): -gradient and -Hessian (floored), CatBoost's sign convention, for one small block
    (``calc_ders_range``) in one kernel call, which releases the GIL: CatBoost calls from several threads
    and the kernel's work (about 12 us for 1,000 objects) then overlaps. Labels are checked by the kernel."""
    x = margin if isinstance(margin, np.ndarray) and margin.dtype == np.float64 and margin.flags.c_contiguous \
        else np.ascontiguousarray(margin, dtype=np.float64)
    y = label if isinstance(label, np.ndarray) and label.dtype in (np.float32, np.float64) and \
        label.flags.c_contiguous else np.ascontiguousarray(label, dtype=np.float64)
    if y.size != x.size:
        _checks.fail("label", f"to have one value per raw score ({x.size})", f"{y.size} labels")
    w = None if sample_weight is None else np.ascontiguousarray(_sample_weight(sample_weight, x.size))
    apos, aneg = (1.0, 1.0) if alpha is None else (alpha, 1.0 - alpha)
    out = np.empty((x.size, 2))
    if _native.BINARY_DERS is None:
        _, g, h = _binary(x, y, gamma, alpha, w, floor, False, True)
        out[:, 0], out[:, 1] = -g, -h
        return out
    rc = _native.BINARY_DERS(x.__array_interface__["data"][0], y.__array_interface__["data"][0],
                             int(y.dtype == np.float32), None if w is None else w.__array_interface__["data"][0],
                             x.size, gamma, apos, aneg, floor, out.__array_interface__["data"][0])
    if rc == 3:
        binary_labels(y)  # raises, naming the first bad label
    return out


def binary_grad_hess(margin, label, gamma: float, alpha: Alpha, sample_weight=None,
                     hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> Tuple[np.ndarray, np.ndarray]:
    """dL/dmargin and max(d2L/dmargin2, floor) per row, in the margin's precision (XGBoost hands over
    float32 and keeps float32 gradients; everything else is float64)."""
    _, g, h = _binary(margin, label, gamma, alpha, sample_weight, hessian_floor, False, True)
    if np.asarray(margin).dtype == np.float32:
        return g.astype(np.float32), h.astype(np.float32)
    return g, h


def binary_loss(margin, label, gamma: float, alpha: Alpha, sample_weight=None) -> float:
    loss, _, _ = _binary(margin, label, gamma, alpha, None, 1.0, True, False)
    w = _sample_weight(sample_weight, loss.size)
    return float(np.average(loss, weights=w)) if loss.size else 0.0


def _softmax(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight, floor: float, loss: bool,
             gh: bool):
    n = np.asarray(label).size
    z = np.ascontiguousarray(class_scores(margin, n))
    k = z.shape[1]
    y = np.ascontiguousarray(class_labels(label, k))
    _check_weight_length(weight, k)
    c = _row_coef(y, weight, sample_weight, n)
    out_l = _out(n) if loss else None
    out_g = _out((n, k)) if gh else None
    out_h = _out((n, k)) if gh else None
    if _native.LIB is None and _torch_available():
        return _softmax_torch(z, y, gamma, c, floor, loss, gh)
    rc = _kernel().fk_gbdt_softmax_f64(_ptr(z), _ptr(y), _ptr(c), n, k, gamma, floor, _ptr(out_l), _ptr(out_g),
                                       _ptr(out_h), _native.threads())
    if rc != 0:  # pragma: no cover - the labels were checked above
        raise RuntimeError(f"focalkit GBDT kernel failed with code {rc}")
    return out_l, out_g, out_h


def _softmax_torch(z, y, gamma, c, floor, loss, gh):
    import torch

    from focalkit.core import softmax_focal_hard, softmax_focal_hard_hess_diag

    zt, yt = torch.from_numpy(z), torch.from_numpy(y)
    ct = torch.ones(len(y), dtype=torch.float64) if c is None else torch.from_numpy(c)
    lo, g = softmax_focal_hard(zt, yt, gamma, ct)
    h = softmax_focal_hard_hess_diag(zt, yt, gamma, ct).clamp_min(floor) if gh else None
    return (lo.numpy() if loss else None, g.numpy() if gh else None, None if h is None else h.numpy())


def softmax_grad_hess(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight=None,
                      hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> Tuple[np.ndarray, np.ndarray]:
    """Gradient and floored Hessian diagonal, both (n, K), for raw scores (n, K) and labels (n,)."""
    _, g, h = _softmax(margin, label, gamma, weight, sample_weight, hessian_floor, False, True)
    return g, h


def softmax_loss(margin, label, gamma: float, weight: Optional[np.ndarray], sample_weight=None) -> float:
    loss, _, _ = _softmax(margin, label, gamma, weight, None, 1.0, True, False)
    w = _sample_weight(sample_weight, loss.size)
    return float(np.average(loss, weights=w)) if loss.size else 0.0


def _check_weight_length(weight, n_cls: int) -> None:
    if weight is not None and weight.size != n_cls:
        _checks.fail("weight", f"to have one entry per class ({n_cls})", f"{weight.size} entries")


def _row_coef(y: np.ndarray, weight, sample_weight, n: int) -> Optional[np.ndarray]:
    """Per-row coefficient: class weight of the row's label times its sample weight (None: all 1)."""
    coef = None if weight is None else weight[y]
    w = _sample_weight(sample_weight, n)
    if w is not None:
        coef = w if coef is None else coef * w
    return None if coef is None else np.ascontiguousarray(coef, dtype=np.float64)


def binary_init_margin(label, gamma: float, alpha: Alpha, sample_weight=None) -> float:
    """The constant raw score that minimises the (weighted) mean focal loss: a tree ensemble's start.

    Found by bisection on the mean gradient over [-50, 50] (the loss of a constant is one-dimensional).
    """
    y = binary_labels(label)
    if y.size == 0:
        _checks.fail("label", "to be non-empty (the prior margin of no labels is undefined)", "0 labels")
    w = _sample_weight(sample_weight, y.size)
    if w is not None and not w.sum() > 0:
        _checks.fail("sample_weight", "to have a positive sum", "all zero")
    lo, hi = -50.0, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        g, _ = binary_grad_hess(np.full_like(y, mid), y, gamma, alpha, sample_weight)
        if g.sum() > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def softmax_init_margin(label, n_cls: int, gamma: float, weight: Optional[np.ndarray], sample_weight=None,
                        iterations: int = 50) -> np.ndarray:
    """The constant raw scores (K,) that minimise the (weighted) mean softmax focal loss: Newton steps
    from the log class frequencies. Rows of one class share a gradient at a constant score, so each
    step evaluates K rows weighted by the classes' total weights."""
    y = class_labels(label, n_cls)
    w = _sample_weight(sample_weight, y.size)
    mass = np.bincount(y, weights=w, minlength=n_cls).astype(np.float64)
    if not mass.sum() > 0:
        _checks.fail("label", "to be non-empty with a positive total weight", f"{y.size} labels")
    c = np.log(np.maximum(mass / mass.sum(), 1e-12))
    c -= c.mean()
    present = mass > 0
    rows, cls = np.arange(n_cls)[present], mass[present]
    for _ in range(iterations):
        g, h = softmax_grad_hess(np.tile(c, (rows.size, 1)), rows, gamma, weight, cls, 1e-12)
        step = g.sum(0) / np.maximum(h.sum(0), 1e-12)
        c -= np.clip(step, -5.0, 5.0)
        c -= c.mean()
        if np.abs(step).max() < 1e-10:
            break
    return c


Unpack = Callable[..., tuple]  # (a, b, sample_weight) -> (raw score, label, weight or None)


class BinaryFocalObjective:
    """Binary sigmoid focal loss on raw margins: gradient and Hessian in closed form.

    One callable for both APIs of its library: ``obj(preds, data)`` (native training) and
    ``obj(y_true, y_pred, sample_weight=None)`` (scikit-learn wrapper). Sample weights multiply
    gradient and Hessian; every Hessian returned is at least ``hessian_floor``. Labels in (0, 1) use
    the linear (expected hard-label) soft form.
    """

    _unpack: Unpack

    def __init__(self, gamma: float = 2.0, alpha: Optional[float] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, self.alpha, self.hessian_floor = check_params(gamma, alpha, hessian_floor)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = type(self)._unpack(a, b, sample_weight)
        return binary_grad_hess(score, label, self.gamma, self.alpha, w, self.hessian_floor)

    def init_margin(self, label, sample_weight=None) -> float:
        """The constant raw score minimising the focal loss (``base_margin`` / ``init_score``)."""
        return binary_init_margin(label, self.gamma, self.alpha, sample_weight)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, alpha={self.alpha}, hessian_floor={self.hessian_floor})"


class SoftmaxFocalObjective:
    """Multi-class softmax focal loss on raw scores (n, K): the exact softmax gradient w.r.t. every
    class and the exact Hessian diagonal, floored at ``hessian_floor``. Use with ``num_class`` = K."""

    _unpack: Unpack

    def __init__(self, gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                 hessian_floor: float = DEFAULT_HESSIAN_FLOOR) -> None:
        self.gamma, _, self.hessian_floor = check_params(gamma, None, hessian_floor)
        self.weight = check_class_weight(weight)

    def __call__(self, a, b, sample_weight=None) -> Tuple[np.ndarray, np.ndarray]:
        score, label, w = type(self)._unpack(a, b, sample_weight)
        score = np.asarray(score, dtype=np.float64)
        n = np.asarray(label).size
        g, h = softmax_grad_hess(class_scores(score, n), label, self.gamma, self.weight, w, self.hessian_floor)
        return g.reshape(score.shape), h.reshape(score.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, hessian_floor={self.hessian_floor})"


def metrics(unpack: Unpack, wrap: Callable[..., Any]):
    """(binary, softmax) metric factories for a library: ``wrap(name, value, native)`` is its return
    form, ``native`` telling the library's own training API (``xgb.train``: a (name, value) pair) from
    its scikit-learn one (``XGBClassifier(eval_metric=...)``: a number)."""

    def focal_metric(gamma: float = 2.0, alpha: Optional[float] = None):
        """The binary focal loss as an evaluation metric (its weighted mean, lower is better) on raw
        scores, in the library's metric form (``feval`` / ``custom_metric`` / ``eval_metric``)."""
        gamma, alpha, _ = check_params(gamma, alpha, 1.0)

        def focal(a, b, sample_weight=None):
            score, label, w = unpack(a, b, sample_weight)
            return wrap("focal", binary_loss(score, label, gamma, alpha, w), score is a)

        return focal

    def softmax_focal_metric(gamma: float = 2.0, weight: Optional[Sequence[float]] = None):
        """The softmax focal loss (``weight``: per-class weights) as an evaluation metric on raw class
        scores, in the library's metric form."""
        gamma, _, _ = check_params(gamma, None, 1.0)
        cw = check_class_weight(weight)

        def softmax_focal(a, b, sample_weight=None):
            score, label, w = unpack(a, b, sample_weight)
            n = np.asarray(label).size
            return wrap("softmax_focal", softmax_loss(class_scores(score, n), label, gamma, cw, w), score is a)

        return softmax_focal

    return focal_metric, softmax_focal_metric


def library_api(unpack: Unpack, wrap: Callable[[str, float], tuple], module: str):
    """The public objects of one library's adapter module, bound to its argument ``unpack``:
    ``(FocalObjective, SoftmaxFocalObjective, focal_objective, softmax_focal_objective, focal_metric,
    softmax_focal_metric)``."""
    binary = type("FocalObjective", (BinaryFocalObjective,),
                  {"__doc__": BinaryFocalObjective.__doc__, "__module__": module, "_unpack": staticmethod(unpack)})
    softmax = type("SoftmaxFocalObjective", (SoftmaxFocalObjective,),
                   {"__doc__": SoftmaxFocalObjective.__doc__, "__module__": module, "_unpack": staticmethod(unpack)})

    def focal_objective(gamma: float = 2.0, alpha: Optional[float] = None,
                        hessian_floor: float = DEFAULT_HESSIAN_FLOOR):
        """Binary focal objective on raw margins. See :class:`FocalObjective` and docs/adapters.md."""
        return binary(gamma, alpha, hessian_floor)

    def softmax_focal_objective(gamma: float = 2.0, weight: Optional[Sequence[float]] = None,
                                hessian_floor: float = DEFAULT_HESSIAN_FLOOR):
        """Multi-class softmax focal objective (``num_class`` = K). See :class:`SoftmaxFocalObjective`."""
        return softmax(gamma, weight, hessian_floor)

    focal_objective.__module__ = softmax_focal_objective.__module__ = module
    focal_metric, softmax_focal_metric = metrics(unpack, wrap)
    return binary, softmax, focal_objective, softmax_focal_objective, focal_metric, softmax_focal_metric
