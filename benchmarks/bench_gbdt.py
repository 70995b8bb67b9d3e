"""Cost of focalkit's GBDT focal objectives, side by side with the built-in logistic objective.

1. Per call on N rows (default 1e6): the focal objective's gradient + Hessian against the logistic
   gradient + Hessian in NumPy (what any custom objective costs at least).
2. A 50-round training on an imbalanced synthetic set: the focal objective against the built-in
   ``binary:logistic`` (XGBoost) / ``binary`` (LightGBM) / ``Logloss`` (CatBoost, and its own binary
   ``Focal`` loss), wall time, same trees settings.
3. CatBoost multi-class: the softmax focal objective (CatBoost calls it once per object) against the
   built-in ``MultiClass``, on fewer rows (``--multi-rows``).

Writes benchmarks/results/gbdt.json and the GBDT section of benchmarks/RESULTS.md.

    python benchmarks/bench_gbdt.py [--rows 1000000] [--train-rows 200000] [--rounds 50] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from _meta import run_metadata

HERE = Path(__file__).resolve().parent


def timeit(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "n": repeats}


def logistic_numpy(y, margin):
    p = 1.0 / (1.0 + np.exp(-margin))
    return p - y, p * (1.0 - p)


def synthetic(n, d=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    logit = X[:, 0] * 1.5 - X[:, 1] + 0.5 * X[:, 2] * X[:, 3] - 4.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return X, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--train-rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--multi-rows", type=int, default=3000)
    args = ap.parse_args()

    from focalkit.adapters import xgboost as fx
    from focalkit.adapters import lightgbm as fl
    import lightgbm as lgb
    import xgboost as xgb

    rng = np.random.default_rng(0)
    margin = rng.normal(size=args.rows) * 3
    y = (rng.random(args.rows) < 0.05).astype(np.float64)
    obj = fx.focal_objective(gamma=2.0, alpha=0.25)
    per_call = {
        "logistic_numpy": timeit(lambda: logistic_numpy(y, margin), args.repeats),
        "focal_objective": timeit(lambda: obj(y, margin), args.repeats),
    }
    per_call["ratio_focal_vs_logistic_numpy"] = (per_call["focal_objective"]["median_s"]
                                                 / per_call["logistic_numpy"]["median_s"])

    X, yt = synthetic(args.train_rows)
    train = {}
    xgb_params = {"max_depth": 6, "eta": 0.1, "tree_method": "hist", "nthread": 2}
    d = xgb.DMatrix(X, yt)
    train["xgboost_builtin"] = timeit(
        lambda: xgb.train({**xgb_params, "objective": "binary:logistic"}, d, args.rounds), 3)
    d_focal = xgb.DMatrix(X, yt, base_margin=np.full(len(yt), obj.init_margin(yt)))
    train["xgboost_focal"] = timeit(
        lambda: xgb.train({**xgb_params, "disable_default_eval_metric": 1}, d_focal, args.rounds, obj=obj), 3)
    lgb_params = {"num_leaves": 63, "learning_rate": 0.1, "num_threads": 2, "verbose": -1}
    lobj = fl.focal_objective(gamma=2.0, alpha=0.25)
    train["lightgbm_builtin"] = timeit(
        lambda: lgb.train({**lgb_params, "objective": "binary"}, lgb.Dataset(X, yt), args.rounds), 3)
    init = np.full(len(yt), lobj.init_margin(yt))
    train["lightgbm_focal"] = timeit(
        lambda: lgb.train({**lgb_params, "objective": lobj}, lgb.Dataset(X, yt, init_score=init), args.rounds), 3)
    ratios = {
        "xgboost": train["xgboost_focal"]["median_s"] / train["xgboost_builtin"]["median_s"],
        "lightgbm": train["lightgbm_focal"]["median_s"] / train["lightgbm_builtin"]["median_s"],
    }
    try:
        import catboost as cb

        from focalkit.adapters import catboost as fc
    except ImportError:  # pragma: no cover
        cb = None
    if cb is not None:
        cobj = fc.focal_objective(gamma=2.0, alpha=0.25)
        cb_params = {"depth": 6, "learning_rate": 0.1, "iterations": args.rounds, "thread_count": 2, "verbose": 0,
                     "allow_writing_files": False, "boost_from_average": False}
        base = np.full(len(yt), cobj.init_margin(yt))
        train["catboost_builtin"] = timeit(
            lambda: cb.CatBoost({**cb_params, "loss_function": "Logloss"}).fit(cb.Pool(X, yt)), 3)
        train["catboost_own_focal"] = timeit(lambda: cb.CatBoost(
            {**cb_params, "loss_function": "Focal:focal_alpha=0.25;focal_gamma=2.0"}).fit(cb.Pool(X, yt)), 3)
        train["catboost_focal"] = timeit(lambda: cb.CatBoost(
            {**cb_params, "loss_function": cobj, "eval_metric": "Logloss"}).fit(cb.Pool(X, yt, baseline=base)), 3)
        ratios["catboost"] = train["catboost_focal"]["median_s"] / train["catboost_builtin"]["median_s"]
        ratios["catboost_own_focal"] = train["catboost_own_focal"]["median_s"] / train["catboost_builtin"]["median_s"]
        Xm, ym = synthetic(args.multi_rows, seed=1)
        ym = np.digitize(Xm[:, 0] + 0.5 * Xm[:, 1], [0.5, 1.5]).astype(np.float64)
        mobj = fc.softmax_focal_objective(gamma=2.0)
        m_params = {**cb_params, "iterations": 20, "classes_count": 3}
        train["catboost_multiclass_builtin"] = timeit(
            lambda: cb.CatBoost({**m_params, "loss_function": "MultiClass"}).fit(cb.Pool(Xm, ym)), 3)
        train["catboost_multiclass_focal"] = timeit(lambda: cb.CatBoost(
            {**m_params, "loss_function": mobj, "eval_metric": "MultiClass"}).fit(cb.Pool(Xm, ym)), 3)
        ratios["catboost_multiclass"] = (train["catboost_multiclass_focal"]["median_s"]
                                         / train["catboost_multiclass_builtin"]["median_s"])
    result = {"meta": run_metadata(("numpy", "xgboost", "lightgbm", "catboost")), "args": vars(args),
              "per_call": per_call, "train": train, "train_ratio_focal_vs_builtin": ratios}
    out = HERE / "results" / "gbdt.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    section = render(result)
    write_section(HERE / "RESULTS.md", "gbdt", section)
    print(section)


def render(r):
    m, pc, tr, ra = r["meta"], r["per_call"], r["train"], r["train_ratio_focal_vs_builtin"]
    ms = lambda t: f"{t['median_s'] * 1e3:.1f} ms ({t['min_s'] * 1e3:.1f}-{t['max_s'] * 1e3:.1f})"  # noqa: E731
    s = lambda t: f"{t['median_s']:.2f} s ({t['min_s']:.2f}-{t['max_s']:.2f})"  # noqa: E731
    a = r["args"]
    return "\n".join([
        "## GBDT objectives (`benchmarks/bench_gbdt.py`)",
        "",
        f"Command: `{m['command']}`; commit {m['commit']}; {m['machine']}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Per call, gradient + Hessian of {a['rows']:,} rows (float64), median (min-max) of {a['repeats']}:",
        "",
        "| objective | time | ratio |",
        "|---|---|---|",
        f"| logistic grad/hess in NumPy | {ms(pc['logistic_numpy'])} | 1.00 |",
        f"| focalkit `focal_objective(gamma=2, alpha=0.25)` | {ms(pc['focal_objective'])} | "
        f"{pc['ratio_focal_vs_logistic_numpy']:.2f} |",
        "",
        f"Training {a['rounds']} rounds on {a['train_rows']:,} rows x 20 features (5 % positives), 2 threads, "
        "median (min-max) of 3:",
        "",
        "| library | built-in logistic | focalkit focal objective | ratio (goal <= 1.5) |",
        "|---|---|---|---|",
        f"| XGBoost (hist, depth 6) | {s(tr['xgboost_builtin'])} | {s(tr['xgboost_focal'])} | {ra['xgboost']:.2f} |",
        f"| LightGBM (63 leaves) | {s(tr['lightgbm_builtin'])} | {s(tr['lightgbm_focal'])} | {ra['lightgbm']:.2f} |",
    ] + ([
        f"| CatBoost (depth 6) | {s(tr['catboost_builtin'])} | {s(tr['catboost_focal'])} | {ra['catboost']:.2f} |",
        f"| CatBoost's own binary `Focal` loss (for comparison) | {s(tr['catboost_builtin'])} | "
        f"{s(tr['catboost_own_focal'])} | {ra['catboost_own_focal']:.2f} |",
        "",
        f"CatBoost multi-class, {a['multi_rows']:,} rows x 20 features, 3 classes, 20 rounds: built-in `MultiClass` "
        f"{s(tr['catboost_multiclass_builtin'])}, softmax focal objective {s(tr['catboost_multiclass_focal'])}, "
        f"ratio {ra['catboost_multiclass']:.1f} (CatBoost calls a multi-dimensional custom objective once per "
        "object, in Python; no batched form exists).",
    ] if "catboost" in ra else []) + [""])


def write_section(path: Path, key: str, text: str) -> None:
    """Replace (or append) the section between <!-- key --> markers in RESULTS.md."""
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    block = f"{start}\n{text}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nEach section is written by the script it names.\n"
    if start in old:
        pre, rest = old.split(start, 1)
        post = rest.split(end, 1)[1]
        new = pre + block + post
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
