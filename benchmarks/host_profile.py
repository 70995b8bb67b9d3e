"""Where the host's time goes in one forward + backward of a small input, with the GPU idle: the step
taken apart on the device it runs on, so that a GPU run says which part to cut.

Per case (the latency rows of ``bench_gpu.py``, and a sigmoid of one program), host microseconds per
step in a loop without synchronisation (median of rounds):

* ``torch``: ``F.cross_entropy`` / BCE-with-logits, the reference;
* ``step``: focalkit's forward + backward;
* ``forward``: its forward alone (the graph built, no backward);
* ``python``: the step with Triton's launches recorded instead of made (focalkit's Python, its aten ops
  and autograd, on the device's tensors);
* ``launches``: the step's own Triton launches replayed alone (the same kernels, arguments and grids),
  and ``per_launch`` that over their number;
* ``one_aten_op``: ``torch.empty_like(x).fill_(1)``, one allocation and one launch of torch's own.

``step - python - launches`` is what neither explains (the interplay: the caching allocator, the
autograd engine's device thread). Where the forward has several programs, ``step_last_program`` is the
step with ``LAST_PROGRAM_FINISH`` (its last program finishes the reduction: a torch fill of the ticket
instead of ``finish_kernel``'s launch), the A/B that decides that flag. Also the top functions by own
time (cProfile) of each step, and whether anything has set Triton's launch hooks.

    python benchmarks/host_profile.py --out DIR      on CUDA (benchmarks/gpu_check.sh runs it)
    python benchmarks/host_profile.py --dry-run      the same code on the CPU (TRITON_INTERPRET=1)

Writes ``gpu_host.json`` and ``gpu_host.md`` into ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

DRY = "--dry-run" in sys.argv
if DRY:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import focalkit as fk  # noqa: E402
from focalkit.backends import triton as tb  # noqa: E402
from _meta import triton_python_only, triton_switches  # noqa: E402


def _cases(dev, dry):
    """The latency rows of ``bench_gpu.py`` (several sigmoid programs: 80 of 1,024 elements; the dry run
    takes 3) and a sigmoid input of one program (960 elements)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    t = torch.randint(0, 10, (256,), generator=g)
    rows = 36 if dry else 1024
    xs = torch.randn(rows, 80, generator=g)
    ys = (torch.rand(rows, 80, generator=g) < 0.05).float()
    xt, yt = xs[:12], ys[:12]
    return {
        "softmax 256 x 10": (fk.softmax_focal_loss, F.cross_entropy, x.to(dev), t.to(dev)),
        f"sigmoid {rows} x 80": (fk.sigmoid_focal_loss, F.binary_cross_entropy_with_logits, xs.to(dev), ys.to(dev)),
        "sigmoid 12 x 80 (one program)": (fk.sigmoid_focal_loss, F.binary_cross_entropy_with_logits, xt.to(dev),
                                          yt.to(dev)),
    }


