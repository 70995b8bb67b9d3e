"""Vendored real class-imbalanced data sets (UCI, CC BY 4.0); see README.md beside this file.

Every loader returns ``(X, y)``: ``X`` float64 of shape (n, d), ``y`` int64 labels in 0..K-1.
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Literal, Tuple

import numpy as np

from focalkit import _checks

#: The five classes of page-blocks, in label order (label 1 is "text").
PAGE_BLOCKS_CLASSES = ("text", "horizontal line", "graphic", "vertical line", "picture")
#: The six classes of satimage, in label order.
SATIMAGE_CLASSES = ("red soil", "cotton crop", "grey soil", "damp grey soil", "vegetation stubble",
                    "very damp grey soil")
_SATIMAGE_LABELS = (1, 2, 3, 4, 5, 7)
#: Where each vendored data set comes from, and its licence (cite it with results on it).
CITATION = {
    "page-blocks": "UCI Page Blocks Classification (Malerba 1995), CC BY 4.0, doi:10.24432/C5J590",
    "satimage": "UCI Statlog (Landsat Satellite) (Srinivasan 1993), CC BY 4.0, doi:10.24432/C55887",
}

__all__ = [
    "CITATION",
    "PAGE_BLOCKS_CLASSES",
    "SATIMAGE_CLASSES",
    "load_page_blocks",
    "load_satimage",
    "load_satimage_long_tailed",
]


def _read(name: str) -> str:
    with resources.files(__package__).joinpath(name).open("rb") as fh:
        return gzip.decompress(fh.read()).decode("ascii")


def load_page_blocks() -> Tuple[np.ndarray, np.ndarray]:
    """Page Blocks: 5,472 x 10 features, 5 classes with counts 4913 / 329 / 28 / 87 / 115.

    Labels 1..5 of the original become 0..4 (:data:`PAGE_BLOCKS_CLASSES`).
    """
    rows = [line for line in _read("page-blocks.dat.gz").splitlines() if line and not line.startswith("@")]
    data = np.array([[float(v) for v in line.split(",")] for line in rows])
    return data[:, :-1], data[:, -1].astype(np.int64) - 1


def load_satimage(split: Literal["train", "test"] = "train") -> Tuple[np.ndarray, np.ndarray]:
    """Statlog (Landsat Satellite): 36 features, official split (train 4,435 rows, test 2,000).

    Labels 1, 2, 3, 4, 5, 7 become 0..5 (:data:`SATIMAGE_CLASSES`).
    """
    _checks.choice("split", split, ("train", "test"))
    data = np.loadtxt(_read(f"satimage-{split}.txt.gz").splitlines())
    labels = data[:, -1].astype(np.int64)
    return data[:, :-1], np.searchsorted(np.array(_SATIMAGE_LABELS), labels).astype(np.int64)


def load_satimage_long_tailed(imbalance_ratio: float = 50.0, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The satimage training split subsampled to a long tail: class ``i`` keeps
    ``min(n_i, round(n_max * imbalance_ratio ** (-i / (K - 1))))`` rows, drawn with ``seed``.

    With the default ratio 50 the counts are 1072, 479, 224, 103, 47, 21. Evaluate on
    ``load_satimage("test")``, which is untouched.
    """
    ratio = _checks.number("imbalance_ratio", imbalance_ratio, lo=1.0)
    X, y = load_satimage("train")
    counts = np.bincount(y)
    k = len(counts)
    rng = np.random.default_rng(seed)
    keep = []
    for i in range(k):
        want = min(counts[i], int(round(counts.max() * ratio ** (-i / (k - 1)))))
        idx = np.flatnonzero(y == i)
        keep.append(np.sort(rng.choice(idx, size=want, replace=False)))
    keep = np.concatenate(keep)
    return X[keep], y[keep]
