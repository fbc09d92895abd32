"""Label-error mining on scikit-learn's digits with 5% of the labels flipped (seed 0).

Digits (1,797 8x8 images) are written as PNGs and wrapped in SampleRecords;
5% of the labels are replaced by another random class. ``find_label_issues``
ranks samples by cleanlab's label quality computed from out-of-fold
probabilities; we flag the k = 2 x #flipped least trustworthy samples and
report precision and recall of that set against the flips, next to flagging k
samples at random (expected recall = k / N). Also reported: precision/recall of
cleanlab's own flagged set (no fixed k). Target: recall >= 0.8.

Prints one JSON line.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    from dlforge.data.quality import find_label_issues
    from dlforge.data.records import Annotation, SampleRecord

    d = load_digits()
    y = d.target.copy()
    rng = np.random.default_rng(0)
    n = len(y)
    n_flip = int(round(0.05 * n))
    flip = rng.choice(n, n_flip, replace=False)
    y[flip] = (y[flip] + rng.integers(1, 10, n_flip)) % 10
    root = Path(tempfile.mkdtemp(prefix="label-noise-"))
    records = []
    for i in range(n):
        p = root / f"{i}.png"
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(p)
        records.append(
            SampleRecord(
                i,
                hashlib.sha256(p.read_bytes()).hexdigest(),
                "image",
                p.name,
                p,
                annotations=[Annotation("class", str(y[i]))],
            )
        )
    t0 = time.perf_counter()
    res = find_label_issues(records, [str(c) for c in range(10)], seed=0)
    seconds = time.perf_counter() - t0
    flipped = set(flip.tolist())
    k = 2 * n_flip
    top = set(res.ranked(k))
    hit = len(top & flipped)
    flagged = {i.sample_id for i in res.issues if i.kind == "label"}
    rand_recall = []
    for s in range(100):
        pick = set(np.random.default_rng(s).choice(n, k, replace=False).tolist())
        rand_recall.append(len(pick & flipped) / n_flip)
    suggested_right = sum(
        1
        for i in res.issues
        if i.kind == "label" and i.sample_id in flipped and i.suggested == str(d.target[i.sample_id])
    )
    print(
        json.dumps(
            {
                "benchmark": "label_noise",
                "dataset": "sklearn digits (1797 images), 5% labels flipped, seed 0",
                "flipped": n_flip,
                "k": k,
                "recall_at_k": round(hit / n_flip, 4),
                "precision_at_k": round(hit / k, 4),
                "random_recall_at_k": round(float(np.mean(rand_recall)), 4),
                "random_precision_at_k": round(float(np.mean(rand_recall)) * n_flip / k, 4),
                "cleanlab_flagged": len(flagged),
                "cleanlab_flagged_precision": round(len(flagged & flipped) / max(1, len(flagged)), 4),
                "cleanlab_flagged_recall": round(len(flagged & flipped) / n_flip, 4),
                "suggested_label_correct": round(suggested_right / max(1, len(flagged & flipped)), 4),
                "oof_accuracy": round(res.cv_accuracy, 4),
                "seconds": round(seconds, 2),
                "model": "32px thumbnail + HOG -> scaler -> PCA(64) -> LogisticRegression(C=0.1), 5-fold OOF",
                "target_recall": 0.8,
                "passed": hit / n_flip >= 0.8,
            }
        )
    )


if __name__ == "__main__":
    main()