def _sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def us(fn, dev, reps, rounds):
    """Median host microseconds per call of rounds of ``reps`` calls, synchronised only between rounds."""
    for _ in range(1 if DRY else 20):
        fn()
    out = []
    for _ in range(rounds):
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        out.append((time.perf_counter() - t0) * 1e6 / reps)
        _sync(dev)
    return sorted(out)[len(out) // 2]


def _step(loss, x, y):
    x = x.detach().clone().requires_grad_()

    def step():
        x.grad = None
        loss(x, y).backward()

    def forward():
        loss(x, y)

    return step, forward


def _recorded(step):
    """(the Triton launches of one step as (fn, grid, args, consts, num_warps), the step with launches
    recorded instead of made)."""
    calls = []
    with triton_python_only(calls, read=True):
        step()

    def python_only():
        with triton_python_only(read=not DRY):  # dry run: as on a GPU, nothing read on the host
            step()

    return calls, python_only


def _replay(calls):
    def run():
        for fn, grid, args, consts, warps in calls:
            fn[grid](*args, num_warps=warps, **consts)
    return run


def _top(fn, reps, n=12):
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(reps):
        fn()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(n)
    return "\n".join(line for line in s.getvalue().splitlines()[6:] if line.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    dev = "cpu" if args.dry_run else "cuda"
    reps, rounds = (1, 1) if args.dry_run else (300, 7)
    hooks = {}
    knobs = getattr(__import__("triton"), "knobs", None)
    for name in ("launch_enter_hook", "launch_exit_hook"):
        hook = getattr(getattr(knobs, "runtime", None), name, None)  # a HookChain since triton 3.4 or so
        hooks[name] = len(hook.calls) if hasattr(hook, "calls") else repr(hook)
    meta = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu (dry run)", "torch": torch.__version__,
            "triton": __import__("triton").__version__, "triton_hooks": hooks, "reps": reps, "rounds": rounds}
    rows, profiles, lines = {}, {}, []
    for name, (loss, ref, x, y) in _cases(dev, args.dry_run).items():
        step, forward = _step(functools.partial(loss, backend="triton"), x, y)
        ref_step, _ = _step(ref, x, y)
        calls, python_only = _recorded(step)
        replay = _replay(calls)
        like = x.detach()
        r = {"torch": us(ref_step, dev, reps, rounds), "step": us(step, dev, reps, rounds),
             "forward": us(forward, dev, reps, rounds), "python": us(python_only, dev, reps, rounds),
             "launches": us(replay, dev, reps, rounds), "n_launches": len(calls),
             "one_aten_op": us(lambda: torch.empty_like(like).fill_(1.0), dev, reps, rounds)}
        if "finish_kernel" in [getattr(c[0], "__name__", "") for c in calls]:  # several programs: the A/B
            with triton_switches(LAST_PROGRAM_FINISH=True):  # a torch fill of the ticket for a Triton launch
                calls_lp, _ = _recorded(step)
                r["step_last_program"] = us(step, dev, reps, rounds)
                r["n_launches_last_program"] = len(calls_lp)
        r["per_launch"] = r["launches"] / max(1, len(calls))
        r["unexplained"] = r["step"] - r["python"] - r["launches"]
        r["step_over_torch"] = r["step"] / r["torch"]
        r["kernels"] = [c[0].fn.__name__ if hasattr(c[0], "fn") else str(c[0]) for c in calls]
        rows[name] = r
        profiles[name] = _top(step, 2 if args.dry_run else 200)
        # written after every row, then printed: a stage timeout keeps what ran
        lines = write(Path(args.out), meta, rows, profiles, args.dry_run)
        print(name, json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    print("\n".join(lines[:len(rows) + 6]))


def write(out, meta, rows, profiles, dry):
    """gpu_host.json and gpu_host.md of the rows so far; returns the Markdown's lines."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_host.json").write_text(json.dumps({"meta": meta, "rows": rows, "profiles": profiles}, indent=1) + "\n")
    hooks, rounds, reps = meta["triton_hooks"], meta["rounds"], meta["reps"]
    lines = [f"## Host time per step, taken apart (`benchmarks/host_profile.py`{' --dry-run' if dry else ''})",
             "", f"{meta['device']}, torch {meta['torch']}, triton {meta['triton']}; Triton's launch hooks: "
             f"{hooks}. Host us per step, median of {rounds} rounds of {reps}, no synchronisation inside a round.", "",
             "| case | torch | focalkit step | / torch | forward | Python only | its launches (n) | per launch "
             "| unexplained | one aten op | step, last program finishing (n) |", "|---" * 11 + "|"]
    for name, r in rows.items():
        lp = (f"{r['step_last_program']:.1f} ({r['n_launches_last_program']})" if "step_last_program" in r
              else "- (one program)")
        lines.append(f"| {name} | {r['torch']:.1f} | {r['step']:.1f} | {r['step_over_torch']:.2f} | {r['forward']:.1f} "
                     f"| {r['python']:.1f} | {r['launches']:.1f} ({r['n_launches']}) | {r['per_launch']:.1f} "
                     f"| {r['unexplained']:.1f} | {r['one_aten_op']:.1f} | {lp} |")
    for name, text in profiles.items():
        lines += ["", f"cProfile, {name} ({2 if dry else 200} steps, own time):", "", "```", text, "```"]
    (out / "gpu_host.md").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
