"""``focalkit``: compare losses on real imbalanced data (``demo``) or on your own table (``compare``).

Bad input gives one message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

MIN_ROWS_WARN = 10


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


def _warn(msg: str) -> None:
    print(f"focalkit: warning: {msg}", file=sys.stderr)


def _common(p: argparse.ArgumentParser) -> None:
    from focalkit._demo import DEFAULT_LOSSES

    p.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                   help="comma-separated loss names (see --list-losses); default: %(default)s")
    p.add_argument("--epochs", type=int, default=30, help="training epochs per model (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per loss (default: %(default)s)")
    p.add_argument("--out", default="focalkit-demo", help="folder for the PNG plots (default: ./%(default)s/)")
    p.add_argument("--no-plots", action="store_true", help="do not write plots")
    p.add_argument("--json", action="store_true", help="print machine-readable results (JSON) instead of tables")
    p.add_argument("--list-losses", action="store_true", help="list the loss names and exit")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="focalkit", description="Focal-family losses on class-imbalanced data.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compare losses on a vendored real data set")
    d.add_argument("--dataset", default="page-blocks", choices=("page-blocks", "satimage"),
                   help="page-blocks (imbalance 175:1) or satimage made long-tailed (default: %(default)s)")
    d.add_argument("--imbalance-ratio", type=float, default=50.0,
                   help="satimage only: imbalance ratio of the long-tailed train split (default: %(default)s)")
    _common(d)
    c = sub.add_parser("compare", help="compare losses on your own CSV table")
    c.add_argument("--csv", required=True, help="CSV file with a header row; numeric feature columns")
    c.add_argument("--target", required=True, help="name of the class column")
    c.add_argument("--test-size", type=float, default=0.3, help="fraction held out for testing (default: %(default)s)")
    _common(c)
    return p


def _losses(text: str) -> List[str]:
    from focalkit._demo import LOSSES

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOSSES]
    if unknown or not names:
        raise UsageError(f"unknown loss {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(LOSSES)}")
    return names


def _split(X: np.ndarray, y: np.ndarray, test_size: float, seed: int = 0):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=test_size, stratify=y, random_state=seed)


def _demo_problem(args):
    from focalkit import data
    from focalkit._demo import Problem, standardise

    if args.dataset == "page-blocks":
        X, y = data.load_page_blocks()
        Xtr, Xte, ytr, yte = _split(X, y, 0.3)
        Xtr, Xte = standardise(Xtr, Xte, log=True)
        return Problem("page-blocks", Xtr, ytr, Xte, yte, data.PAGE_BLOCKS_CLASSES, data.CITATION["page-blocks"])
    if not args.imbalance_ratio >= 1:
        raise UsageError(f"--imbalance-ratio must be >= 1, got {args.imbalance_ratio}")
    Xtr, ytr = data.load_satimage_long_tailed(args.imbalance_ratio)
    Xte, yte = data.load_satimage("test")
    Xtr, Xte = standardise(Xtr, Xte)
    return Problem(f"satimage (long-tailed train, IR {args.imbalance_ratio:g}; official test)", Xtr, ytr, Xte, yte,
                   data.SATIMAGE_CLASSES, data.CITATION["satimage"])


def read_table(path: str, target: str):
    """Read a CSV into (X, y, class names, feature names), or raise UsageError with one clear message."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path} as CSV: {exc}") from None
    if len(rows) < 2:
        raise UsageError(f"{path} has no data rows (a header row and at least one row are needed)")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if target not in header:
        raise UsageError(f"no column {target!r} in {path}; columns are: {', '.join(header)}")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise UsageError(f"{path} line {i}: {len(r)} fields, the header has {len(header)}")
    t = header.index(target)
    labels = [r[t].strip() for r in body]
    if any(v == "" for v in labels):
        line = labels.index("") + 2
        raise UsageError(f"column {target!r} line {line}: empty class label")
    features, names = [], []
    for j, name in enumerate(header):
        if j == t:
            continue
        cells = [r[j].strip() for r in body]
        parsed = [_number(v) for v in cells]
        n_numeric = sum(v is not None for v in parsed)
        if n_numeric == 0:
            _warn(f"column {name!r} is not numeric and is not used")
            continue
        for i, (raw, v) in enumerate(zip(cells, parsed), start=2):
            if v is None:
                raise UsageError(f"column {name!r} line {i}: expected a number, got {raw!r}")
            if not math.isfinite(v):
                raise UsageError(f"column {name!r} line {i}: {raw!r} is not a finite number (NaN or inf)")
        features.append(parsed)
        names.append(name)
    if not features:
        raise UsageError(f"{path} has no numeric feature columns besides {target!r}")
    classes = sorted(set(labels), key=_sort_key)
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    return np.array(features, dtype=np.float64).T, y, classes, names


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _sort_key(label: str):
    v = _number(label)
    return (0, v, label) if v is not None else (1, 0.0, label)


def _compare_problem(args):
    from focalkit._demo import Problem, standardise

    if not 0 < args.test_size < 1:
        raise UsageError(f"--test-size must be in (0, 1), got {args.test_size}")
    X, y, classes, _ = read_table(args.csv, args.target)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        raise UsageError(f"column {args.target!r} has a single class ({classes[0]!r}); at least two are needed")
    n_test = math.ceil(args.test_size * len(y))
    need = 2
    for c, n in zip(classes, counts):
        if n < need or n_test < len(classes) or len(y) - n_test < len(classes):
            raise UsageError(f"class {c!r} has {n} row(s), too few for a stratified train/test split "
                             f"(each class needs at least {need}, and each side at least one row per class)")
    for c, n in zip(classes, counts):
        if n < MIN_ROWS_WARN:
            _warn(f"class {c!r} has only {n} rows: its recall will be noisy")
    Xtr, Xte, ytr, yte = _split(X, y, args.test_size)
    Xtr, Xte = standardise(Xtr, Xte)
    return Problem(f"{Path(args.csv).name} (target {args.target!r})", Xtr, ytr, Xte, yte, classes)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``focalkit`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        from focalkit import _demo
    except ImportError as exc:  # the demo extra is missing
        print(f"focalkit: error: {exc.name} is needed: pip install 'focalkit[demo]'", file=sys.stderr)
        return 2
    if args.list_losses:
        for name, spec in _demo.LOSSES.items():
            print(f"{name:15s} {spec.label}")
        return 0
    try:
        losses = _losses(args.losses)
        if args.epochs < 1 or args.seeds < 1:
            raise UsageError("--epochs and --seeds must be >= 1")
        problem = _demo_problem(args) if args.command == "demo" else _compare_problem(args)
    except UsageError as exc:
        print(f"focalkit: error: {exc}", file=sys.stderr)
        return 2
    res = _demo.run(problem, losses, args.seeds, args.epochs, progress=not args.json)
    summ = _demo.summary(res)
    files = [] if args.no_plots else _demo.plots(res, summ, Path(args.out))
    summ["plots"] = files
    if args.json:
        print(json.dumps(summ, indent=2))
    else:
        print(_demo.format_table(summ))
        if files:
            print("Plots: " + ", ".join(files))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
