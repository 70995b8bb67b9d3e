"""Triton kernels (imported only when the Triton backend is used; ``triton`` is imported at the top).

Loss and gradient in one pass over the logits, computed in float32 whatever the storage dtype,
64-bit offsets throughout. The reduction is fused: each program writes one partial sum (never the
per-element loss unless ``reduction="none"``), and the partials are summed by the caller in a
fixed order, so results are deterministic. The gradient scale (1/denominator) is read from device
memory, so no value ever travels to the host.

The maths is :mod:`focalkit.core`'s. Only ``tl.exp`` / ``tl.log`` are used (they run everywhere,
the interpreter included); ``log1p`` is Goldberg's accurate form ``log(u) * x / (u - 1)``.
"""

from __future__ import annotations

import triton
import triton.language as tl

_LN2 = 0.6931471805599453


@triton.jit
def _log1p(x):
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * (x / (u - 1.0)))


@triton.jit
def _expm1(x):
    u = tl.exp(x)
    # Kahan's expm1: exact where exp rounds to 1, -1 and inf at the ends
    mid = tl.where(u - 1.0 == -1.0, -1.0, (u - 1.0) * x / tl.log(u))
    return tl.where(u == 1.0, x, tl.where(u == float("inf"), u, mid))


@triton.jit
def sigmoid_focal_kernel(x_ptr, y_ptr, w_ptr, apos_ptr, aneg_ptr, pw_ptr, scale_ptr, grad_ptr, loss_ptr,
                         n, C, gamma,
                         FORM: tl.constexpr, HAS_W: tl.constexpr, HAS_ALPHA: tl.constexpr, STORE: tl.constexpr,
                         G0: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = offs < n
    col = offs % C
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    ap = tl.load(apos_ptr + col, mask=mask, other=1.0)
    an = tl.load(aneg_ptr + col, mask=mask, other=1.0)
    pw = tl.load(pw_ptr + col, mask=mask, other=1.0)
    scale = tl.load(scale_ptr)
    # log-sigmoids from one softplus term; sigmoid(x), sigmoid(-x) from the same exp(-|x|)
    e = tl.exp(-tl.abs(x))
    sp = _log1p(e)
    lp = tl.minimum(x, 0.0) - sp
    ln = tl.minimum(-x, 0.0) - sp
    r = 1.0 / (1.0 + e)
    p = tl.where(x < 0, e * r, r)
    q = tl.where(x < 0, r, e * r)
    if FORM != 0:
        # alpha_t u^g BCE_pw, each soft form its own log u and sr = d log u / dx (below)
        pwy = pw * y
        bce = -(pwy * lp + (1.0 - y) * ln)
        dbce = (1.0 - y) * p - pwy * q  # no p - 1 cancellation where y = 1
        if G0:
            loss = bce
            grad = dbce
        else:
            if FORM == 1:  # "pt": log u = log(1 - p_t) = logaddexp(log(1-y) + lp, log(y) + ln)
                a = tl.log(1.0 - y) + lp
                b = tl.log(y) + ln
                hi = tl.maximum(a, b)
                lo = tl.minimum(a, b)
                log_u = tl.where(hi == -float("inf"), hi, hi + _log1p(tl.exp(lo - hi)))
                sr = (1.0 - 2.0 * y) * tl.exp(lp + ln - log_u)
            elif FORM == 2:  # "signed": log u = logsigmoid((1-2y) x)
                v = (1.0 - 2.0 * y) * x
                ev = tl.exp(-tl.abs(v))
                log_u = tl.minimum(v, 0.0) - _log1p(ev)
                rv = 1.0 / (1.0 + ev)
                sr = (1.0 - 2.0 * y) * tl.where(v < 0, rv, ev * rv)  # (1-2y) sigmoid(-v)
            elif FORM == 4:
                # "quality": log u = log|p - y|, d log u / dx = p q / (p - y), 0 at p = y
                d = tl.where(p > 0.5, (1.0 - y) - q, p - y)
                ad = tl.abs(d)
                log_u = tl.where(y == 1.0, ln, tl.where(y == 0.0, lp, tl.log(ad)))
                sr = tl.where(ad > 0, p * q / tl.where(ad > 0, d, 1.0), 0.0)
            else:
                # "bce": log u = log(1 - exp(-B0)), d log u / dx = B0' / expm1(B0), B0 the BCE without
                # pos_weight; B0 = 0 gives u = 0
                b0 = -(y * lp + (1.0 - y) * ln)
                bs = tl.where(b0 > 0, b0, 1.0)
                lu = tl.where(bs > 0.6931471805599453, _log1p(-tl.exp(-bs)), tl.log(-_expm1(-bs)))
                log_u = tl.where(b0 > 0, lu, -float("inf"))
                sr = tl.where(b0 > 0, ((1.0 - y) * p - y * q) / _expm1(bs), 0.0)
            m = tl.exp(gamma * log_u)
            loss = m * bce
            grad = m * (dbce + gamma * sr * bce)
        if HAS_ALPHA:
            a_t = y * ap + (1.0 - y) * an
            loss = a_t * loss
            grad = a_t * grad
    else:
        # linear form: y FL(x, 1) + (1 - y) FL(x, 0)
        wp = y * pw * ap
        wn = (1.0 - y) * an
        if G0:
            mp = 1.0
            mn = 1.0
        else:
            mp = tl.exp(gamma * ln)
            mn = tl.exp(gamma * lp)
        loss = -(wp * mp * lp + wn * mn * ln)
        grad = wn * mn * (p - gamma * q * ln) - wp * mp * (q - gamma * p * lp)
    if HAS_W:
        w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        loss = loss * w
        grad = grad * w
    tl.store(grad_ptr + offs, (grad * scale).to(grad_ptr.dtype.element_ty), mask=mask)
    if STORE:
        tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(loss_ptr + pid, tl.sum(tl.where(mask, loss, 0.0), axis=0))


@triton.jit
def _dense_terms(zk, k, mask, a, m, ls, s_rest, s, coef, gamma, G0: tl.constexpr):
    """Per class: (loss term, c_k K_k, p_k); the arg-max class ``a`` exactly (only it can have p > 1/2)."""
    lp = zk - m - ls
    is_a = k == a
    u_a = s_rest / s
    lp = tl.where(is_a & (lp > -_LN2), _log1p(-u_a), lp)
    p = tl.exp(lp)
    u = tl.where(is_a, u_a, 1.0 - p)
    l1m = tl.where(is_a, tl.log(s_rest) - ls, _log1p(-p))
    psi = tl.where(u > 0, -p * lp / tl.where(u > 0, u, 1.0), 0.0)
    if G0:
        mod = 1.0
    else:
        mod = tl.exp(gamma * l1m)
    term = tl.where(mask, coef * mod * -lp, 0.0)
    ck = tl.where(mask, coef * mod * (1.0 + gamma * psi), 0.0)
    return term, ck, p


@triton.jit
def _dense_chunk(z_ptr, q_ptr, w_ptr, base, k, mask, S, C, ysafe, wy, eps, a, m, ls, s_rest, s, gamma,
                 HAS_Q: tl.constexpr, HAS_W: tl.constexpr, G0: tl.constexpr):
    """Classes ``k`` of one position: the coefficients c_k = w_k q_k (smoothed), then ``_dense_terms``."""
    zk = tl.load(z_ptr + base + k * S, mask=mask, other=0.0).to(tl.float32)
    wk = 1.0
    if HAS_W:
        wk = tl.load(w_ptr + k, mask=mask, other=0.0).to(tl.float32)
    if HAS_Q:
        qk = tl.load(q_ptr + base + k * S, mask=mask, other=0.0).to(tl.float32)
        coef = wk * ((1.0 - eps) * qk + eps / C)
    else:
        coef = wk * eps / C + tl.where(k == ysafe, (1.0 - eps) * wy, 0.0)
    return _dense_terms(zk, k, mask, a, m, ls, s_rest, s, coef, gamma, G0)


@triton.jit
def softmax_focal_kernel(z_ptr, y_ptr, q_ptr, w_ptr, scale_ptr, grad_ptr, loss_ptr,
                         C, S, ignore, eps, gamma,
                         HAS_Q: tl.constexpr, HAS_W: tl.constexpr, DENSE: tl.constexpr, G0: tl.constexpr,
                         BLOCK_C: tl.constexpr):
    """One program per position (n, s); class k of it sits at n*C*S + k*S + s."""
    row = tl.program_id(0).to(tl.int64)
    base = (row // S) * C * S + row % S
    scale = tl.load(scale_ptr)
    ar = tl.arange(0, BLOCK_C).to(tl.int64)
    if HAS_Q:
        valid = row >= 0  # a tensor (always true), so that tl.where compiles the same on a GPU
        ysafe = tl.zeros((), tl.int64)
    else:
        yy = tl.load(y_ptr + row)
        valid = yy != ignore
        # an index outside [0, C) reads nothing: the position's loss and gradient become NaN (the host
        # cannot be told without a synchronisation; the losses' own checks raise where they can read)
        bad = valid & ((yy < 0) | (yy >= C))
        ysafe = tl.where(valid & (bad == 0), yy, 0)
    # pass 1: max and arg-max
    m = -float("inf")
    a = tl.zeros((), tl.int64)
    for c0 in range(0, C, BLOCK_C):
        k = c0 + ar
        zk = tl.load(z_ptr + base + k * S, mask=k < C, other=-float("inf")).to(tl.float32)
        bm = tl.max(zk, axis=0)
        ba = tl.argmax(zk, axis=0).to(tl.int64) + c0
        a = tl.where(bm > m, ba, a)
        m = tl.maximum(m, bm)
    excl = a if DENSE else ysafe
    # pass 2: the sum of exponentials, and the same without the excluded class (no 1 - p cancellation)
    s = 0.0
    s_rest = 0.0
    for c0 in range(0, C, BLOCK_C):
        k = c0 + ar
        zk = tl.load(z_ptr + base + k * S, mask=k < C, other=-float("inf")).to(tl.float32)
        e = tl.where(k < C, tl.exp(zk - m), 0.0)
        s += tl.sum(e, axis=0)
        s_rest += tl.sum(tl.where(k != excl, e, 0.0), axis=0)
    ls = tl.log(s)
    if DENSE:
        wy = 1.0
        if HAS_W:
            wy = tl.load(w_ptr + ysafe).to(tl.float32)
        S_acc = 0.0
        loss = 0.0
        for c0 in range(0, C, BLOCK_C):
            k = c0 + ar
            mask = k < C
            term, ck, p = _dense_chunk(z_ptr, q_ptr, w_ptr, base, k, mask, S, C, ysafe, wy, eps, a, m, ls, s_rest, s,
                                       gamma, HAS_Q, HAS_W, G0)
            loss += tl.sum(term, axis=0)
            S_acc += tl.sum(ck, axis=0)
        for c0 in range(0, C, BLOCK_C):
            k = c0 + ar
            mask = k < C
            term, ck, p = _dense_chunk(z_ptr, q_ptr, w_ptr, base, k, mask, S, C, ysafe, wy, eps, a, m, ls, s_rest, s,
                                       gamma, HAS_Q, HAS_W, G0)
            g = tl.where(valid, (p * S_acc - ck) * scale, 0.0)
            if not HAS_Q:
                g = tl.where(bad, float("nan"), g)
            tl.store(grad_ptr + base + k * S, g.to(grad_ptr.dtype.element_ty), mask=mask)
        loss = tl.where(valid, loss, 0.0)
        if not HAS_Q:
            loss = tl.where(bad, float("nan"), loss)
    else:
        zy = tl.load(z_ptr + base + ysafe * S).to(tl.float32)
        logp = zy - m - ls
        u = s_rest / s
        logp = tl.where(logp > -_LN2, _log1p(-u), logp)
        psi = tl.where(u > 0, -tl.exp(logp) * logp / tl.where(u > 0, u, 1.0), 0.0)
        if G0:
            mod = 1.0
        else:
            mod = tl.exp(gamma * (tl.log(s_rest) - ls))
        c = 1.0
        if HAS_W:
            c = tl.load(w_ptr + ysafe).to(tl.float32)
        ck = c * mod * (1.0 + gamma * psi)
        loss = tl.where(valid, c * mod * -logp, 0.0)
        f = ck * scale / s
        for c0 in range(0, C, BLOCK_C):
            k = c0 + ar
            mask = k < C
            zk = tl.load(z_ptr + base + k * S, mask=mask, other=0.0).to(tl.float32)
            g = tl.where(k == ysafe, -ck * u * scale, tl.exp(zk - m) * f)
            g = tl.where(valid, g, 0.0)
            g = tl.where(bad, float("nan"), g)
            tl.store(grad_ptr + base + k * S, g.to(grad_ptr.dtype.element_ty), mask=mask)
        loss = tl.where(bad, float("nan"), loss)
    tl.store(loss_ptr + row, loss)
