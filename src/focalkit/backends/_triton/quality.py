"""Varifocal Loss (elementwise) and Distribution Focal Loss (rows of bins): forward kernels (the loss,
or per-program partial sums finished by ``common.finish_kernel``, or for a grid of one program the
reduced loss itself) and backward kernels that recompute
the gradient and store it once, times ``grad_output`` and ``1 / denominator``, as the sigmoid and
softmax kernels do (no gradient-sized buffer between forward and backward). The maths is
:mod:`focalkit.core.quality`'s ``varifocal`` and ``distribution_focal``, in float32.

Varifocal runtime arguments: ``has_lab``: 1 when ``lab_ptr`` holds the positives' weights (labels,
laid out like the logits), else ``[q > 0]``; ``iou``: positives weighted by ``q`` (else 1);
``w_mode``: 0 no weight, 1 elementwise, 2 broadcast at ``(i // C) * w_rs + (i % C) * w_cs``.

DFL: logits (P, C) contiguous, C = n + 1 bins in one tile of ``BLOCK_P`` rows x ``BLOCK_C`` bins
(C <= ``BLOCK_C``); ``has_w``: a per-row weight (P,); ``go_mode`` 2: one ``grad_output`` per row.
``C`` is specialised (Triton's divisibility by 16): ultralytics' 16 bins then load 16 bytes per thread,
and the tile's layout puts 4 bins per thread instead of one (in the PTX for sm_90: 39 warp shuffles in
the forward kernel instead of 263).
"""

from __future__ import annotations

import triton
import triton.language as tl

from focalkit.backends._triton.common import log1p, reduce_finish


