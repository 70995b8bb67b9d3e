"""XGBoost on page-blocks: the built-in softmax log-loss against focalkit's softmax focal objective.

    python examples/gbdt_page_blocks.py

Same stratified 70/30 split, same trees (depth 4, eta 0.1, 100 rounds); per-class recall on the test
split. Numbers in docs/gbdt.md are this script's output.
"""

import numpy as np
import xgboost as xgb
from sklearn.metrics import balanced_accuracy_score, recall_score
from sklearn.model_selection import train_test_split

from focalkit import class_balanced_weights
from focalkit.adapters.xgboost import softmax_focal_objective
from focalkit.data import CITATION, PAGE_BLOCKS_CLASSES, load_page_blocks

X, y = load_page_blocks()
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
K = len(PAGE_BLOCKS_CLASSES)
params = {"max_depth": 4, "eta": 0.1, "num_class": K, "nthread": 2}
dtr, dte = xgb.DMatrix(Xtr, ytr), xgb.DMatrix(Xte, yte)
cb = class_balanced_weights(np.bincount(ytr, minlength=K), beta=0.999).tolist()

runs = {
    "logloss (multi:softprob)": dict(params={**params, "objective": "multi:softprob"}),
    "focal γ=2": dict(params={**params, "disable_default_eval_metric": 1}, obj=softmax_focal_objective(2.0)),
    "class-balanced focal γ=2": dict(params={**params, "disable_default_eval_metric": 1},
                                     obj=softmax_focal_objective(2.0, weight=cb)),
}
print(f"page-blocks, test counts {np.bincount(yte).tolist()}")
print(f"{'objective':28s} {'bal. acc':>8s}  " + "  ".join(f"{c[:10]:>10s}" for c in PAGE_BLOCKS_CLASSES))
for name, kw in runs.items():
    bst = xgb.train(kw["params"], dtr, 100, obj=kw.get("obj"))
    pred = bst.predict(dte, output_margin=True).reshape(len(yte), K).argmax(1)
    rec = recall_score(yte, pred, average=None, labels=list(range(K)))
    print(f"{name:28s} {balanced_accuracy_score(yte, pred):8.3f}  " + "  ".join(f"{r:10.3f}" for r in rec))
print(f"Data: {CITATION['page-blocks']}")
