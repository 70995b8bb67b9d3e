"""Focal loss, side by side with the peers, forward and forward + backward (float32, CPU).

Run in the benchmark venv (torch 2.14.1, torchvision 0.29.1, kornia, fvcore; see RESULTS.md):

    python benchmarks/bench_focal.py [--quick]

Sigmoid focal loss (gamma 2, alpha 0.25, 1 % positives) on N x 80 logits: focalkit (each CPU
backend, and native with inplace_grad), torchvision.ops.sigmoid_focal_loss, fvcore, kornia.losses.binary_focal_loss_with_logits,
torch.compile of the textbook formula and F.binary_cross_entropy_with_logits (the gamma = 0 floor).
Softmax focal loss (gamma 2) on N x 1000 logits with class indices: focalkit (native, native with
inplace_grad, eager), kornia.losses.focal_loss, torch.compile of the textbook formula and
F.cross_entropy. Each call gets fresh logits (a clone, outside the timer). Median and
min-max over calls interleaved across implementations; peak extra memory (RSS above the inputs) of
forward + backward, each implementation in its own process. Writes results/focal.json and the focal
section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
# One compiled graph per size and mode (forward / forward+backward): more than dynamo's default limit of 8,
# past which it would silently run the textbook formula eagerly.
torch._dynamo.config.recompile_limit = 64


def textbook_sigmoid(x, y, alpha=0.25, gamma=2.0):
    """The formula as papers and blog posts write it (torchvision's), for torch.compile to fuse."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    a_t = alpha * y + (1 - alpha) * (1 - y)
    return (a_t * ce * (1 - p_t) ** gamma).mean()


def textbook_softmax(x, y, gamma=2.0):
    logp_t = F.log_softmax(x, 1).gather(1, y.unsqueeze(1)).squeeze(1)
    return (-(1 - logp_t.exp()) ** gamma * logp_t).mean()


def sigmoid_impls():
    import focalkit as fk

    impls = {
        "focalkit native": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="native"),
        "focalkit native, inplace_grad": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="native",
                                                                            inplace_grad=True),
        "focalkit eager": lambda x, y: fk.sigmoid_focal_loss(x, y, alpha=0.25, backend="eager"),
        "torch.compile(textbook)": torch.compile(textbook_sigmoid, dynamic=False),
        "BCE-with-logits (floor)": lambda x, y: F.binary_cross_entropy_with_logits(x, y),
    }
    try:
        from torchvision.ops import sigmoid_focal_loss as tv
        impls["torchvision"] = lambda x, y: tv(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    try:
        from fvcore.nn import sigmoid_focal_loss as fv
        impls["fvcore"] = lambda x, y: fv(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    try:
        from kornia.losses import binary_focal_loss_with_logits as kb
        impls["kornia"] = lambda x, y: kb(x, y, alpha=0.25, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    return impls


def softmax_impls():
    import focalkit as fk

    impls = {
        "focalkit native": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="native"),
        "focalkit native, inplace_grad": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="native",
                                                                            inplace_grad=True),
        "focalkit eager": lambda x, y: fk.softmax_focal_loss(x, y, gamma=2.0, backend="eager"),
        "torch.compile(textbook)": torch.compile(textbook_softmax, dynamic=False),
        "cross_entropy (floor)": lambda x, y: F.cross_entropy(x, y),
    }
    try:
        from kornia.losses import focal_loss as kf
        impls["kornia"] = lambda x, y: kf(x, y, alpha=None, gamma=2.0, reduction="mean")
    except ImportError:
        pass
    return impls


def data(kind, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "sigmoid":
        x = torch.randn(n, 80, generator=g) * 3
        y = (torch.rand(n, 80, generator=g) < 0.01).float()
    else:
        x = torch.randn(n, 1000, generator=g) * 3
        y = torch.randint(0, 1000, (n,), generator=g)
    return x, y


def time_all(impls, x, y, repeats, backward):
    def call(fn):
        # Fresh logits (inplace_grad overwrites them), produced by an op as a model's are (inplace_grad is
        # refused on a leaf): a clone, whose backward hands the gradient on unchanged, so no row pays
        # for it, and the leaf's AccumulateGrad keeps that very buffer.
        xx = x.detach().clone().requires_grad_(backward)
        xx = xx.clone() if backward else xx
        t0 = time.perf_counter()
        out = fn(xx, y)
        if backward:
            out.backward()
        return time.perf_counter() - t0
    ts = {k: [] for k in impls}
    for fn in impls.values():
        call(fn)  # warm-up (and compilation)
    for _ in range(repeats):
        for k, fn in impls.items():
            ts[k].append(call(fn))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)} for k, v in ts.items()}


