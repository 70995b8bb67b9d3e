"""Softmax focal loss over (N, C, S) logits (S = 1 for 2-D), class k of position (n, s) at
n*C*S + k*S + s. A program takes a tile of positions x classes:

* ``SPATIAL=False`` (S = 1): ``BLOCK_P`` consecutive rows, their classes contiguous;
* ``SPATIAL=True`` (S > 1, dense prediction): ``BLOCK_P`` consecutive positions of one image, so that
  every class's loads run along contiguous memory (coalesced; no transpose).

``ONE_TILE`` (C <= BLOCK_C): the tile is loaded once and everything is computed from registers, in
the forward and again in the backward (which recomputes rather than read a stored gradient).
Otherwise the classes are walked in chunks of ``BLOCK_C``: the forward keeps each position's
statistics (a few floats per position, next to C logits) for a backward that reads the logits once.
``BLOCK_C = 1`` is the loop over few classes (2-D rows of at most 32 classes, a count not a multiple of
16): one row per thread, no warp shuffle per row; there the backward recomputes the statistics instead
(3 to 5 floats per row would add up to 2.5x the logits of a few classes to the peak memory).

``DENSE``: probability targets (``HAS_Q``) or label smoothing, where every class has a target
weight; else class indices. An index outside [0, C) (not ``ignore``) makes its position's loss and
gradient NaN: the kernel never reads outside a tensor, and the host is never asked to synchronise.
The maths is :mod:`focalkit.core.softmax`'s; 0.693... is log 2 (literals: compiled Triton reads no
plain module global).
"""

from __future__ import annotations

import triton
import triton.language as tl

from focalkit.backends._triton.common import log1p, reduce_finish


@triton.jit
def _positions(P, S, C, SPATIAL: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's positions: their index in the (N*S,) targets and losses, the offset of their
    class 0, the class stride, the mask, and this program's index among all."""
    if SPATIAL:
        n = tl.program_id(1).to(tl.int64)
        s = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        pm = s < S
        pos = n * S + s
        base = n * C * S + s
        prog = tl.program_id(1).to(tl.int64) * tl.num_programs(0) + tl.program_id(0)
        cs = S
    else:
        pos = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        pm = pos < P
        base = pos * C
        prog = tl.program_id(0).to(tl.int64)
        cs = 1
    return pos, base, cs, pm, prog


@triton.jit
def _targets(y_ptr, w_ptr, pos, pm, C, ignore, has_w, HAS_Q: tl.constexpr):
    """(valid, bad, y clamped into range, the target class's weight)."""
    if HAS_Q:
        valid = pm
        bad = pm & (pos < 0)
        ysafe = tl.zeros_like(pos)
    else:
        yy = tl.load(y_ptr + pos, mask=pm, other=ignore)
        valid = pm & (yy != ignore)
        bad = valid & ((yy < 0) | (yy >= C))
        ysafe = tl.where(valid & (bad == 0), yy, 0)
    wy = tl.where(valid, 1.0, 0.0)
    if has_w != 0:
        wy = tl.load(w_ptr + ysafe, mask=valid, other=0.0).to(tl.float32)
    return valid, bad, ysafe, wy


@triton.jit
def _hard_row(zy, m, s, s_rest, wy, gamma):
    """Class-index terms of each position from (z_y, max, sum of exp, the sum without y):
    (loss, c_y K_y = ck, u = 1 - p_y)."""
    ls = tl.log(s)
    logp = zy - m - ls
    u = s_rest / s
    logp = tl.where(logp > -0.6931471805599453, log1p(-u), logp)
    psi = tl.where(u > 0, -tl.exp(logp) * logp / tl.where(u > 0, u, 1.0), 0.0)
    mod = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * (tl.log(s_rest) - ls)))
    ck = wy * mod * (1.0 + gamma * psi)
    return wy * mod * -logp, ck, u


