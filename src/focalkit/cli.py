"""``focalkit``: compare losses on real imbalanced data (``demo``) or on your own table (``compare``).

Bad input gives one message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

MIN_ROWS_WARN = 10


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit code 2."""


# class-label tokens that mean "missing" (case-insensitive), besides an empty cell: refused, never a class
MISSING_SHOWN = ("NaN", "NA", "N/A", "null", "None")
MISSING_LABELS = frozenset(t.lower() for t in MISSING_SHOWN)


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
    c.add_argument("--target", required=True,
                   help="name of the class column (an empty cell or NaN, NA, N/A, null, None in any case is a "
                        "missing label and is refused); a leading unnamed column, or an integer column named "
                        "id, index, idx, row or ..._id counting 0, 1, 2, ... or 1, 2, 3, ..., is taken for a row "
                        "index or ID and not used, with a warning")
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


def _check_input(path: str) -> Path:
    """A readable regular file, or one clear message (a folder or a FIFO is not "no such file")."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no such file: {path}")
    if p.is_dir():
        raise UsageError(f"{path} is a directory, not a CSV file")
    if not p.is_file():
        raise UsageError(f"{path} is not a regular file (a FIFO, socket or device): pass a CSV file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"cannot read {path}: permission denied")
    return p


def check_output_dir(path: str) -> Path:
    """The plots' folder, checked before any training: it exists as a writable folder or can be made."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--out {path} exists and is not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {path}: {probe} is a file, not a folder (not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: cannot write to {probe} (permission denied)")
    return p


def _compression(p: Path) -> Optional[str]:
    """gzip or zip by their first bytes (whatever the file's name), else None."""
    with p.open("rb") as fh:
        magic = fh.read(4)
    return "gzip" if magic[:2] == b"\x1f\x8b" else "zip" if magic == b"PK\x03\x04" else None


def _open_text(p: Path):
    kind = _compression(p)
    if kind == "gzip":
        import gzip

        return gzip.open(p, "rt", newline="", encoding="utf-8-sig")
    if kind == "zip":
        import io
        import zipfile

        zf = zipfile.ZipFile(p)
        names = [n for n in zf.namelist() if not n.endswith("/")]
        if len(names) != 1:
            raise UsageError(f"{p} is a zip archive of {len(names)} files; one CSV file is needed")
        return io.TextIOWrapper(zf.open(names[0]), encoding="utf-8-sig", newline="")
    return p.open(newline="", encoding="utf-8-sig")


def _header(p: Path) -> List[str]:
    with _open_text(p) as fh:
        for row in csv.reader(fh):
            if any(cell.strip() for cell in row):
                return [h.strip() for h in row]
    return []