def child(kind, name, n):
    x, y = data(kind, n)
    fn = (sigmoid_impls() if kind == "sigmoid" else softmax_impls())[name]
    from _mem import peak_extra_bytes

    fn(x.clone().requires_grad_().clone(), y).backward()  # warm-up (and compilation) outside the measurement
    xx = x.clone().requires_grad_().clone()  # logits produced by an op, as in call() above
    extra = peak_extra_bytes(lambda: fn(xx, y).backward())
    print(json.dumps({"extra_peak_bytes": extra, "logits_bytes": x.numel() * 4}))


# ---- presets beside their peers ------------------------------------------------------------------

PRESET_SIZES = (80_000, 1_000_000, 8_000_000)  # elements of the logits


def _seg(e, c=20, seed=0):
    """(2, c, h, w) logits with 2 * c * h * w close to ``e``, and (2, h, w) class indices."""
    g = torch.Generator().manual_seed(seed)
    hw = max(1, e // (2 * c))
    h = int(hw ** 0.5)
    w = max(1, hw // h)
    return torch.randn(2, c, h, w, generator=g) * 3, torch.randint(0, c, (2, h, w), generator=g)


def _flat(e, c=80, seed=0, soft=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(max(1, e // c), c, generator=g) * 3
    y = torch.rand(x.shape, generator=g) if soft else (torch.rand(x.shape, generator=g) < 0.01).float()
    return x, y


def _boxes(e, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = max(1, e // 4)
    xy = torch.rand(n, 2, generator=g) * 100
    t = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 50 + 1], 1)
    p = t + torch.randn(n, 4, generator=g) * 3
    p[:, 2:] = torch.max(p[:, 2:], p[:, :2] + 0.5)
    return p, t


def preset_pairs():
    """name -> (make(e) -> (x, args), {implementation: fn(x, args)}): each focalkit preset beside its peer,
    called with the same arguments. A peer that is not installed leaves its row out."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    from focalkit.compat import fvcore as c_fv, kornia as c_ko, monai as c_mo, smp as c_smp
    from focalkit.compat import torchvision as c_tv, ultralytics as c_ul, yolov5 as c_y5
    pairs = {}

    def add(name, make, ours, peer_import):
        try:
            theirs = peer_import()
        except Exception:  # noqa: BLE001 - a peer that does not import here: no row
            return
        pairs[name] = (make, {"focalkit preset": ours, "peer": theirs})

    flat = lambda e: (lambda x, y: (x, (y,)))(*_flat(e))  # noqa: E731
    soft = lambda e: (lambda x, y: (x, (y,)))(*_flat(e, soft=True))  # noqa: E731

    def tv_sig():
        from torchvision.ops import sigmoid_focal_loss as f
        return lambda x, a: f(x, a[0], reduction="mean")
    add("torchvision sigmoid_focal_loss", flat, lambda x, a: c_tv.sigmoid_focal_loss(x, a[0], reduction="mean"), tv_sig)

    def fv_sig():
        from fvcore.nn import sigmoid_focal_loss as f
        return lambda x, a: f(x, a[0], reduction="mean")
    add("fvcore sigmoid_focal_loss", flat, lambda x, a: c_fv.sigmoid_focal_loss(x, a[0], reduction="mean"), fv_sig)

    def ko_bin():
        from kornia.losses import binary_focal_loss_with_logits as f
        return lambda x, a: f(x, a[0], alpha=0.25, reduction="mean")
    add("kornia binary_focal_loss_with_logits", flat,
        lambda x, a: c_ko.binary_focal_loss_with_logits(x, a[0], alpha=0.25, reduction="mean"), ko_bin)
    seg = lambda e: (lambda x, y: (x, (y,)))(*_seg(e))  # noqa: E731

    def ko_soft():
        from kornia.losses import focal_loss as f
        return lambda x, a: f(x, a[0], alpha=0.25, reduction="mean")
    add("kornia focal_loss (2, 20, H, W)", seg, lambda x, a: c_ko.focal_loss(x, a[0], alpha=0.25, reduction="mean"),
        ko_soft)

    def mo(**kw):
        def peer():
            from monai.losses import FocalLoss
            return lambda x, a, m=FocalLoss(**kw): m(x, a[0])
        return peer
    onehot = lambda e: (lambda x, y: (x, (torch.nn.functional.one_hot(y, x.shape[1]).movedim(-1, 1).float().contiguous(),)))(  # noqa: E731
        *_seg(e))
    labels1 = lambda e: (lambda x, y: (x, (y.unsqueeze(1),)))(*_seg(e))  # noqa: E731
    add("MONAI FocalLoss (sigmoid, one-hot float target)", onehot,
        lambda x, a, m=c_mo.FocalLoss(): m(x, a[0]), mo())
    add("MONAI FocalLoss (use_softmax, to_onehot_y)", labels1,
        lambda x, a, m=c_mo.FocalLoss(use_softmax=True, to_onehot_y=True): m(x, a[0]),
        mo(use_softmax=True, to_onehot_y=True))

    def sm(mode):
        def peer():
            from segmentation_models_pytorch.losses import FocalLoss
            return lambda x, a, m=FocalLoss(mode): m(x, a[0])
        return peer
    binary = lambda e: (lambda x, y: (x[:, :1].contiguous(), ((y == 0).float().unsqueeze(1),)))(*_seg(e * 20))  # noqa: E731
    add("SMP FocalLoss (binary)", binary, lambda x, a, m=c_smp.FocalLoss("binary"): m(x, a[0]), sm("binary"))
    add("SMP FocalLoss (multiclass)", seg, lambda x, a, m=c_smp.FocalLoss("multiclass"): m(x, a[0]), sm("multiclass"))

    def ke(cls):
        def peer():
            import keras
            return lambda x, a, m=getattr(keras.losses, cls)(from_logits=True): m(a[0], x)
        return peer

    def ke_ours(cls):
        def ours(x, a, box={}):
            if cls not in box:
                from focalkit.compat import keras as c_ke
                box[cls] = getattr(c_ke, cls)(from_logits=True)
            return box[cls](a[0], x)
        return ours
    cat = lambda e: (lambda x, y: (x, (torch.nn.functional.one_hot(y, 1000).float(),)))(  # noqa: E731
        *(lambda g: (torch.randn(max(1, e // 1000), 1000, generator=g) * 3,
                     torch.randint(0, 1000, (max(1, e // 1000),), generator=g)))(torch.Generator().manual_seed(0)))
    add("Keras BinaryFocalCrossentropy (from_logits)", flat, ke_ours("BinaryFocalCrossentropy"),
        ke("BinaryFocalCrossentropy"))
    add("Keras CategoricalFocalCrossentropy (from_logits)", cat, ke_ours("CategoricalFocalCrossentropy"),
        ke("CategoricalFocalCrossentropy"))
    anchors = lambda e: (lambda x, y: (x.view(8, -1, 80), (y.view(8, -1, 80),)))(*_flat(e - e % 640, soft=True))  # noqa: E731

    def ul(name, *args):
        def peer():
            from ultralytics.utils import loss
            m = getattr(loss, name)(*args)
            return lambda x, a: m(x, *a)
        return peer
    add("ultralytics FocalLoss", anchors, lambda x, a, m=c_ul.FocalLoss(): m(x, *a), ul("FocalLoss"))
    vfl = lambda e: (lambda x, y: (x, (y * (y > 0.9), (y > 0.9).float())))(*anchors(e)[:1], anchors(e)[1][0])  # noqa: E731
    add("ultralytics VarifocalLoss", vfl, lambda x, a, m=c_ul.VarifocalLoss(): m(x, *a), ul("VarifocalLoss"))
    dfl = lambda e: (lambda g: (torch.randn(max(4, e // 16 - e // 16 % 4), 16, generator=g),  # noqa: E731
                                (torch.rand(max(4, e // 16 - e // 16 % 4) // 4, 4, generator=g) * 15,)))(
        torch.Generator().manual_seed(0))
    # ultralytics clamps the target in place (idempotent: every later call sees the same values)
    add("ultralytics DFLoss(16)", dfl, lambda x, a, m=c_ul.DFLoss(16): m(x, *a), ul("DFLoss", 16))

    def y5(name):
        def peer():
            from yolov5.utils import loss
            return lambda x, a, m=getattr(loss, name)(torch.nn.BCEWithLogitsLoss()): m(x, a[0])
        return peer
    add("YOLOv5 FocalLoss(BCEWithLogitsLoss())", soft,
        lambda x, a, m=c_y5.FocalLoss(torch.nn.BCEWithLogitsLoss()): m(x, a[0]), y5("FocalLoss"))
    add("YOLOv5 QFocalLoss(BCEWithLogitsLoss())", soft,
        lambda x, a, m=c_y5.QFocalLoss(torch.nn.BCEWithLogitsLoss()): m(x, a[0]), y5("QFocalLoss"))
    boxes = lambda e: (lambda p, t: (p, (t,)))(*_boxes(e))  # noqa: E731
    for fn in ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"):
        def tv_box(fn=fn):
            import torchvision.ops as ops
            return lambda x, a, f=getattr(ops, fn): f(x, a[0], reduction="mean")
        add(f"torchvision {fn}", boxes, lambda x, a, f=getattr(c_tv, fn): f(x, a[0], reduction="mean"), tv_box)
    return pairs


def preset_child(name, role, e):
    make, impls = preset_pairs()[name]
    x, args = make(e)
    fn = impls[role]
    from _mem import peak_extra_bytes

    fn(x.clone().requires_grad_().clone(), args).sum().backward()
    xx = x.clone().requires_grad_().clone()
    extra = peak_extra_bytes(lambda: fn(xx, args).sum().backward())
    print(json.dumps({"extra_peak_bytes": extra, "logits_bytes": x.numel() * 4}))


def run_presets(repeats, quick, only=None):
    sizes = PRESET_SIZES[:1] + PRESET_SIZES[-1:] if quick else PRESET_SIZES
    pairs = preset_pairs()
    res = {}
    for name, (make, impls) in pairs.items():
        if only and only not in name:
            continue
        rows = {}
        for e in sizes:
            x, args = make(e)
            wrapped = {k: (lambda f: lambda xx, yy: f(xx, yy).sum())(f) for k, f in impls.items()}
            rows[e] = time_all(wrapped, x, args, repeats, True)
        mem = {}
        for role in impls:
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--preset-child", name, role, str(sizes[-1])],
                                 capture_output=True, text=True, env=env)
            mem[role] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
        res[name] = {"times": rows, "memory": mem}
        print(name, "done", file=sys.stderr)
    return res


def render_presets(r):
    m, res = r["meta"], r["results"]
    lines = ["## Presets beside their peers (`benchmarks/bench_focal.py --presets`)", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             "Forward + backward, float32, CPU, the same arguments to both; median ms (calls interleaved). "
             "speed-up = peer / preset. Peak extra memory of forward + backward at the largest size, each in "
             "its own process (MiB).", "",
             "| preset | peer | " + " | ".join(f"{int(e) // 1000:,}k elements: preset / peer (speed-up)"
                                              for e in next(iter(res.values()))["times"])
             + " | memory preset / peer |", "|---" * (3 + len(next(iter(res.values()))["times"])) + "|"]
    for name, v in res.items():
        cells = []
        for e, t in v["times"].items():
            a, b = t["focalkit preset"]["median_s"], t["peer"]["median_s"]
            cells.append(f"{a * 1e3:.2f} / {b * 1e3:.2f} ({b / a:.1f}x)")
        mem = v["memory"]
        mm = " / ".join("n/a" if mem.get(k) is None else f"{mem[k]['extra_peak_bytes'] / 2**20:.0f}"
                        for k in ("focalkit preset", "peer"))
        again = f" (rerun at {v['commit']}, `--only`)" if v.get("commit", m["commit"]) != m["commit"] else ""
        lines.append(f"| `focalkit.compat` | {name}{again} | " + " | ".join(cells) + f" | {mm} |")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--presets", action="store_true", help="only the presets beside their peers")
    ap.add_argument("--preset-child", nargs=3)
    ap.add_argument("--only", help="with --presets: rerun the rows whose name holds this text and keep the other "
                                   "rows of results/presets.json (each rerun row records its commit)")
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    if args.preset_child:
        return preset_child(args.preset_child[0], args.preset_child[1], int(args.preset_child[2]))
    from _meta import run_metadata
    from bench_gbdt import write_section

    repeats = 3 if args.quick else 7
    peers = ("torch", "torchvision", "kornia", "fvcore", "monai", "segmentation_models_pytorch", "keras",
             "ultralytics", "yolov5")
    presets = {"meta": run_metadata(peers), "results": run_presets(repeats, args.quick, args.only)}
    if args.only:  # merge the rerun rows into the last full run, in its order
        old = json.loads((HERE / "results" / "presets.json").read_text())
        for row in presets["results"].values():
            row["commit"] = presets["meta"]["commit"]
        merged = {k: presets["results"].get(k, v) for k, v in old["results"].items()}
        merged.update({k: v for k, v in presets["results"].items() if k not in merged})
        presets = {"meta": old["meta"], "results": merged}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "presets.json").write_text(json.dumps(presets, indent=2, default=str))
    write_section(HERE / "RESULTS.md", "presets", render_presets(presets))
    print(render_presets(presets))
    if args.presets:
        return
    sig_sizes = [125, 1250, 12500, 100_000, 200_000] if not args.quick else [125, 100_000]
    soft_sizes = [16, 1024, 16384, 65536] if not args.quick else [16, 65536]
    res = {"sigmoid": {}, "softmax": {}, "memory": {}}
    for kind, sizes, impls in (("sigmoid", sig_sizes, sigmoid_impls()), ("softmax", soft_sizes, softmax_impls())):
        for n in sizes:
            x, y = data(kind, n)
            res[kind][n] = {"forward": time_all(impls, x, y, repeats, False),
                            "forward+backward": time_all(impls, x, y, repeats, True)}
            print(kind, n, "done", file=sys.stderr)
        headline = 100_000 if kind == "sigmoid" else 65_536
        res["memory"][kind] = {}
        for name in impls:
            # A fixed mmap threshold: glibc's sliding one would serve the measured call from memory the
            # warm-up call freed, and the peak would read 0.
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            out = subprocess.run([sys.executable, __file__, "--child", kind, name, str(headline)], capture_output=True,
                                 text=True, check=True, env=env)
            res["memory"][kind][name] = json.loads(out.stdout.strip().splitlines()[-1])
    result = {"meta": run_metadata(("torch", "torchvision", "kornia", "fvcore")), "results": res}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "focal.json").write_text(json.dumps(result, indent=2, default=str))
    section = render(result)
    write_section(HERE / "RESULTS.md", "focal", section)
    print(section)


def render(r):
    m, res = r["meta"], r["results"]
    ms = lambda t: f"{t['median_s'] * 1e3:.2f} ({t['min_s'] * 1e3:.2f}-{t['max_s'] * 1e3:.2f})"  # noqa: E731
    lines = ["## Focal loss kernels (`benchmarks/bench_focal.py`)", "",
             f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; Python {m['python']}; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".", "",
             "Times in ms, median (min-max) of calls interleaved across implementations, float32, CPU, "
             f"{torch.get_num_threads()} threads.", ""]
    for kind, width, ref in (("sigmoid", 80, "torchvision"), ("softmax", 1000, "kornia")):
        lines.append(f"### {'Sigmoid focal loss, N x 80 (1 % positives)' if kind == 'sigmoid' else 'Softmax focal loss, N x 1000, class indices'}")
        lines.append("")
        for mode in ("forward+backward", "forward"):
            sizes = list(res[kind])
            names = list(res[kind][sizes[0]][mode])
            lines += [f"{mode}:", "", "| implementation | " + " | ".join(f"{int(n) * width:,} elements" for n in sizes)
                      + f" | {ref} / it at the largest |", "|---" * (len(sizes) + 2) + "|"]
            big = res[kind][sizes[-1]][mode]
            for name in names:
                ratio = big[ref]["median_s"] / big[name]["median_s"] if ref in big else float("nan")
                lines.append(f"| {name} | " + " | ".join(ms(res[kind][n][mode][name]) for n in sizes)
                             + f" | {ratio:.1f}x |")
            lines.append("")
        mem = res["memory"][kind]
        lines += [f"Peak extra memory, forward + backward ({'100,000 x 80' if kind == 'sigmoid' else '65,536 x 1000'}), "
                  "each in its own process:", "", "| implementation | MiB | x logits |", "|---|---|---|"]
        for name, v in mem.items():
            lines.append(f"| {name} | {v['extra_peak_bytes'] / 2**20:.0f} | {v['extra_peak_bytes'] / v['logits_bytes']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
