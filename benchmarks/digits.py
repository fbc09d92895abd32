"""sklearn digits, stratified 80/20: dlforge's cnn-small within a 120 s CPU budget vs. an RBF-SVM.

Run: python benchmarks/digits.py   (prints one JSON line)
The 80% is split 90/10 into train/val for dlforge (val picks the best epoch); the SVM trains on
the whole 80%. Both are scored on the same 20% test set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit  # noqa: E402

from dlforge.quickstart import write_digits  # noqa: E402
from dlforge.tasks import image_classification as ic  # noqa: E402
from dlforge.workspace import Workspace  # noqa: E402

BUDGET = 120.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=8)  # native size: the cheapest epochs
    ap.add_argument("--augment", default="none")
    args = ap.parse_args()
    d = load_digits()
    idx = np.arange(len(d.target))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
    tr_idx, val_idx = train_test_split(train_idx, test_size=0.1, stratify=d.target[train_idx], random_state=0)

    t0 = time.perf_counter()
    svm = SVC(kernel="rbf", gamma="scale", C=10).fit(d.data[train_idx], d.target[train_idx])
    svm_s = time.perf_counter() - t0
    svm_acc = float((svm.predict(d.data[test_idx]) == d.target[test_idx]).mean())

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        v = ws.import_data(write_digits(Path(tmp) / "src"), "digits").version
        split_of = (
            {int(i): "train" for i in tr_idx} | {int(i): "val" for i in val_idx} | {int(i): "test" for i in test_idx}
        )
        # write_digits names files <label>/<index>.png: map each record back to its sklearn index
        v = v.assign_splits({r.sample_id: split_of[int(Path(r.name).stem)] for r in v.records()})
        t0 = time.perf_counter()
        run = ic.train(
            ws,
            v.ref,
            model="cnn-small",
            epochs=40,
            time_budget=BUDGET,
            image_size=args.image_size,
            augment=args.augment,
            hflip=False,
            lr=3e-3,
            batch_size=64,
            seed=0,
        )
        train_s = time.perf_counter() - t0
        m = ic.evaluate_run(run, "test")
        summary = run.info().summary
        ws.close()
    emit(
        {
            "benchmark": "digits",
            "test_n": len(test_idx),
            "dlforge_model": "cnn-small",
            "dlforge_test_accuracy": round(m["accuracy"], 4),
            "dlforge_train_s": round(train_s, 1),
            "dlforge_epochs": summary.get("epochs_done"),
            "image_size": args.image_size,
            "augment": args.augment,
            "budget_s": BUDGET,
            "svm_test_accuracy": round(svm_acc, 4),
            "svm_train_s": round(svm_s, 2),
            "target_accuracy": 0.985,
            "meets_target": m["accuracy"] >= 0.985,
        }
    )


if __name__ == "__main__":
    main()
