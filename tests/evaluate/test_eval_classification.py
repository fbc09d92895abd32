"""classification_metrics agrees with scikit-learn; plots render headless."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from dlforge.errors import InputError
from dlforge.evaluate.classification import (
    classification_metrics,
    image_grid,
    plot_confusion_matrix,
    plot_roc_pr,
    worst_mistakes,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _noisy_multiclass(seed: int, n: int = 400, c: int = 7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), y] += 1.5  # informative but imperfect
    return y, _softmax(logits).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_multiclass_matches_sklearn(seed):
    y, p = _noisy_multiclass(seed)
    classes = [f"k{i}" for i in range(p.shape[1])]
    m = classification_metrics(y, p, classes, top_k=(1, 3, 5, 7, 10))
    pred = p.argmax(1)
    assert m["task"] == "multiclass" and m["num_samples"] == len(y)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["recall_weighted"] == pytest.approx(skm.recall_score(y, pred, average="weighted"))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    p64 = p.astype(np.float64) / p.astype(np.float64).sum(1, keepdims=True)
    assert m["loss"] == pytest.approx(skm.log_loss(y, p64), rel=1e-5)
    assert m["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr"))
    for k in (1, 3, 5):
        assert m[f"top_{k}_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, p, k=k))
    assert "top_7_accuracy" not in m and "top_10_accuracy" not in m  # k >= C is meaningless
    f1 = skm.f1_score(y, pred, average=None)
    assert [r["f1"] for r in m["per_class"]] == pytest.approx(f1)
    assert [r["support"] for r in m["per_class"]] == np.bincount(y, minlength=7).tolist()
    assert 0.3 < m["accuracy"] < 0.95
    json.dumps(m)  # JSON-ready


def test_binary_curves_and_threshold():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=3000)
    s = np.clip(0.5 * y + rng.normal(0.25, 0.25, size=len(y)), 0, 1)
    p = np.stack([1 - s, s], axis=1)
    m = classification_metrics(y, p, ["neg", "pos"], thresholds=0.3)
    assert m["task"] == "binary"
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, s >= 0.3))
    c = m["curves"]["pos"]
    assert len(c["roc"]["fpr"]) <= 101 and len(c["pr"]["recall"]) <= 101
    assert c["roc"]["fpr"][0] == 0 and c["roc"]["tpr"][-1] == 1
    assert np.all(np.diff(c["pr"]["recall"]) >= 0)
    assert len(json.dumps(m)) < 20000  # small JSON even for 3000 samples
    m1 = classification_metrics(np.zeros(5, int), p[:5], ["neg", "pos"])  # one class only: no AUC
    assert m1["roc_auc"] is None and m1["curves"] == {}


def test_multilabel_matches_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random((500, 5)) < [0.5, 0.3, 0.1, 0.6, 0.2]).astype(int)
    p = np.clip(0.45 * y + rng.random((500, 5)) * 0.6, 0, 1)
    thr = [0.5, 0.4, 0.5, 0.5, 0.6]
    m = classification_metrics(y, p, list("abcde"), multilabel=True, thresholds=thr)
    pred = (p >= np.array(thr)).astype(int)
    assert m["task"] == "multilabel"
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1_micro"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, p, average="macro"))
    assert m["loss"] == pytest.approx(skm.log_loss(y.ravel(), np.clip(p.ravel(), 1e-7, 1 - 1e-7)), rel=1e-6)
    assert np.asarray(m["confusion_matrix"]).shape == (5, 2, 2)
    assert set(m["curves"]) == set("abcde")
    assert m["per_class"][2]["ap"] == pytest.approx(skm.average_precision_score(y[:, 2], p[:, 2]))


def test_bad_inputs():
    with pytest.raises(InputError, match=r"shape \(N, 3\)"):
        classification_metrics([0, 1], np.ones((2, 2)) / 2, ["a", "b", "c"])
    with pytest.raises(InputError, match="outside 0..1"):
        classification_metrics([0, 2], np.ones((2, 2)) / 2, ["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        classification_metrics([0, 1], [[np.nan, 1], [0.5, 0.5]], ["a", "b"])
    with pytest.raises(InputError, match="unknown class 'z'"):
        classification_metrics(["a", "z"], np.ones((2, 2)) / 2, ["a", "b"])
    named = classification_metrics(["a", "b"], [[0.9, 0.1], [0.2, 0.8]], ["a", "b"])
    assert named["accuracy"] == 1.0
    with pytest.raises(InputError, match="multi-hot"):
        classification_metrics([0, 1], np.ones((2, 2)) / 2, ["a", "b"], multilabel=True)


def test_plots_and_worst_mistakes():
    y, p = _noisy_multiclass(5, n=120, c=4)
    classes = ["cat", "dog", "bird", "a very long class name indeed"]
    m = classification_metrics(y, p, classes)
    png = plot_confusion_matrix(m["confusion_matrix"], classes)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    yb = (y == 0).astype(int)
    mb = classification_metrics(yb, np.stack([1 - p[:, 0], p[:, 0]], 1), ["other", "cat"])
    assert plot_roc_pr(mb["curves"]).startswith(b"\x89PNG")
    assert plot_roc_pr({}).startswith(b"\x89PNG")
    worst = worst_mistakes(y, p, classes, k=6)
    assert len(worst) == 6 and all(w["true"] != w["pred"] for w in worst)
    assert [w["confidence"] for w in worst] == sorted((w["confidence"] for w in worst), reverse=True)
    thumbs = [(Image.new("RGB", (40, 30), (i * 40, 0, 0)), f"{w['true']} → {w['pred']}") for i, w in enumerate(worst)]
    thumbs.append((np.zeros((10, 10), np.uint8), "gray array"))
    grid = Image.open(io.BytesIO(image_grid(thumbs, columns=3)))
    assert grid.size[0] > grid.size[1] * 0.5
