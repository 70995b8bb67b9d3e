import numpy as np
import pytest

from focalkit import data


def test_page_blocks_counts():
    X, y = data.load_page_blocks()
    assert X.shape == (5472, 10) and X.dtype == np.float64 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [4913, 329, 28, 87, 115]
    assert len(data.PAGE_BLOCKS_CLASSES) == 5


@pytest.mark.parametrize("split,counts", [("train", [1072, 479, 961, 415, 470, 1038]),
                                          ("test", [461, 224, 397, 211, 237, 470])])
def test_satimage_counts(split, counts):
    X, y = data.load_satimage(split)
    assert X.shape == (sum(counts), 36)
    assert np.bincount(y).tolist() == counts


def test_satimage_long_tailed():
    X, y = data.load_satimage_long_tailed()
    assert np.bincount(y).tolist() == [1072, 479, 224, 103, 47, 21]
    X2, y2 = data.load_satimage_long_tailed(10.0, seed=1)
    n = np.bincount(y2)
    assert n[0] == 1072 and n[-1] == round(1072 / 10)
    assert X.shape[1] == 36
    with pytest.raises(ValueError, match="imbalance_ratio"):
        data.load_satimage_long_tailed(0.5)
    with pytest.raises(ValueError, match="split"):
        data.load_satimage("valid")
