"""Sigmoid focal loss (every soft form): a forward kernel (the loss, or its per-program partial sums)
and a backward kernel (the gradient, times ``grad_output`` and ``1 / denominator``, stored once in
the logits' dtype). Both compute the same element function, :func:`_terms`, in float32 with 64-bit
offsets, over a persistent grid (each program strides through the tensor).

The backward recomputes from the logits instead of storing a gradient in the forward pass: the bytes
are the same for the sigmoid family (forward: x, y; backward: x, y, gradient), no second
gradient-sized buffer ever exists, and ``retain_graph``, a loss used twice and any ``grad_output``
(``GradScaler``) need nothing special. The maths is :mod:`focalkit.core.sigmoid`'s.

Runtime arguments: ``cls``: 1 when ``cls_ptr`` holds a (3, C) float32 table (alpha of positives,
alpha of negatives, pos_weight; column stride ``cls_cs``, 0 for one value), else the float
``apos`` / ``aneg`` apply (1 and 1 without alpha); ``w_mode``: 0 no weight, 1 an elementwise
weight laid out like the logits, 2 a broadcast one at ``(i // C) * w_rs + (i % C) * w_cs``;
``sparse``: 1 when ``y_ptr`` holds int64 class indices of shape (rows,), C meaning background;
``go_mode`` (backward): 0 no ``grad_output`` (the gradient itself, for ``inplace_grad``), 1 one
value, 2 one per element.
"""

from __future__ import annotations

import triton
import triton.language as tl

from focalkit.backends._triton.common import expm1, log1p, reduce_finish


@triton.jit
def _terms(x, y, apos, aneg, pw, gamma, FORM: tl.constexpr):
    """(loss, d loss / dx) of each element, before ``weight``."""
    # log-sigmoids from one softplus term; sigmoid(x), sigmoid(-x) from the same exp(-|x|)
    e = tl.exp(-tl.abs(x))
    sp = log1p(e)
    lp = tl.minimum(x, 0.0) - sp
    ln = tl.minimum(-x, 0.0) - sp
    r = 1.0 / (1.0 + e)
    p = tl.where(x < 0, e * r, r)
    q = tl.where(x < 0, r, e * r)
    g0 = gamma == 0.0
    if FORM == 0:
        # linear form: y FL(x, 1) + (1 - y) FL(x, 0)
        wp = y * pw * apos
        wn = (1.0 - y) * aneg
        mp = tl.where(g0, 1.0, tl.exp(gamma * ln))
        mn = tl.where(g0, 1.0, tl.exp(gamma * lp))
        loss = -(wp * mp * lp + wn * mn * ln)
        grad = wn * mn * (p - gamma * q * ln) - wp * mp * (q - gamma * p * lp)
    else:
        # alpha_t u^g BCE_pw, each soft form its own log u and sr = d log u / dx (below)
        pwy = pw * y
        bce = -(pwy * lp + (1.0 - y) * ln)
        dbce = (1.0 - y) * p - pwy * q  # no p - 1 cancellation where y = 1
        # At 0/1 targets every form is u = 1 - p_t: log u = logsigmoid(-x_t), sr = -p or q, with no
        # further log or exp. A block whose targets are all 0/1 (detection, segmentation) takes that
        # branch (uniform across the block); a block with any soft target the form's own below.
        if tl.sum(((y != 0.0) & (y != 1.0)).to(tl.int32), axis=0) == 0:
            log_u = tl.where(y == 1.0, ln, lp)
            sr = tl.where(y == 1.0, -p, q)
        elif FORM == 1:  # "pt": log u = log(1 - p_t) = logaddexp(log(1-y) + lp, log(y) + ln)
            a = tl.log(1.0 - y) + lp
            b = tl.log(y) + ln
            hi = tl.maximum(a, b)
            lo = tl.minimum(a, b)
            log_u = tl.where(hi == -float("inf"), hi, hi + log1p(tl.exp(lo - hi)))
            sr = (1.0 - 2.0 * y) * tl.exp(lp + ln - log_u)
        elif FORM == 2:  # "signed": log u = logsigmoid((1-2y) x)
            v = (1.0 - 2.0 * y) * x
            ev = tl.exp(-tl.abs(v))
            log_u = tl.minimum(v, 0.0) - log1p(ev)
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
            # pos_weight; B0 = 0 gives u = 0. 0.693... is log 2 (a literal: compiled Triton reads no
            # plain module global)
            b0 = -(y * lp + (1.0 - y) * ln)
            bs = tl.where(b0 > 0, b0, 1.0)
            lu = tl.where(bs > 0.6931471805599453, log1p(-tl.exp(-bs)), tl.log(-expm1(-bs)))
            log_u = tl.where(b0 > 0, lu, -float("inf"))
            sr = tl.where(b0 > 0, ((1.0 - y) * p - y * q) / expm1(bs), 0.0)
        m = tl.where(g0, 1.0, tl.exp(gamma * log_u))
        a_t = y * apos + (1.0 - y) * aneg
        loss = a_t * (m * bce)
        grad = a_t * (m * (dbce + tl.where(g0, 0.0, gamma * sr * bce)))
    return loss, grad


