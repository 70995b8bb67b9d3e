"""The comparison behind ``focalkit demo`` and ``focalkit compare``: the same small MLP trained with
each loss on the same split, several seeds, metrics as mean ± std. Uses the public API only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

import focalkit as fk

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class LossSpec:
    """A named loss for a multi-class model; ``make(counts)`` builds it from the class counts."""

    label: str
    make: Callable[[np.ndarray], LossFn]
    sigmoid: bool = False  # one-vs-rest outputs: probabilities are normalised sigmoids
    gamma: float = 0.0  # softmax focal gamma, for the calibration map
    weighted: Optional[Callable[[np.ndarray], Tensor]] = None


def _inverse_frequency(counts: np.ndarray) -> Tensor:
    c = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1)
    return c.sum() / (len(c) * c)


def _cb(counts: np.ndarray) -> Tensor:
    return fk.class_balanced_weights(counts, beta=0.999)


def _softmax(gamma: float, weight=None, label_smoothing: float = 0.0) -> Callable[[np.ndarray], LossFn]:
    def make(counts: np.ndarray) -> LossFn:
        w = None if weight is None else weight(counts)
        return lambda z, y: fk.softmax_focal_loss(z, y, gamma=gamma, weight=w, label_smoothing=label_smoothing)
    return make


def _one_vs_rest(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[np.ndarray], LossFn]:
    def make(counts: np.ndarray) -> LossFn:
        k = len(counts)
        return lambda z, y: fn(z, nn.functional.one_hot(y, k).to(z.dtype))
    return make


LOSSES: Dict[str, LossSpec] = {
    "ce": LossSpec("cross-entropy", _softmax(0.0)),
    "weighted-ce": LossSpec("α-weighted CE (inverse frequency)", _softmax(0.0, _inverse_frequency),
                            weighted=_inverse_frequency),
    "focal": LossSpec("softmax focal γ=2", _softmax(2.0), gamma=2.0),
    "cb-focal": LossSpec("class-balanced focal γ=2, β=0.999", _softmax(2.0, _cb), gamma=2.0, weighted=_cb),
    "cb-ce": LossSpec("class-balanced CE β=0.999", _softmax(0.0, _cb), weighted=_cb),
    "focal-g0.5": LossSpec("softmax focal γ=0.5", _softmax(0.5), gamma=0.5),
    "focal-ls": LossSpec("softmax focal γ=2, label smoothing 0.1", _softmax(2.0, label_smoothing=0.1)),
    "sigmoid-focal": LossSpec("sigmoid focal α=0.25 γ=2 (one-vs-rest)", _one_vs_rest(
        lambda z, t: fk.sigmoid_focal_loss(z, t, alpha=0.25, gamma=2.0, reduction="sum") / z.shape[0]),
        sigmoid=True),
    "focal-star": LossSpec("FL* γ=2 β=1 (one-vs-rest)", _one_vs_rest(
        lambda z, t: fk.focal_loss_star(z, t, gamma=2.0, beta=1.0, reduction="sum") / z.shape[0]), sigmoid=True),
}
DEFAULT_LOSSES = ("ce", "weighted-ce", "focal", "cb-focal")
METRICS = ("accuracy", "macro_f1", "balanced_accuracy", "worst_class_recall", "ece")


@dataclass
class Problem:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: Sequence[str]
    credit: str = ""


@dataclass
class Result:
    problem: Problem
    losses: List[str]
    seeds: int
    epochs: int
    runs: Dict[str, List[Dict[str, object]]] = field(default_factory=dict)
    calibration: Optional[Dict[str, object]] = None
    seconds: float = 0.0


def standardise(X_train: np.ndarray, X_test: np.ndarray, log: bool = False):
    if log:  # heavy-tailed counts and areas: signed log1p first
        X_train, X_test = np.sign(X_train) * np.log1p(np.abs(X_train)), np.sign(X_test) * np.log1p(np.abs(X_test))
    mu, sd = X_train.mean(0), X_train.std(0)
    sd[sd == 0] = 1.0
    return (X_train - mu) / sd, (X_test - mu) / sd


def _mlp(d: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, k))


def _probs(logits: Tensor, spec: LossSpec) -> Tensor:
    if spec.sigmoid:
        s = torch.sigmoid(logits)
        return s / s.sum(1, keepdim=True)
    return torch.softmax(logits, 1)


def metrics(y_true: np.ndarray, probs: np.ndarray, k: int) -> Dict[str, object]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

    pred = probs.argmax(1)
    recall = recall_score(y_true, pred, labels=list(range(k)), average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=list(range(k)), average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "worst_class_recall": float(recall.min()),
        "ece": fk.expected_calibration_error(probs, y_true),
        "per_class_recall": [float(r) for r in recall],
    }


def train_one(problem: Problem, spec: LossSpec, seed: int, epochs: int, batch: int = 128):
    torch.manual_seed(seed)
    k = len(problem.classes)
    counts = np.bincount(problem.y_train, minlength=k)
    loss_fn = spec.make(counts)
    X = torch.as_tensor(problem.X_train, dtype=torch.float32)
    y = torch.as_tensor(problem.y_train, dtype=torch.long)
    model = _mlp(X.shape[1], k)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(X[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        logits = model(torch.as_tensor(problem.X_test, dtype=torch.float32))
    return _probs(logits, spec).double().numpy()


def run(problem: Problem, losses: Sequence[str], seeds: int, epochs: int, progress: bool = True) -> Result:
    from tqdm import tqdm

    torch.set_num_threads(1)  # a tiny MLP: threads cost more than they give
    start = time.perf_counter()
    res = Result(problem, list(losses), seeds, epochs)
    k = len(problem.classes)
    jobs = [(name, s) for name in losses for s in range(seeds)]
    for name, seed in tqdm(jobs, desc="training", unit="model", disable=not progress, leave=False):
        spec = LOSSES[name]
        probs = train_one(problem, spec, seed, epochs)
        m = metrics(problem.y_test, probs, k)
        res.runs.setdefault(name, []).append(m)
        if res.calibration is None and seed == 0 and spec.gamma > 0 and not spec.sigmoid:
            weight = None if spec.weighted is None else spec.weighted(np.bincount(problem.y_train, minlength=k))
            calibrated = fk.focal_calibration_map(probs, spec.gamma, weight, dim=1)
            res.calibration = {"loss": name, "gamma": spec.gamma, "probs": probs, "calibrated": calibrated,
                               "ece_before": m["ece"],
                               "ece_after": fk.expected_calibration_error(calibrated, problem.y_test)}
    res.seconds = time.perf_counter() - start
    return res


def summary(res: Result) -> Dict[str, object]:
    """Machine-readable results: mean and std over seeds of every metric, per loss."""
    out: Dict[str, object] = {"dataset": res.problem.name, "classes": list(res.problem.classes),
                              "train_counts": np.bincount(res.problem.y_train,
                                                          minlength=len(res.problem.classes)).tolist(),
                              "test_counts": np.bincount(res.problem.y_test,
                                                         minlength=len(res.problem.classes)).tolist(),
                              "seeds": res.seeds, "epochs": res.epochs, "seconds": round(res.seconds, 2),
                              "credit": res.problem.credit, "losses": {}}
    for name, runs in res.runs.items():
        entry: Dict[str, object] = {"label": LOSSES[name].label}
        for key in METRICS:
            vals = np.array([r[key] for r in runs], dtype=float)
            entry[key] = {"mean": float(vals.mean()), "std": float(vals.std())}
        rec = np.array([r["per_class_recall"] for r in runs], dtype=float)
        entry["per_class_recall"] = {"mean": rec.mean(0).tolist(), "std": rec.std(0).tolist()}
        out["losses"][name] = entry
    if res.calibration is not None:
        c = res.calibration
        out["calibration"] = {k: c[k] for k in ("loss", "gamma", "ece_before", "ece_after")}
    return out


def format_table(summ: Dict[str, object]) -> str:
    heads = ("loss", "accuracy", "macro-F1", "balanced acc", "worst recall", "ECE")
    rows = []
    for name, e in summ["losses"].items():
        rows.append([name] + [f"{e[m]['mean']:.3f} ± {e[m]['std']:.3f}" for m in METRICS])
    classes = summ["classes"]
    rec_heads = ["loss"] + [f"{c} (n={n})" for c, n in zip(classes, summ["test_counts"])]
    rec_rows = [[name] + [f"{m:.2f} ± {s:.2f}" for m, s in zip(e["per_class_recall"]["mean"],
                                                               e["per_class_recall"]["std"])]
                for name, e in summ["losses"].items()]

    def table(h, rs):
        widths = [max(len(str(r[i])) for r in [h] + rs) for i in range(len(h))]
        line = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()  # noqa: E731
        return "\n".join([line(h), "  ".join("-" * w for w in widths)] + [line(r) for r in rs])

    text = [f"{summ['dataset']}: train {sum(summ['train_counts'])} rows {summ['train_counts']}, "
            f"test {sum(summ['test_counts'])} rows; {summ['seeds']} seeds x {summ['epochs']} epochs, "
            f"mean ± std ({summ['seconds']:.0f} s)", "", table(heads, rows), "", "Recall per class (test)",
            table(rec_heads, rec_rows)]
    if "calibration" in summ:
        c = summ["calibration"]
        text += ["", f"Focal calibration map on '{c['loss']}' (seed 0): ECE {c['ece_before']:.3f} -> "
                     f"{c['ece_after']:.3f}"]
    text += ["", "Losses: " + "; ".join(f"{n} = {e['label']}" for n, e in summ["losses"].items())]
    if summ["credit"]:
        text.append(f"Data: {summ['credit']}")
    return "\n".join(text)


def plots(res: Result, summ: Dict[str, object], out_dir) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    # (a) FL against p_t, Lin et al. Figure 1.
    fig, ax = plt.subplots(figsize=(6, 4.2))
    pt = torch.linspace(1e-3, 1 - 1e-3, 500, dtype=torch.float64)
    x = torch.log(pt) - torch.log1p(-pt)
    for g in (0.0, 0.5, 1.0, 2.0, 5.0):
        fl = fk.sigmoid_focal_loss(x, torch.ones_like(x), alpha=None, gamma=g, reduction="none")
        ax.plot(pt.numpy(), fl.numpy(), label=f"γ = {g:g}" + (" (CE)" if g == 0 else ""))
    ax.set(xlabel="probability of the ground-truth class $p_t$", ylabel="loss", ylim=(0, 5), xlim=(0, 1),
           title="Focal loss $-(1-p_t)^\\gamma \\log p_t$")
    ax.axvspan(0.6, 1.0, color="0.92", zorder=0)
    ax.text(0.8, 4.5, "well-classified\nexamples", ha="center", va="top", fontsize=9)
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, out_dir / "focal_loss_curves.png"))

    # (b) per-class recall per loss.
    names = list(summ["losses"])
    classes = summ["classes"]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(classes) + 2), 4.2))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        r = summ["losses"][name]["per_class_recall"]
        pos = np.arange(len(classes)) + (i - (len(names) - 1) / 2) * width
        ax.bar(pos, r["mean"], width, yerr=r["std"], label=name, capsize=2)
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels([f"{c}\n(n={n})" for c, n in zip(classes, summ["test_counts"])], fontsize=8)
    ax.set(ylabel="recall on the test split", ylim=(0, 1.05), title=f"Recall per class: {summ['dataset']}")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "per_class_recall.png"))

    # (c) reliability diagram before / after the focal calibration map.
    if res.calibration is not None:
        c = res.calibration
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        for key, lab in (("probs", f"{c['loss']} as trained (ECE {c['ece_before']:.3f})"),
                         ("calibrated", f"after focal calibration map (ECE {c['ece_after']:.3f})")):
            conf, acc = _reliability(c[key], res.problem.y_test)
            ax.plot(conf, acc, "o-", label=lab)
        ax.set(xlabel="confidence (top-class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
               title=f"Reliability, γ = {c['gamma']:g}")
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        written.append(_save(fig, out_dir / "reliability.png"))
    plt.close("all")
    return written


def _reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 15):
    conf = probs.max(1)
    hit = probs.argmax(1) == y
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    xs, ys = [], []
    for b in range(n_bins):
        m = idx == b
        if m.sum() >= 5:
            xs.append(conf[m].mean())
            ys.append(hit[m].mean())
    return xs, ys


def _save(fig, path) -> str:
    fig.savefig(path, dpi=110)
    return str(path)
