import json
import os

import pytest

from focalkit._demo import DEFAULT_LOSSES, LOSSES, METRICS
from focalkit.cli import main

FAST = ["--epochs", "1", "--seeds", "1"]


def test_demo_writes_table_and_plots(tmp_path, capsys):
    assert main(["demo", *FAST, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in DEFAULT_LOSSES:
        assert name in out
    assert "worst recall" in out and "Malerba" in out
    for png in ("focal_loss_curves.png", "per_class_recall.png", "reliability.png"):
        f = tmp_path / png
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_json_has_every_loss_and_metric(tmp_path, capsys):
    names = list(LOSSES)
    assert main(["demo", *FAST, "--json", "--no-plots", "--losses", ",".join(names),
                 "--dataset", "satimage"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["losses"]) == names
    for e in res["losses"].values():
        for m in METRICS:
            assert 0.0 <= e[m]["mean"] <= 1.0 and e[m]["std"] >= 0.0
        assert len(e["per_class_recall"]["mean"]) == 6
    assert res["train_counts"] == [1072, 479, 224, 103, 47, 21]
    assert res["calibration"]["ece_after"] >= 0 and res["plots"] == []


def test_list_losses(capsys):
    assert main(["demo", "--list-losses"]) == 0
    assert "cb-focal" in capsys.readouterr().out


def _csv(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _table(n_per_class=(40, 12, 6)):
    rows = ["a,b,city,label"]
    for k, n in enumerate(n_per_class):
        for i in range(n):
            rows.append(f"{i * 0.1 + k},{(i % 7) - k},town{i % 3},c{k}")
    return "\n".join(rows) + "\n"


def test_compare_runs_and_warns(tmp_path, capsys):
    path = _csv(tmp_path, _table())
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--json", "--no-plots"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert res["classes"] == ["c0", "c1", "c2"]
    assert "1 column(s) are not numeric and are not used: 'city'" in cap.err
    assert "1 class(es) have fewer than 10 rows" in cap.err and "'c2' (6)" in cap.err
    assert cap.err.count("warning") == 2


BAD = [
    ("missing file", None, "no such file"),
    ("missing column", _table(), "no column 'target'"),
    ("single class", "a,target\n1,x\n2,x\n3,x\n", "single class"),
    ("too few rows", "a,target\n1,x\n2,x\n3,x\n4,y\n5,x\n6,x\n", "class 'y' has 1 row"),
    ("nan", "a,target\n1,x\nnan,y\n3,x\n4,y\n", "column 'a' line 3"),
    ("text in numbers", "a,target\n1,x\n2,y\nfoo,x\n4,y\n", "expected a number, got 'foo'"),
    ("empty cell", "a,target\n1,x\n,y\n3,x\n4,y\n", "column 'a' line 3: an empty cell"),
    ("duplicate target", "y,y,a\n1,1,2\n0,0,3\n", "duplicate column name(s) 'y'"),
    ("directory", "DIR", "is a directory"),
    ("fifo", "FIFO", "not a regular file"),
    ("not csv", b"\xff\xfe\x00\x01garbage\x00", "cannot read"),
    ("no numeric column", "a,target\nu,x\nv,y\nw,x\nz,y\n", "no numeric feature columns"),
    ("ragged row", "a,target\n1,x\n2\n", "line 3"),
    ("no rows", "a,target\n", "no data rows"),
    ("NaN label", "a,target\n1,0\n2,NaN\n3,1\n4,0\n", "line 3: missing class label ('NaN'"),
    ("null label", "a,target\n1,0\n2,1\n3,null\n4,0\n", "line 4: missing class label ('null'"),
    ("None label", "a,target\n1,0\n2,1\n3,0\n4,None\n", "line 5: missing class label ('None'"),
    ("NA label", "a,target\n1,na\n2,1\n3,0\n4,1\n", "line 2: missing class label ('na'"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_csv_exits_2_with_one_message(tmp_path, capsys, case):
    _, text, message = case
    if text is None:
        path = str(tmp_path / "absent.csv")
    elif text == "DIR":
        path = str(tmp_path)
    elif text == "FIFO":
        path = str(tmp_path / "pipe.csv")
        os.mkfifo(path)
    elif isinstance(text, bytes):
        (tmp_path / "bin.csv").write_bytes(text)
        path = str(tmp_path / "bin.csv")
    else:
        path = _csv(tmp_path, text)
    target = "target"
    assert main(["compare", "--csv", path, "--target", target, *FAST, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("focalkit: error:") == 1


def test_labels_1_and_1_point_0_are_one_class(tmp_path, capsys):
    rows = ["a,label"] + [f"{i},{'1' if i % 2 else '1.0'}" for i in range(20)] + [f"{i},0" for i in range(20)]
    path = _csv(tmp_path, "\n".join(rows) + "\n")
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--json", "--no-plots"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["0", "1"]


def test_one_warning_line_for_many_text_columns(tmp_path, capsys):
    names = [f"t{j}" for j in range(300)]
    rows = [",".join(["a", "label"] + names)]
    rows += [",".join([str(i), str(i % 2)] + ["x"] * 300) for i in range(30)]
    path = _csv(tmp_path, "\n".join(rows) + "\n")
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--json", "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "300 column(s)" in err and "and 295 more" in err


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_bad_out_fails_before_any_training(tmp_path, capsys, monkeypatch, kind):
    import focalkit._demo as demo

    def boom(*a, **k):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(demo, "run", boom)
    if kind == "file":
        out = tmp_path / "out.txt"
        out.write_text("x")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        out = ro / "plots"
        if os.access(ro, os.W_OK):  # root ignores permission bits: use a path under a file instead
            (tmp_path / "f").write_text("x")
            out = tmp_path / "f" / "plots"
    path = _csv(tmp_path, _table())
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "Traceback" not in err


def test_plot_failure_leaves_no_half_written_files(tmp_path, capsys, monkeypatch):
    import focalkit._demo as demo

    real = demo._save
    calls = []

    def flaky(fig, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(fig, path)

    monkeypatch.setattr(demo, "_save", flaky)
    out = tmp_path / "plots"
    path = _csv(tmp_path, _table())
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--out", str(out)]) == 2
    assert "disk full" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_unknown_loss_exits_2(capsys):
    assert main(["demo", "--losses", "focal,nope"]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err


def test_index_column_of_to_csv_is_dropped_with_a_warning(tmp_path, capsys):
    """Issue 19, item 17: rows sorted by class with pure-noise features; the unnamed index column that
    DataFrame.to_csv() writes (and an ID counting up) would leak the class."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [",id,a,b,label"] + [f"{i},{i + 1},{rng.normal():.4f},{rng.normal():.4f},{'x' if i < 30 else 'y'}"
                                for i in range(60)]
    path = _csv(tmp_path, "\n".join(rows) + "\n")
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--json", "--no-plots"]) == 0
    cap = capsys.readouterr()
    assert "2 column(s) look like a row index or ID and are not used" in cap.err
    assert "'Unnamed: 0', 'id'" in cap.err


def test_class_order_does_not_depend_on_the_input_order():
    """Issue 19, item 18: "NaN" sorted as a number made the class order vary (with the set's hash
    order, so with PYTHONHASHSEED); a non-finite number now sorts as text."""
    import random

    from focalkit.cli import _sort_key

    labels = ["b", "10", "a", "2", "NaN", "inf", "-1"]
    orders = set()
    for seed in range(20):
        shuffled = labels[:]
        random.Random(seed).shuffle(shuffled)
        orders.add(tuple(sorted(shuffled, key=_sort_key)))
    assert orders == {("-1", "2", "10", "NaN", "a", "b", "inf")}


def test_many_single_row_classes_blame_no_one_class(tmp_path, capsys):
    """Issue 19, item 19: with 1,000 classes of one row each the message blamed 'c0', the one class
    with enough rows; now it names the first class that is short."""
    rows = ["a,label"] + [f"{i},c0" for i in range(40)] + [f"{i},k{i}" for i in range(1000)]
    path = _csv(tmp_path, "\n".join(rows) + "\n")
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "'c0'" not in err and "has 1 row(s)" in err


def test_too_small_a_split_names_the_split(tmp_path, capsys):
    rows = ["a,label"] + [f"{i},{c}" for i in range(3) for c in "abcdefgh"]
    path = _csv(tmp_path, "\n".join(rows) + "\n")
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--no-plots", "--test-size", "0.1"]) == 2
    assert "8 classes in 24 rows" in capsys.readouterr().err


def test_out_below_a_regular_file_says_not_a_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    path = _csv(tmp_path, _table())
    assert main(["compare", "--csv", path, "--target", "label", *FAST, "--out", str(tmp_path / "file" / "plots")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "permission" not in err


@pytest.mark.parametrize("kind", ["gz", "zip"])
def test_compressed_csv_is_read(tmp_path, capsys, kind):
    import gzip
    import zipfile

    text = _table()
    if kind == "gz":
        path = tmp_path / "t.csv.gz"
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path = tmp_path / "t.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("t.csv", text)
    assert main(["compare", "--csv", str(path), "--target", "label", *FAST, "--json", "--no-plots"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["c0", "c1", "c2"]