@triton.jit
def _vfl_element(x_ptr, q_ptr, lab_ptr, w_ptr, offs, mask, C, has_lab, w_mode, w_rs, w_cs, iou, alpha, gamma):
    """(loss, d loss / dx) of one block, weighted."""
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    q = tl.load(q_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    e = tl.exp(-tl.abs(x))
    sp = log1p(e)
    lp = tl.minimum(x, 0.0) - sp
    ln = tl.minimum(-x, 0.0) - sp
    r = 1.0 / (1.0 + e)
    p = tl.where(x < 0, e * r, r)
    qq = tl.where(x < 0, r, e * r)
    bce = -(q * lp + (1.0 - q) * ln)
    dbce = (1.0 - q) * p - q * qq  # no p - 1 cancellation
    w_neg = alpha * tl.where(gamma == 0.0, 1.0, tl.exp(gamma * lp))
    w_pos = tl.where(iou != 0, q, 1.0)
    if has_lab != 0:
        lab = tl.load(lab_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        neg = 1.0 - lab
        wt = lab * w_pos + neg * w_neg
    else:
        is_neg = (q <= 0.0) | (q != q)
        neg = tl.where(is_neg, 1.0, 0.0)
        wt = tl.where(is_neg, w_neg, w_pos)
    loss = wt * bce
    grad = wt * dbce + (neg * gamma) * (qq * w_neg) * bce
    if w_mode != 0:
        wi = offs
        if w_mode == 2:
            wi = (offs // C) * w_rs + (offs % C) * w_cs
        w = tl.load(w_ptr + wi, mask=mask, other=0.0).to(tl.float32)
        loss = loss * w
        grad = grad * w
    return loss, grad


@triton.jit(do_not_specialize=["C", "has_lab", "w_mode", "w_rs", "w_cs", "iou", "store", "den_mode"])
def vfl_fwd_kernel(x_ptr, q_ptr, lab_ptr, w_ptr, loss_ptr, part_ptr, inv_ptr, den_ptr, scr_ptr, n, C, has_lab, w_mode,
                   w_rs, w_cs, iou, store, den_mode, alpha, gamma, den_value, BLOCK: tl.constexpr,
                   LAST: tl.constexpr):
    """``store``: each element's loss, and 1 at ``inv_ptr``; else one partial sum per program (``den_mode``
    -1) or the reduced loss (``common.reduce_finish``), as ``sigmoid_fwd_kernel``."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ar = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float32)
    for start in range(pid.to(tl.int64) * BLOCK, n, nprog.to(tl.int64) * BLOCK):
        offs = start + ar
        mask = offs < n
        loss, _ = _vfl_element(x_ptr, q_ptr, lab_ptr, w_ptr, offs, mask, C, has_lab, w_mode, w_rs, w_cs, iou, alpha,
                               gamma)
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


@triton.jit(do_not_specialize=["C", "has_lab", "w_mode", "w_rs", "w_cs", "iou", "go_mode"])
def vfl_bwd_kernel(x_ptr, q_ptr, lab_ptr, w_ptr, go_ptr, inv_ptr, grad_ptr, n, C, has_lab, w_mode, w_rs, w_cs, iou,
                   go_mode, alpha, gamma, BLOCK: tl.constexpr):
    """The gradient times ``inv_ptr[0]`` and ``grad_output`` (``go_mode`` 0 none, 1 one value, 2 one
    per element), in the logits' dtype."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    ar = tl.arange(0, BLOCK)
    scale = tl.load(inv_ptr).to(tl.float32)
    if go_mode == 1:
        scale = scale * tl.load(go_ptr).to(tl.float32)
    for start in range(pid.to(tl.int64) * BLOCK, n, nprog.to(tl.int64) * BLOCK):
        offs = start + ar
        mask = offs < n
        _, grad = _vfl_element(x_ptr, q_ptr, lab_ptr, w_ptr, offs, mask, C, has_lab, w_mode, w_rs, w_cs, iou, alpha,
                               gamma)
        grad = grad * scale
        if go_mode == 2:
            grad = grad * tl.load(go_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dfl_tile(z_ptr, y_ptr, w_ptr, P, C, has_w, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """One tile's rows: (row offsets, row mask, tile offsets, tile mask, softmax, loss, two-hot, NaN rows)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < P
    offs = rows[:, None] * C + cols[None, :]
    mask = rmask[:, None] & (cols[None, :] < C)
    z = tl.load(z_ptr + offs, mask=mask, other=-float("inf")).to(tl.float32)
    m = tl.max(z, axis=1)
    m = tl.where(rmask, m, 0.0)
    ez = tl.exp(z - m[:, None])
    s = tl.sum(ez, axis=1)
    s = tl.where(rmask, s, 1.0)
    lse = m + tl.log(s)
    y = tl.load(y_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    nan = y != y
    n_f = (C - 1).to(tl.float32)
    yc = tl.minimum(tl.maximum(tl.where(nan, 0.0, y), 0.0), n_f)
    left = tl.minimum(tl.floor(yc), n_f - 1.0)
    w_left = tl.where(nan, y, left + 1.0 - yc)
    w_right = yc - left
    li = left.to(tl.int32)
    col = cols[None, :]
    is_l = col == li[:, None]
    is_r = col == li[:, None] + 1
    two_hot = tl.where(is_l, w_left[:, None], 0.0) + tl.where(is_r, w_right[:, None], 0.0)
    # the two target bins' logits only (an infinite logit elsewhere must not meet a weight of 0)
    z_l = tl.sum(tl.where(is_l & mask, z, 0.0), axis=1)
    z_r = tl.sum(tl.where(is_r & mask, z, 0.0), axis=1)
    loss = lse - w_left * z_l - w_right * z_r
    wt = tl.full([BLOCK_P], 1.0, tl.float32)
    if has_w != 0:
        wt = tl.load(w_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    return rows, rmask, offs, mask, ez / s[:, None], loss * wt, two_hot, nan, wt


@triton.jit(do_not_specialize=["has_w", "store", "den_mode"])
def dfl_fwd_kernel(z_ptr, y_ptr, w_ptr, loss_ptr, part_ptr, inv_ptr, den_ptr, scr_ptr, P, C, has_w, store, den_mode,
                   den_value, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, LAST: tl.constexpr):
    """``store``: each row's loss, and 1 at ``inv_ptr``; else one partial sum per program (``den_mode``
    -1) or the reduced loss (``common.reduce_finish``)."""
    rows, rmask, _, _, _, loss, _, _, _ = _dfl_tile(z_ptr, y_ptr, w_ptr, P, C, has_w, BLOCK_P, BLOCK_C)
    if store != 0:
        tl.store(loss_ptr + rows, loss.to(loss_ptr.dtype.element_ty), mask=rmask)
        if tl.program_id(0) == 0:
            tl.store(inv_ptr, 1.0)
    elif den_mode < 0:
        tl.store(part_ptr + tl.program_id(0), tl.sum(tl.where(rmask, loss, 0.0), axis=0))
    else:
        reduce_finish(tl.sum(tl.where(rmask, loss, 0.0), axis=0), tl.zeros((), tl.float32), tl.program_id(0),
                      tl.num_programs(0), part_ptr, scr_ptr, den_ptr, den_value, den_mode, inv_ptr, LAST)


@triton.jit(do_not_specialize=["has_w", "go_mode"])
def dfl_bwd_kernel(z_ptr, y_ptr, w_ptr, go_ptr, inv_ptr, grad_ptr, P, C, has_w, go_mode, BLOCK_P: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    """softmax - two-hot, times the row weight, ``inv_ptr[0]`` and ``grad_output``; NaN rows for NaN targets."""
    rows, rmask, offs, mask, prob, _, two_hot, nan, wt = _dfl_tile(z_ptr, y_ptr, w_ptr, P, C, has_w, BLOCK_P,
                                                                    BLOCK_C)
    scale = tl.load(inv_ptr).to(tl.float32)
    if go_mode == 1:
        scale = scale * tl.load(go_ptr).to(tl.float32)
    k = wt * scale
    if go_mode == 2:
        k = k * tl.load(go_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    grad = (prob - two_hot) * k[:, None]
    grad = tl.where(nan[:, None], float("nan"), grad)
    tl.store(grad_ptr + offs, grad.to(grad_ptr.dtype.element_ty), mask=mask)