@triton.jit
def _dense_terms(z, is_a, mask, m, ls, s_rest, s, coef, gamma):
    """Per class: (loss term, c_k K_k, p_k); the arg-max class exactly (only it can have p > 1/2).
    Every per-position argument is a (BLOCK_P, 1) column."""
    lp = z - m - ls
    u_a = s_rest / s
    lp = tl.where(is_a & (lp > -0.6931471805599453), log1p(-u_a), lp)
    p = tl.exp(lp)
    u = tl.where(is_a, u_a, 1.0 - p)
    l1m = tl.where(is_a, tl.log(s_rest) - ls, log1p(-p))
    psi = tl.where(u > 0, -p * lp / tl.where(u > 0, u, 1.0), 0.0)
    mod = tl.where(gamma == 0.0, 1.0, tl.exp(gamma * l1m))
    term = tl.where(mask, coef * mod * -lp, 0.0)
    ck = tl.where(mask, coef * mod * (1.0 + gamma * psi), 0.0)
    return term, ck, p


@triton.jit
def _coef(q_ptr, w_ptr, offs, k, mask, ysafe, wy, valid, C, eps, has_w, HAS_Q: tl.constexpr):
    """The target weight of each class: w_k ((1 - eps) q_k + eps / C), or for an index y
    w_k eps / C + (1 - eps) w_y [k = y]; 0 at positions not valid."""
    wk = tl.full(k.shape, 1.0, tl.float32)
    if has_w != 0:
        wk = tl.load(w_ptr + k, mask=k < C, other=0.0).to(tl.float32)
    if HAS_Q:
        qk = tl.load(q_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        coef = wk * ((1.0 - eps) * qk + eps / C)
    else:
        coef = wk * eps / C + tl.where(k == ysafe[:, None], (1.0 - eps) * wy[:, None], 0.0)
    return tl.where(mask & valid[:, None], coef, 0.0)


@triton.jit
def _tile(z_ptr, y_ptr, q_ptr, w_ptr, P, C, S, ignore, eps, gamma, has_w,
          SPATIAL: tl.constexpr, DENSE: tl.constexpr, HAS_Q: tl.constexpr, BLOCK_P: tl.constexpr,
          BLOCK_C: tl.constexpr):
    """ONE_TILE: load the tile once; return (positions, mask, program, loss, counted weight, valid, bad,
    offsets, mask2d, gradient before scaling)."""
    pos, base, cs, pm, prog = _positions(P, S, C, SPATIAL, BLOCK_P)
    valid, bad, ysafe, wy = _targets(y_ptr, w_ptr, pos, pm, C, ignore, has_w, HAS_Q)
    k = tl.arange(0, BLOCK_C)
    offs = base[:, None] + k[None, :] * cs
    mask = pm[:, None] & (k < C)[None, :]
    z = tl.load(z_ptr + offs, mask=mask, other=-float("inf")).to(tl.float32)
    m = tl.max(z, axis=1)
    m = tl.where(pm, m, 0.0)
    e = tl.exp(z - m[:, None])
    s = tl.sum(e, axis=1)
    if DENSE:
        a = tl.argmax(z, axis=1)
        is_a = k[None, :] == a[:, None]
        s_rest = tl.sum(tl.where(is_a, 0.0, e), axis=1)
        coef = _coef(q_ptr, w_ptr, offs, k[None, :], mask, ysafe, wy, valid, C, eps, has_w, HAS_Q)
        term, ck, p = _dense_terms(z, is_a, mask, m[:, None], tl.log(s)[:, None], s_rest[:, None], s[:, None],
                                   coef, gamma)
        loss = tl.sum(term, axis=1)
        grad = p * tl.sum(ck, axis=1)[:, None] - ck
    else:
        is_y = k[None, :] == ysafe[:, None]
        s_rest = tl.sum(tl.where(is_y, 0.0, e), axis=1)
        zy = tl.sum(tl.where(is_y & mask, z, 0.0), axis=1)
        loss, ck, u = _hard_row(zy, m, s, s_rest, wy, gamma)
        grad = tl.where(is_y, -(ck * u)[:, None], e * (ck / s)[:, None])
    loss = tl.where(valid, loss, 0.0)
    return pos, pm, prog, loss, wy, valid, bad, offs, mask, grad


@triton.jit
def _chunk(z_ptr, base, cs, c0, ar, pm, C, other):
    """Classes ``c0 + ar`` of this program's positions: (class indices, mask, offsets, logits in float32)."""
    k = c0 + ar
    mask = pm[:, None] & (k < C)[None, :]
    offs = base[:, None] + k[None, :] * cs
    return k, mask, offs, tl.load(z_ptr + offs, mask=mask, other=other).to(tl.float32)


@triton.jit
def _chunked_stats(z_ptr, y_ptr, q_ptr, w_ptr, P, C, S, ignore, eps, gamma, has_w,
                   SPATIAL: tl.constexpr, DENSE: tl.constexpr, HAS_Q: tl.constexpr, BLOCK_P: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    """Classes in chunks. Returns (positions, mask, program, loss, counted weight, valid, bad, and the
    statistics the backward needs: class index: max, ck / s, ck u; dense: m, log s, s_rest / s... as five
    columns st0..st4)."""
    pos, base, cs, pm, prog = _positions(P, S, C, SPATIAL, BLOCK_P)
    valid, bad, ysafe, wy = _targets(y_ptr, w_ptr, pos, pm, C, ignore, has_w, HAS_Q)
    loss, st = _walk(z_ptr, q_ptr, w_ptr, base, cs, pm, ysafe, wy, valid, C, eps, gamma, has_w, DENSE, HAS_Q,
                     BLOCK_P, BLOCK_C)
    return pos, pm, prog, loss, wy, valid, bad, st


@triton.jit
def _walk(z_ptr, q_ptr, w_ptr, base, cs, pm, ysafe, wy, valid, C, eps, gamma, has_w, DENSE: tl.constexpr,
          HAS_Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """The classes of the positions at ``base`` in chunks of ``BLOCK_C``: (loss, statistics)."""
    ar = tl.arange(0, BLOCK_C)
    if DENSE:
        # pass 1: max and arg-max; pass 2: sums with and without the arg-max; pass 3: the terms
        m = tl.full([BLOCK_P], -float("inf"), tl.float32)
        a = tl.zeros([BLOCK_P], tl.int64)
        for c0 in range(0, C, BLOCK_C):
            k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, -float("inf"))
            bm = tl.max(z, axis=1)
            ba = tl.argmax(z, axis=1).to(tl.int64) + c0
            a = tl.where(bm > m, ba, a)
            m = tl.maximum(m, bm)
        m = tl.where(pm, m, 0.0)
        s = tl.zeros([BLOCK_P], tl.float32)
        s_rest = tl.zeros([BLOCK_P], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, -float("inf"))
            e = tl.exp(z - m[:, None])
            s += tl.sum(e, axis=1)
            s_rest += tl.sum(tl.where(k[None, :] == a[:, None], 0.0, e), axis=1)
        ls = tl.log(s)
        loss = tl.zeros([BLOCK_P], tl.float32)
        S_acc = tl.zeros([BLOCK_P], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, -float("inf"))
            coef = _coef(q_ptr, w_ptr, offs, k[None, :], mask, ysafe, wy, valid, C, eps, has_w, HAS_Q)
            term, ck, p = _dense_terms(z, k[None, :] == a[:, None], mask, m[:, None], ls[:, None], s_rest[:, None],
                                       s[:, None], coef, gamma)
            loss += tl.sum(term, axis=1)
            S_acc += tl.sum(ck, axis=1)
        st = (m, s, s_rest, a.to(tl.float32), S_acc)
    else:
        # one online pass: running max, sum of exp and the sum without the target class
        m = tl.full([BLOCK_P], -float("inf"), tl.float32)
        s = tl.zeros([BLOCK_P], tl.float32)
        s_rest = tl.zeros([BLOCK_P], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, -float("inf"))
            mn = tl.maximum(m, tl.max(z, axis=1))
            mn = tl.where(mn == -float("inf"), 0.0, mn)
            r = tl.exp(m - mn)
            e = tl.exp(z - mn[:, None])
            s = s * r + tl.sum(e, axis=1)
            s_rest = s_rest * r + tl.sum(tl.where(k[None, :] == ysafe[:, None], 0.0, e), axis=1)
            m = mn
        zy = tl.load(z_ptr + base + ysafe * cs, mask=pm, other=0.0).to(tl.float32)
        loss, ck, u = _hard_row(zy, m, s, s_rest, wy, gamma)
        # max and c_y K_y / s, not the log-sum-exp: exp(z - lse) would carry lse's rounding (an ulp
        # of the largest logit: 2e-6 relative at z ~ 30) into every gradient
        st = (m, ck / s, ck * u, m, m)
    return tl.where(valid, loss, 0.0), st


@triton.jit
def _scaled(g, f, valid, bad):
    """The gradient times each position's factor: exactly 0 where ignored (NaN logits included), NaN
    at a bad class index."""
    g = tl.where(valid[:, None], g * f[:, None], 0.0)
    return tl.where(bad[:, None], float("nan"), g)


@triton.jit(do_not_specialize=["P", "S", "ignore", "has_w", "store", "den_mode"])
def softmax_fwd_kernel(z_ptr, y_ptr, q_ptr, w_ptr, loss_ptr, part_ptr, cnt_ptr, inv_ptr, st_ptr, den_ptr, scr_ptr, P, C,
                       S,
                       ignore, eps, gamma, has_w, store, den_mode, den_value, SPATIAL: tl.constexpr,
                       ONE_TILE: tl.constexpr, DENSE: tl.constexpr, HAS_Q: tl.constexpr, BLOCK_P: tl.constexpr,
                       BLOCK_C: tl.constexpr, LAST: tl.constexpr):
    """``store``: each position's loss (``reduction="none"``) in the loss dtype, and 1 at ``inv_ptr``;
    else (``den_mode`` -1) per program one partial sum of the loss and one of the counted weight
    (float32), for ``finish_kernel``, or (``den_mode`` >= 0) the reduced loss at ``part_ptr`` and
    1 / denominator at ``inv_ptr`` (``common.reduce_finish``: one program, or the last of several). Not
    ONE_TILE: the statistics go to ``st_ptr`` (5 rows of P)."""
    if ONE_TILE:
        pos, pm, prog, loss, wy, valid, bad, offs, mask, grad = _tile(
            z_ptr, y_ptr, q_ptr, w_ptr, P, C, S, ignore, eps, gamma, has_w, SPATIAL, DENSE, HAS_Q, BLOCK_P, BLOCK_C)
    else:
        pos, pm, prog, loss, wy, valid, bad, st = _chunked_stats(
            z_ptr, y_ptr, q_ptr, w_ptr, P, C, S, ignore, eps, gamma, has_w, SPATIAL, DENSE, HAS_Q, BLOCK_P, BLOCK_C)
        if BLOCK_C > 1:  # the loop over few classes (BLOCK_C = 1) recomputes them in the backward
            tl.store(st_ptr + pos, st[0], mask=pm)
            tl.store(st_ptr + P + pos, st[1], mask=pm)
            tl.store(st_ptr + 2 * P + pos, st[2], mask=pm)
            if DENSE:
                tl.store(st_ptr + 3 * P + pos, st[3], mask=pm)
                tl.store(st_ptr + 4 * P + pos, st[4], mask=pm)
    loss = tl.where(bad, float("nan"), loss)
    if store != 0:
        tl.store(loss_ptr + pos, loss.to(loss_ptr.dtype.element_ty), mask=pm)
        if prog == 0:
            tl.store(inv_ptr, 1.0)
    elif den_mode < 0:
        tl.store(part_ptr + prog, tl.sum(tl.where(pm, loss, 0.0), axis=0))
        tl.store(cnt_ptr + prog, tl.sum(tl.where(valid, wy, 0.0), axis=0))
    else:
        nprog = tl.num_programs(0) * tl.num_programs(1)
        reduce_finish(tl.sum(tl.where(pm, loss, 0.0), axis=0), tl.sum(tl.where(valid, wy, 0.0), axis=0), prog, nprog,
                      part_ptr, scr_ptr, den_ptr, den_value, den_mode, inv_ptr, LAST)


@triton.jit(do_not_specialize=["P", "S", "ignore", "has_w", "go_mode"])
def softmax_bwd_kernel(z_ptr, y_ptr, q_ptr, w_ptr, go_ptr, inv_ptr, st_ptr, grad_ptr, P, C, S, ignore, eps, gamma,
                       has_w, go_mode, SPATIAL: tl.constexpr, ONE_TILE: tl.constexpr, DENSE: tl.constexpr,
                       HAS_Q: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """The gradient times ``inv_ptr[0]`` and ``grad_output`` (``go_mode`` 0 none, 1 one value, 2 one
    per position), stored in the logits' dtype; 0 at ignored positions, NaN at bad indices."""
    scale = tl.load(inv_ptr).to(tl.float32)
    if go_mode == 1:
        scale = scale * tl.load(go_ptr).to(tl.float32)
    if ONE_TILE:
        pos, pm, prog, loss, wy, valid, bad, offs, mask, grad = _tile(
            z_ptr, y_ptr, q_ptr, w_ptr, P, C, S, ignore, eps, gamma, has_w, SPATIAL, DENSE, HAS_Q, BLOCK_P, BLOCK_C)
        f = tl.full(pos.shape, 1.0, tl.float32) * scale
        if go_mode == 2:
            f = f * tl.load(go_ptr + pos, mask=pm, other=0.0).to(tl.float32)
        tl.store(grad_ptr + offs, _scaled(grad, f, valid, bad).to(grad_ptr.dtype.element_ty), mask=mask)
    else:
        pos, base, cs, pm, prog = _positions(P, S, C, SPATIAL, BLOCK_P)
        valid, bad, ysafe, wy = _targets(y_ptr, w_ptr, pos, pm, C, ignore, has_w, HAS_Q)
        f = tl.full(pos.shape, 1.0, tl.float32) * scale
        if go_mode == 2:
            f = f * tl.load(go_ptr + pos, mask=pm, other=0.0).to(tl.float32)
        if BLOCK_C == 1:
            st = _walk(z_ptr, q_ptr, w_ptr, base, cs, pm, ysafe, wy, valid, C, eps, gamma, has_w, DENSE, HAS_Q,
                       BLOCK_P, BLOCK_C)[1]
            st0, st1, st2, st3, S_acc = st
        else:
            st0 = tl.load(st_ptr + pos, mask=pm, other=0.0)
            st1 = tl.load(st_ptr + P + pos, mask=pm, other=0.0)
            st2 = tl.load(st_ptr + 2 * P + pos, mask=pm, other=0.0)
            st3 = st0
            S_acc = st0
            if DENSE:
                st3 = tl.load(st_ptr + 3 * P + pos, mask=pm, other=0.0)
                S_acc = tl.load(st_ptr + 4 * P + pos, mask=pm, other=0.0)
        ar = tl.arange(0, BLOCK_C)
        if DENSE:
            ls = tl.log(st1)  # as the forward computed it from the same s
            a = st3.to(tl.int64)
            for c0 in range(0, C, BLOCK_C):
                k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, -float("inf"))
                coef = _coef(q_ptr, w_ptr, offs, k[None, :], mask, ysafe, wy, valid, C, eps, has_w, HAS_Q)
                term, ck, p = _dense_terms(z, k[None, :] == a[:, None], mask, st0[:, None], ls[:, None],
                                           st2[:, None], st1[:, None], coef, gamma)
                g = _scaled(p * S_acc[:, None] - ck, f, valid, bad)
                tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=mask)
        else:
            for c0 in range(0, C, BLOCK_C):
                k, mask, offs, z = _chunk(z_ptr, base, cs, c0, ar, pm, C, 0.0)
                g = tl.where(k[None, :] == ysafe[:, None], -st2[:, None], tl.exp(z - st0[:, None]) * st1[:, None])
                g = _scaled(g, f, valid, bad)
                tl.store(grad_ptr + offs, g.to(grad_ptr.dtype.element_ty), mask=mask)
