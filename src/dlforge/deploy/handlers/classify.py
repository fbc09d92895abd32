"""Shared postprocessing for classifiers (image, text, tabular): logits -> typed results."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlforge.deploy.manifest import Manifest
from dlforge.deploy.results import Classification, MultiLabel


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def scores_from_logits(logits: np.ndarray, manifest: Manifest) -> np.ndarray:
    """Probabilities from the model's first output, per ``postprocess.activation``.

    ``activation`` is ``softmax`` (default), ``sigmoid`` (default for multi-label)
    or ``none`` when the model already outputs probabilities.
    """
    default = "sigmoid" if manifest.multi_label else "softmax"
    activation = manifest.postprocess.get("activation", default)
    logits = logits.astype(np.float64)
    if activation == "softmax":
        return softmax(logits)
    if activation == "sigmoid":
        return sigmoid(logits)
    return logits


def classify(logits: np.ndarray, manifest: Manifest, top_k: int = 5) -> list[Any]:
    """Turn ``(B, C)`` logits into :class:`Classification` or :class:`MultiLabel` results."""
    probs = scores_from_logits(logits, manifest)  # (B, C)
    labels = manifest.labels
    results: list[Any] = []
    if manifest.multi_label:
        # Per-class thresholds tuned on validation ("thresholds") or one shared "threshold".
        thr = manifest.postprocess.get("thresholds") or manifest.postprocess.get("threshold", 0.5)
        thresholds = np.asarray(thr if isinstance(thr, list) else [thr] * probs.shape[1], dtype=np.float64)
        for row in probs:
            idx = [i for i in np.argsort(-row) if row[i] >= thresholds[i]]
            results.append(
                MultiLabel(
                    labels=[labels[i] for i in idx],
                    scores=[float(row[i]) for i in idx],
                    all_scores={labels[i]: float(row[i]) for i in range(len(labels))},
                )
            )
        return results
    k = max(1, min(int(top_k), probs.shape[1]))
    for row in probs:
        order = np.argsort(-row, kind="stable")[:k]
        top = [(labels[i], float(row[i])) for i in order]
        results.append(Classification(label=top[0][0], score=top[0][1], top_k=top))
    return results
