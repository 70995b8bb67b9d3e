"""Tune the Triton launch tables on a GPU: every candidate table of ``CANDIDATES`` times the workloads
of its family (forward + backward, CUDA events, median of interleaved rounds), and the best table per
family (the least sum over workloads of time / best time) is written as a tuning file that
``FOCALKIT_TRITON_TUNING`` reads at import (``focalkit.backends.triton._tuning``). The tables in
``backends/triton.py`` are the winners of the last sweep (``benchmarks/RESULTS.md``); the
ahead-of-time compile test covers those.

    python benchmarks/sweep_gpu.py --out DIR      (writes DIR/sweep.json and DIR/tuned.json)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import focalkit as fk
from focalkit.backends import triton as tb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import _timer  # noqa: E402  (CUDA events around a loop of steps)

time_ms = _timer("cuda")

CANDIDATES = {
    "sigmoid": {
        "1024x4,8/SM": [1024, 4, 8], "1024x8,8/SM": [1024, 8, 8], "1024x8,32/SM": [1024, 8, 32],
        "2048x8,16/SM": [2048, 8, 16], "512x4,32/SM": [512, 4, 32],
    },
    "row_tiles": {
        "A": [[128, 16, 4], [32, 64, 4], [4, 512, 4], [1, 4096, 8], [1, 4096, 8]],
        "B": [[256, 16, 4], [128, 32, 4], [64, 64, 4], [16, 256, 4], [2, 2048, 8], [1, 4096, 8]],
        "C": [[128, 16, 4], [64, 32, 4], [32, 64, 4], [8, 256, 4], [1, 2048, 4], [1, 2048, 8]],
        "D": [[512, 16, 8], [256, 32, 8], [128, 64, 8], [32, 256, 8], [4, 2048, 8], [1, 4096, 16]],
    },
    "row_loop": {  # [BLOCK_P, num_warps, most classes]: 0 classes = the tile table for every row
        "256x4": [256, 4, 32], "128x4": [128, 4, 32], "512x8": [512, 8, 32], "256x4 to 64": [256, 4, 64],
        "off": [256, 4, 0],
    },
    "spatial_tiles": {
        "A": [[128, 32, 8], [16, 256, 8], [128, 32, 8]],
        "B": [[256, 32, 8], [32, 256, 8], [128, 32, 8]],
        "C": [[64, 32, 4], [16, 256, 4], [64, 32, 4]],
        "D": [[512, 32, 16], [64, 256, 16], [256, 32, 16]],
    },
}
WORKLOADS = {
    "sigmoid": [("sigmoid 16M", (209716, 80), torch.float32), ("sigmoid 16M", (209716, 80), torch.bfloat16),
                ("RetinaNet", (1920000, 80), torch.float32)],
    "row_tiles": [("flattened segmentation", (4194304, 19), torch.float32), ("LVIS", (65536, 1203), torch.float32),
                  ("LVIS", (65536, 1203), torch.bfloat16), ("long-tail", (8192, 21843), torch.float32),
                  ("ImageNet", (65536, 1000), torch.float32), ("CIFAR-100", (262144, 100), torch.float32)],
    "row_loop": [("flattened segmentation", (4194304, 19), torch.float32),
                 ("flattened segmentation", (4194304, 19), torch.bfloat16),
                 ("CIFAR-10", (1048576, 10), torch.float32), ("Pascal VOC + background", (1048576, 21), torch.float32),
                 ("COCO-stuff 51", (1048576, 51), torch.float32), ("latency", (256, 10), torch.float32)],
    "spatial_tiles": [("segmentation", (8, 19, 512, 1024), torch.float32),
                      ("segmentation", (8, 19, 512, 1024), torch.bfloat16),
                      ("ADE-like", (16, 150, 128, 128), torch.float32)],
}


def apply(family, cfg):
    tb._tuning(None)
    if family == "sigmoid":
        tb.SIGMOID_BLOCK, tb.SIGMOID_WARPS, tb.PROGRAMS_PER_SM = cfg
    elif family == "row_loop":
        tb.ROW_LOOP, tb.ROW_LOOP_MAX_C = tb.Tile(False, False, cfg[0], 1, cfg[1]), cfg[2]
    else:
        tiles = tuple(tb.Tile(family == "spatial_tiles", i < len(cfg) - 1, p, c, w) for i, (p, c, w) in enumerate(cfg))
        setattr(tb, "SPATIAL_TILES" if family == "spatial_tiles" else "ROW_TILES", tiles)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    defaults = {"sigmoid": [tb.SIGMOID_BLOCK, tb.SIGMOID_WARPS, tb.PROGRAMS_PER_SM],
                "row_tiles": [[t.block_p, t.block_c, t.num_warps] for t in tb.ROW_TILES],
                "row_loop": [tb.ROW_LOOP.block_p, tb.ROW_LOOP.num_warps, tb.ROW_LOOP_MAX_C],
                "spatial_tiles": [[t.block_p, t.block_c, t.num_warps] for t in tb.SPATIAL_TILES]}
    results, tuned = {}, {}
    for family, cands in CANDIDATES.items():
        table = {}
        for wname, shape, dtype in WORKLOADS[family]:
            g = torch.Generator(device="cuda").manual_seed(0)
            x = (torch.randn(shape, device="cuda", generator=g) * 2).to(dtype).requires_grad_()
            if family == "sigmoid":
                t = (torch.rand(shape, device="cuda", generator=g) < 0.01).to(dtype)
                loss = lambda: fk.sigmoid_focal_loss(x, t, backend="triton")
            else:
                t = torch.randint(0, shape[1], shape[:1] + shape[2:], device="cuda", generator=g)
                loss = lambda: fk.softmax_focal_loss(x, t, backend="triton")

            def step():
                x.grad = None
                loss().backward()

            steps = {}
            for name, cfg in cands.items():
                apply(family, cfg)
                step()
                step()
                steps[name] = cfg
            times = {n: [] for n in cands}
            for _ in range(5):  # interleaved rounds
                for name, cfg in cands.items():
                    apply(family, cfg)
                    times[name].append(time_ms(step, 5))
            med = {n: sorted(v)[len(v) // 2] for n, v in times.items()}
            table[f"{wname} {tuple(shape)} {str(dtype).replace('torch.', '')}"] = med
            print(family, wname, dtype, {k: round(v, 3) for k, v in med.items()}, flush=True)
            del x, t
            torch.cuda.empty_cache()
        score = {n: sum(row[n] / min(row.values()) for row in table.values()) for n in cands}
        best = min(score, key=score.get)
        results[family] = {"ms": table, "score": score, "best": best}
        tuned[family] = cands[best]
        apply(family, defaults[family])
        print(family, "best:", best, {k: round(v, 2) for k, v in score.items()}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "tuned.json").write_text(json.dumps(tuned) + "\n")
    print(json.dumps(tuned))


if __name__ == "__main__":
    main()