def _summarise(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _class_names(labels) -> tuple:
    """Class indices and names: labels that are all numbers are classes by value (``1`` and ``1.0`` are
    one class, named ``1``); otherwise by their text."""
    import pandas as pd

    text = labels.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce")
    if values.notna().all():
        uniq = np.unique(values.to_numpy(dtype=np.float64))
        names = [f"{v:g}" if float(v).is_integer() else repr(float(v)) for v in uniq]
        return np.searchsorted(uniq, values.to_numpy(dtype=np.float64)).astype(np.int64), names
    uniq = sorted(set(text), key=_sort_key)
    index = {c: k for k, c in enumerate(uniq)}
    return text.map(index).to_numpy(dtype=np.int64), uniq


def read_table(path: str, target: str):
    """Read a CSV into (X, y, class names, feature names), or raise UsageError with one clear message.

    pandas' C parser reads the table (memory a few times the file's size); the header is checked
    first (duplicate names are refused: a copy of the target would be a label leak)."""
    import pandas as pd

    p = _check_input(path)
    try:
        header = _header(p)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as exc:
        raise UsageError(f"cannot read {path} as CSV: {exc}") from None
    if not header:
        raise UsageError(f"{path} is empty (a header row and at least one row are needed)")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise UsageError(f"{path}: duplicate column name(s) {_summarise(dupes)}; every column needs its own name")
    if target not in header:
        raise UsageError(f"no column {target!r} in {path}; columns are: {_summarise(header, 20)}")
    try:
        df = pd.read_csv(p, dtype={target: str}, skipinitialspace=True, encoding="utf-8-sig",
                         keep_default_na=False, na_values=[""], skip_blank_lines=True, compression=_compression(p))
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as exc:
        raise UsageError(f"cannot read {path} as CSV: {str(exc).strip().splitlines()[0]}") from None
    df.columns = [str(c).strip() for c in df.columns]
    if len(df) < 1:
        raise UsageError(f"{path} has no data rows (a header row and at least one row are needed)")
    labels = df[target]
    text = labels.astype(str).str.strip()
    missing = labels.isna() | text.str.lower().isin(MISSING_LABELS)
    if missing.any():
        line = int(np.flatnonzero(missing.to_numpy())[0]) + 2
        shown = "empty" if not text.iloc[line - 2] else repr(text.iloc[line - 2])
        raise UsageError(f"column {target!r} line {line}: missing class label ({shown}; the tokens "
                         f"{', '.join(repr(t) for t in MISSING_SHOWN)} and an empty cell mean missing)")
    dropped = _index_columns(df, header, target)
    if dropped:
        _warn(f"{len(dropped)} column(s) look like a row index or ID and are not used (a classifier would learn "
              f"the row order): {_summarise(dropped)}")
    features, names, skipped = [], [], []
    for name in df.columns:
        if name == target or name in dropped:
            continue
        col = df[name]
        values = col if col.dtype.kind in "fiub" else pd.to_numeric(col, errors="coerce")
        v = values.to_numpy(dtype=np.float64)
        finite = np.isfinite(v)
        if col.dtype.kind not in "fiub" and not finite.any() and not values.notna().any():
            skipped.append(name)
            continue
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raw = col.iloc[i]
            if isinstance(raw, str):
                raise UsageError(f"column {name!r} line {i + 2}: expected a number, got {raw!r}")
            raise UsageError(f"column {name!r} line {i + 2}: an empty cell, NaN or inf (a finite number is needed)")
        features.append(v)
        names.append(name)
    if skipped:
        _warn(f"{len(skipped)} column(s) are not numeric and are not used: {_summarise(skipped)}")
    if not features:
        raise UsageError(f"{path} has no numeric feature columns besides {target!r}")
    y, classes = _class_names(labels)
    return np.stack(features, axis=1), y, classes, names


def _index_columns(df, header: List[str], target: str) -> List[str]:
    """Columns that are a row index or an ID, not a feature: a leading column with no name (what
    ``DataFrame.to_csv()`` writes), or a column named like an index or ID (``id``, ``index``, ``idx``,
    ``row``, ``..._id``) whose integers count up by one from 0 or 1."""
    out = []
    for i, name in enumerate(df.columns):
        if name == target:
            continue
        if i == 0 and (header[0] == "" or str(name).startswith("Unnamed: 0")):
            out.append(name)
            continue
        key = str(name).strip().lower()
        if key in ("id", "index", "idx", "row", "row_id", "rowid") or key.endswith("_id"):
            col = df[name]
            if col.dtype.kind in "iu" and len(col) > 2:
                v = col.to_numpy()
                if v[0] in (0, 1) and (np.diff(v) == 1).all():
                    out.append(name)
    return out


def _number(text: str) -> Optional[float]:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None  # NaN compares with nothing: it would make the order vary


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
        if n < need:
            raise UsageError(f"class {c!r} has {n} row(s), too few for a stratified train/test split "
                             f"(each class needs at least {need}, and each side at least one row per class)")
    if n_test < len(classes) or len(y) - n_test < len(classes):  # no one class is to blame
        raise UsageError(f"{len(classes)} classes in {len(y)} rows: --test-size {args.test_size:g} leaves "
                         f"{n_test} test and {len(y) - n_test} training rows, and a stratified split needs at "
                         f"least one row per class on each side")
    rare = [f"{c!r} ({n})" for c, n in zip(classes, counts) if n < MIN_ROWS_WARN]
    if rare:
        shown = ", ".join(rare[:5]) + (f" and {len(rare) - 5} more" if len(rare) > 5 else "")
        _warn(f"{len(rare)} class(es) have fewer than {MIN_ROWS_WARN} rows, so their recall will be noisy: {shown}")
    Xtr, Xte, ytr, yte = _split(X, y, args.test_size)
    Xtr, Xte = standardise(Xtr, Xte)
    return Problem(f"{Path(args.csv).name} (target {args.target!r})", Xtr, ytr, Xte, yte, classes)


def _write_plots(demo, res, summ, out: Path) -> List[str]:
    """Plots go to a temporary folder inside ``out`` and are moved into place once all are written,
    so a failure leaves no half-written files."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".focalkit-", dir=out))
    try:
        written = demo.plots(res, summ, tmp)
        final = []
        for f in written:
            dest = out / Path(f).name
            os.replace(f, dest)
            final.append(str(dest))
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        out = None if args.no_plots else check_output_dir(args.out)  # before any training
        problem = _demo_problem(args) if args.command == "demo" else _compare_problem(args)
    except UsageError as exc:
        print(f"focalkit: error: {exc}", file=sys.stderr)
        return 2
    res = _demo.run(problem, losses, args.seeds, args.epochs, progress=not args.json)
    summ = _demo.summary(res)
    try:
        files = [] if out is None else _write_plots(_demo, res, summ, out)
    except OSError as exc:
        print(f"focalkit: error: cannot write the plots to {args.out}: {exc}", file=sys.stderr)
        return 2
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