@triton.jit
def _element(x_ptr, y_ptr, cls_ptr, w_ptr, offs, mask, C, cls, cls_cs, apos, aneg, w_mode, w_rs, w_cs, sparse,
             gamma, FORM: tl.constexpr, BLOCK: tl.constexpr):
    """Load one block and return its (loss, gradient), weighted. ``sparse``: ``y_ptr`` holds one class
    index per row (C = background, no one-hot tensor); an index outside [0, C] gives NaN."""
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    col = offs
    if (cls != 0) | (w_mode == 2) | (sparse != 0):
        col = offs % C
    bad = offs < 0
    if sparse != 0:
        lab = tl.load(y_ptr + offs // C, mask=mask, other=0).to(tl.int64)
        bad = mask & ((lab < 0) | (lab > C))
        y = tl.where(col == lab, 1.0, 0.0)
    else:
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    ap = tl.full([BLOCK], 1.0, tl.float32) * apos
    an = tl.full([BLOCK], 1.0, tl.float32) * aneg
    pw = tl.full([BLOCK], 1.0, tl.float32)
    if cls != 0:
        ci = col * cls_cs
        ap = tl.load(cls_ptr + ci, mask=mask, other=1.0)
        an = tl.load(cls_ptr + C + ci, mask=mask, other=1.0)
        pw = tl.load(cls_ptr + 2 * C + ci, mask=mask, other=1.0)
    loss, grad = _terms(x, y, ap, an, pw, gamma, FORM)
    if w_mode != 0:
        wi = offs
        if w_mode == 2:
            wi = (offs // C) * w_rs + col * w_cs
        w = tl.load(w_ptr + wi, mask=mask, other=0.0).to(tl.float32)
        loss = loss * w
        grad = grad * w
    loss = tl.where(bad, float("nan"), loss)
    grad = tl.where(bad, float("nan"), grad)
    return loss, grad


@triton.jit(do_not_specialize=["C", "cls", "cls_cs", "w_mode", "w_rs", "w_cs", "sparse", "store", "den_mode"])
def sigmoid_fwd_kernel(x_ptr, y_ptr, cls_ptr, w_ptr, loss_ptr, part_ptr, inv_ptr, den_ptr, scr_ptr, n, C, cls, cls_cs,
                       apos, aneg, w_mode, w_rs, w_cs, sparse, store, den_mode, gamma, den_value, FORM: tl.constexpr,
                       BLOCK: tl.constexpr, LAST: tl.constexpr):
    """``store``: each element's loss (``reduction="none"``), and 1 at ``inv_ptr``; else, with ``den_mode``
    -1, one partial sum per program at ``part_ptr[program]`` (float32), finished by ``finish_kernel``; with
    ``den_mode`` >= 0 the reduced loss itself at ``part_ptr`` and 1 / denominator at ``inv_ptr``, from one
    program or the last of several (:func:`~focalkit.backends._triton.common.reduce_finish`: no second
    launch)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ar = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(pid.to(tl.int64) * BLOCK, n, nprog.to(tl.int64) * BLOCK):
        offs = start + ar
        mask = offs < n
        loss, _ = _element(x_ptr, y_ptr, cls_ptr, w_ptr, offs, mask, C, cls, cls_cs, apos, aneg, w_mode, w_rs, w_cs,
                           sparse, gamma, FORM, BLOCK)
        if store != 0:
            tl.store(loss_ptr + offs, loss.to(loss_ptr.dtype.element_ty), mask=mask)
        else:
            acc += tl.where(mask, loss, 0.0)
    if store != 0:
        if pid == 0:
            tl.store(inv_ptr, 1.0)
    elif den_mode < 0:
        tl.store(part_ptr + pid, tl.sum(acc, axis=0))
    else:
        reduce_finish(tl.sum(acc, axis=0), tl.zeros((), tl.float32), pid, nprog, part_ptr, scr_ptr, den_ptr, den_value,
                      den_mode, inv_ptr, LAST)


@triton.jit(do_not_specialize=["C", "cls", "cls_cs", "w_mode", "w_rs", "w_cs", "sparse", "go_mode"])
def sigmoid_bwd_kernel(x_ptr, y_ptr, cls_ptr, w_ptr, go_ptr, inv_ptr, grad_ptr, n, C, cls, cls_cs, apos, aneg,
                       w_mode, w_rs, w_cs, sparse, go_mode, gamma, FORM: tl.constexpr, BLOCK: tl.constexpr):
    """The gradient times ``inv_ptr[0]`` (1 / denominator) and ``grad_output``, in the logits' dtype."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ar = tl.arange(0, BLOCK)
    scale = tl.load(inv_ptr).to(tl.float32)
    if go_mode == 1:
        scale = scale * tl.load(go_ptr).to(tl.float32)
    for start in range(pid.to(tl.int64) * BLOCK, n, nprog.to(tl.int64) * BLOCK):
        offs = start + ar
        mask = offs < n
        _, grad = _element(x_ptr, y_ptr, cls_ptr, w_ptr, offs, mask, C, cls, cls_cs, apos, aneg, w_mode, w_rs, w_cs,
                           sparse, gamma, FORM, BLOCK)
        grad = grad * scale
        if go_mode == 2:
            grad = grad * tl.load(go_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)
