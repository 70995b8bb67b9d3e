"""Shared device functions and the reduction's finishing kernel."""

from __future__ import annotations

import triton
import triton.language as tl

# The partials are summed in chunks of this many (float64 lanes), by the finishing kernel and by the last
# program of several alike (:func:`sum_partials`); a kernel reads a module global only as a constexpr.
FINISH_BLOCK = tl.constexpr(1024)


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
    thread's store). The program that draws the last ticket sums every partial with
    :func:`sum_partials`, as :func:`finish_kernel` does, and finishes: deterministic, with no second
    launch."""
    if not LAST:
        finish(total.to(tl.float64), count.to(tl.float64), den_ptr, den_value, den_mode, part_ptr, inv_ptr)
    else:
        tl.store(scr_ptr + pid, total)
        tl.store(scr_ptr + nprog + pid, count)
        tl.debug_barrier()
        ticket = tl.atomic_add(scr_ptr + 2 * nprog, 1.0, sem="acq_rel", scope="gpu")
        if ticket == (nprog - 1).to(tl.float32):
            psum, csum = sum_partials(scr_ptr, scr_ptr + nprog, nprog, den_mode)
            finish(psum, csum, den_ptr, den_value, den_mode, part_ptr, inv_ptr)


@triton.jit
def sum_partials(part_ptr, cnt_ptr, n, den_mode):
    """The ``n`` loss partials at ``part_ptr`` (and, for ``den_mode`` 3, the count partials at ``cnt_ptr``)
    summed in float64 in one fixed order, chunks of ``FINISH_BLOCK``: the finishing kernel's sum and the
    last program's, the same bits by construction. The loads bypass L1 (``.cg``), which the last program
    needs to see the other programs' stores and which costs the finishing kernel nothing (each partial is
    read once)."""
    offs = tl.arange(0, FINISH_BLOCK)
    acc = tl.zeros([FINISH_BLOCK], tl.float64)
    cacc = tl.zeros([FINISH_BLOCK], tl.float64)
    for start in range(0, n, FINISH_BLOCK):
        m = start + offs < n
        acc += tl.load(part_ptr + start + offs, mask=m, other=0.0, cache_modifier=".cg").to(tl.float64)
        if den_mode == 3:
            cacc += tl.load(cnt_ptr + start + offs, mask=m, other=0.0, cache_modifier=".cg").to(tl.float64)
    return tl.sum(acc, axis=0), tl.sum(cacc, axis=0)


@triton.jit(do_not_specialize=["n_part", "den_mode"])
def finish_kernel(part_ptr, cnt_ptr, den_ptr, out_ptr, inv_ptr, n_part, den_value, den_mode):
    """One program: the loss partials summed in a fixed order (float64, :func:`sum_partials`; ``den_mode``
    3 sums the count partials too), then :func:`finish`."""
    total, count = sum_partials(part_ptr, cnt_ptr, n_part, den_mode)
    finish(total, count, den_ptr, den_value, den_mode, out_ptr, inv_ptr)
