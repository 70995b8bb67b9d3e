"""Shared device functions and the reduction's finishing kernel."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def log1p(x):
    """Goldberg's accurate log1p from ``tl.log`` alone (runs everywhere, the interpreter included)."""
    u = 1.0 + x
    return tl.where(u == 1.0, x, tl.log(u) * (x / (u - 1.0)))


@triton.jit
def expm1(x):
    u = tl.exp(x)
    # Kahan's expm1: exact where exp rounds to 1, -1 and inf at the ends
    mid = tl.where(u - 1.0 == -1.0, -1.0, (u - 1.0) * x / tl.log(u))
    return tl.where(u == 1.0, x, tl.where(u == float("inf"), u, mid))


@triton.jit
def finish(total, count, den_ptr, den_value, den_mode, out_ptr, inv_ptr):
    """The reduction's last step, from the float64 sum of the loss (and of the counted weight): the sum
    divided by the denominator, stored in the output's dtype; ``1 / denominator`` stored (float32) for the
    backward kernel.

    ``den_mode``: 0 none (a sum), 1 ``den_value``, 2 the 1-element tensor at ``den_ptr``, 3 ``count`` (a
    weighted count; 0, when every position is ignored, divides by 1). A forward kernel that finishes its
    own reduction calls this through :func:`reduce_finish` (no second launch); otherwise
    :func:`finish_kernel` does, over the partials."""
    den = tl.full((), 1.0, tl.float64)
    if den_mode == 1:
        den = tl.full((), 1.0, tl.float64) * den_value
    if den_mode == 2:
        den = tl.load(den_ptr).to(tl.float64)
    if den_mode == 3:
        den = tl.where(count == 0.0, 1.0, count)
    tl.store(out_ptr, (total / den).to(tl.float32).to(out_ptr.dtype.element_ty))
    tl.store(inv_ptr, (1.0 / den).to(tl.float32))


@triton.jit
def reduce_finish(total, count, pid, nprog, part_ptr, scr_ptr, den_ptr, den_value, den_mode, inv_ptr,
                  LAST: tl.constexpr):
    """A forward launch that finishes its own reduction (``den_mode`` >= 0), from each program's float32
    ``total`` (and ``count``, the counted weight): the reduced loss at ``part_ptr`` (a 0-dim float32
    tensor) and ``1 / denominator`` at ``inv_ptr``.

    One program (``LAST`` False): :func:`finish` at once. Several (``LAST``, a specialisation of its own,
    so that the kernels launched without it keep their registers; ``LAST_PROGRAM_FINISH`` in
    ``backends/triton.py``): ``scr_ptr`` holds ``2 * nprog + 1`` zeros. Each program stores its partials
    at ``scr[pid]`` and ``scr[nprog + pid]``, then takes a ticket, ``scr[2 * nprog]`` incremented by an
    atomic add with acquire-release order at GPU scope, after a barrier (so the release covers every
    thread's store). The program that draws the last ticket sums every partial in the order
    :func:`finish_kernel` does (float64, chunks of 1024 = ``FINISH_BLOCK``, loads that bypass L1) and
    finishes: deterministic, with no second launch."""
    if not LAST:
        finish(total.to(tl.float64), count.to(tl.float64), den_ptr, den_value, den_mode, part_ptr, inv_ptr)
    else:
        tl.store(scr_ptr + pid, total)
        tl.store(scr_ptr + nprog + pid, count)
        tl.debug_barrier()
        ticket = tl.atomic_add(scr_ptr + 2 * nprog, 1.0, sem="acq_rel", scope="gpu")
        if ticket == (nprog - 1).to(tl.float32):
            offs = tl.arange(0, 1024)
            acc = tl.zeros([1024], tl.float64)
            cacc = tl.zeros([1024], tl.float64)
            for start in range(0, nprog, 1024):
                m = start + offs < nprog
                acc += tl.load(scr_ptr + start + offs, mask=m, other=0.0, cache_modifier=".cg").to(tl.float64)
                if den_mode == 3:
                    cacc += tl.load(scr_ptr + nprog + start + offs, mask=m, other=0.0,
                                    cache_modifier=".cg").to(tl.float64)
            finish(tl.sum(acc, axis=0), tl.sum(cacc, axis=0), den_ptr, den_value, den_mode, part_ptr, inv_ptr)


@triton.jit(do_not_specialize=["n_part", "den_mode"])
def finish_kernel(part_ptr, cnt_ptr, den_ptr, out_ptr, inv_ptr, n_part, den_value, den_mode,
                  BLOCK: tl.constexpr):
    """One program: the loss partials summed in a fixed order (float64), then :func:`finish`
    (``den_mode`` 3 sums the count partials too)."""
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], tl.float64)
    cacc = tl.zeros([BLOCK], tl.float64)
    for start in range(0, n_part, BLOCK):
        m = start + offs < n_part
        acc += tl.load(part_ptr + start + offs, mask=m, other=0.0).to(tl.float64)
        if den_mode == 3:
            cacc += tl.load(cnt_ptr + start + offs, mask=m, other=0.0).to(tl.float64)
    finish(tl.sum(acc, axis=0), tl.sum(cacc, axis=0), den_ptr, den_value, den_mode, out_ptr, inv_ptr)
