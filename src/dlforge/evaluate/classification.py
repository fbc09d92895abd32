"""Classification metrics (multiclass, binary, multi-label) and their plots.

:func:`classification_metrics` turns labels and predicted probabilities into a
JSON-ready dict (scikit-learn computes the numbers); the ``plot_*`` helpers
turn parts of that dict into PNG bytes for :class:`dlforge.evaluate.html.Report`.

Example:
    >>> m = classification_metrics([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["neg", "pos"])
    >>> round(m["accuracy"], 3), m["task"]
    (0.667, 'binary')
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm

from dlforge.errors import InputError
from dlforge.evaluate.plots import fig_to_png, new_figure, plot_training_curves

__all__ = [
    "add_classification_section",
    "classification_metrics",
    "image_grid",
    "plot_confusion_matrix",
    "plot_roc_pr",
    "plot_training_curves",
    "worst_mistakes",
]

_EPS = 1e-7  # clip for log loss: float32 probabilities of exactly 0 or 1 happen


def _downsample(xs: np.ndarray, ys: np.ndarray, max_points: int) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of a curve, first and last kept, rounded for small JSON."""
    n = len(xs)
    if n > max_points:
        idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
        xs, ys = xs[idx], ys[idx]
    return [round(float(v), 4) for v in xs], [round(float(v), 4) for v in ys]


def _curves(y: np.ndarray, score: np.ndarray, max_points: int) -> dict[str, Any] | None:
    """ROC and PR curve of one binary problem; None when only one class occurs in ``y``."""
    if y.min() == y.max():
        return None
    fpr, tpr, _ = skm.roc_curve(y, score)
    precision, recall, _ = skm.precision_recall_curve(y, score)
    fx, ty = _downsample(fpr, tpr, max_points)
    # precision_recall_curve runs from high recall to low; store it by rising recall.
    rx, py = _downsample(recall[::-1], precision[::-1], max_points)
    return {
        "auc": float(skm.roc_auc_score(y, score)),
        "ap": float(skm.average_precision_score(y, score)),
        "roc": {"fpr": fx, "tpr": ty},
        "pr": {"recall": rx, "precision": py},
        "positives": int(y.sum()),
    }


def _check_inputs(y_true: Any, probs: Any, classes: Sequence[str], multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    num_c = len(classes)
    if probs.ndim != 2 or probs.shape[1] != num_c:
        raise InputError(f"probs: expected shape (N, {num_c}) for {num_c} classes, got {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise InputError("probs: contains NaN or infinite values")
    if multilabel:
        if y.shape != probs.shape:
            raise InputError(f"y_true: expected multi-hot shape {probs.shape}, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise InputError("y_true: multi-label targets must be 0/1")
        return y.astype(np.int64), probs
    if y.ndim != 1 or len(y) != len(probs):
        raise InputError(f"y_true: expected shape ({len(probs)},), got {y.shape}")
    if y.dtype.kind in "USO":  # class names instead of indices
        index = {str(c): i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in y if str(v) not in index})
        if unknown:
            raise InputError(f"y_true: unknown class {unknown[0]!r} (classes: {', '.join(index)[:200]})")
        y = np.asarray([index[str(v)] for v in y], dtype=np.int64)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise InputError("y_true: class indices must be integers")
        y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= num_c):
        bad = int(y.max() if y.max() >= num_c else y.min())
        raise InputError(f"y_true: class index {bad} outside 0..{num_c - 1}")
    return y.astype(np.int64), probs


def classification_metrics(
    y_true: Any,
    probs: Any,
    classes: Sequence[str],
    *,
    multilabel: bool = False,
    thresholds: float | Sequence[float] | None = None,
    top_k: Sequence[int] = (1, 5),
    max_curve_points: int = 101,
) -> dict[str, Any]:
    """Metrics of a classifier on one evaluation set.

    Args:
        y_true: ``(N,)`` class indices (or class names), or ``(N, C)`` multi-hot when
            ``multilabel``.
        probs: ``(N, C)`` predicted probabilities (softmax rows, or independent
            sigmoids when ``multilabel``).
        classes: The ``C`` class names.
        multilabel: Independent yes/no decisions per class instead of one class per sample.
        thresholds: Decision threshold(s) on the probabilities: one for all classes or one
            per class (multi-label), or on the positive class's probability (binary).
            Default 0.5. Multiclass predictions are the argmax and ignore it.
        top_k: Top-k accuracies to report; values ``>= C`` are skipped (always 1.0).
        max_curve_points: Points kept per ROC/PR curve.

    Returns:
        A JSON-ready dict. Always: ``task`` ("binary", "multiclass" or "multilabel"),
        ``num_samples``, ``accuracy`` (exact-match for multi-label), ``loss`` (log loss,
        or mean binary cross-entropy for multi-label), ``precision_macro``,
        ``recall_macro``, ``f1_macro``, ``precision_weighted``, ``recall_weighted``,
        ``f1_weighted``, ``per_class`` (rows: ``class``, ``precision``, ``recall``,
        ``f1``, ``support``), ``confusion_matrix`` (``C x C`` counts, rows = truth; for
        multi-label one ``[[tn, fp], [fn, tp]]`` per class). Multiclass: ``top_{k}_accuracy``
        and ``roc_auc_ovr_macro`` (when every class occurs). Binary and multi-label:
        ``roc_auc``, ``average_precision`` and ``curves`` (class name to ``auc``, ``ap``,
        ``roc`` {fpr, tpr}, ``pr`` {recall, precision}); multi-label also ``micro`` scores
        and ``hamming_loss``, and ``auc``/``ap`` per class in ``per_class``.
    """
    classes = [str(c) for c in classes]
    y, probs = _check_inputs(y_true, probs, classes, multilabel)
    num_c = len(classes)
    if len(probs) == 0:
        raise InputError("classification_metrics: no samples")
    labels = list(range(num_c))
    out: dict[str, Any] = {"num_samples": int(len(probs)), "classes": classes}

    if multilabel:
        thr = np.broadcast_to(np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64), (num_c,))
        pred = (probs >= thr[None, :]).astype(np.int64)
        out["task"] = "multilabel"
        out["thresholds"] = [float(t) for t in thr]
        out["accuracy"] = float(skm.accuracy_score(y, pred))
        out["hamming_loss"] = float(skm.hamming_loss(y, pred))
        p = np.clip(probs, _EPS, 1 - _EPS)
        out["loss"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        averages = ("macro", "weighted", "micro")
    else:
        if num_c == 2 and thresholds is not None:
            pred = (probs[:, 1] >= float(np.asarray(thresholds).reshape(-1)[0])).astype(np.int64)
        else:
            pred = probs.argmax(axis=1)
        out["task"] = "binary" if num_c == 2 else "multiclass"
        out["accuracy"] = float(skm.accuracy_score(y, pred))
        # Rows of a softmax may not sum to exactly 1 after float32 rounding; scikit-learn's
        # log loss and OvR AUC insist that they do.
        rows = probs.sum(axis=1, keepdims=True)
        norm = probs / np.where(rows > 0, rows, 1.0)
        out["loss"] = float(-np.mean(np.log(np.clip(norm[np.arange(len(y)), y], _EPS, 1.0))))
        averages = ("macro", "weighted")

    for avg in averages:
        p_, r_, f_, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p_), float(r_), float(f_)
    p_c, r_c, f_c, s_c = skm.precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    per_class = [
        {
            "class": name,
            "precision": float(p_c[i]),
            "recall": float(r_c[i]),
            "f1": float(f_c[i]),
            "support": int(s_c[i]),
        }
        for i, name in enumerate(classes)
    ]

    if multilabel:
        out["confusion_matrix"] = skm.multilabel_confusion_matrix(y, pred, labels=labels).tolist()
        curves: dict[str, Any] = {}
        for i, name in enumerate(classes):
            c = _curves(y[:, i], probs[:, i], max_curve_points)
            per_class[i]["auc"] = None if c is None else c["auc"]
            per_class[i]["ap"] = None if c is None else c["ap"]
            if c is not None:
                curves[name] = c
        aucs = [c["auc"] for c in curves.values()]
        out["roc_auc"] = float(np.mean(aucs)) if aucs else None
        out["average_precision"] = float(np.mean([c["ap"] for c in curves.values()])) if curves else None
        out["curves"] = curves
    else:
        out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
        order = np.argsort(-probs, axis=1, kind="stable")
        for k in top_k:
            if 1 <= k < num_c:
                out[f"top_{k}_accuracy"] = float(np.mean((order[:, :k] == y[:, None]).any(axis=1)))
        if num_c == 2:
            c = _curves(y, probs[:, 1], max_curve_points)
            out["roc_auc"] = None if c is None else c["auc"]
            out["average_precision"] = None if c is None else c["ap"]
            out["curves"] = {} if c is None else {classes[1]: c}
        elif len(np.unique(y)) == num_c:
            out["roc_auc_ovr_macro"] = float(
                skm.roc_auc_score(y, norm, multi_class="ovr", average="macro", labels=labels)
            )
        else:
            out["roc_auc_ovr_macro"] = None  # undefined while some class never occurs
    out["per_class"] = per_class
    return out


def worst_mistakes(y_true: Any, probs: Any, classes: Sequence[str], k: int = 16) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions the model was most sure of (single-label).

    Args:
        y_true: ``(N,)`` class indices.
        probs: ``(N, C)`` probabilities.
        classes: Class names.
        k: How many to return.

    Returns:
        Rows ``index``, ``true``, ``pred``, ``confidence`` (probability of the predicted
        class), ``p_true`` (probability given to the true class), most confident first.
    """
    y, p = _check_inputs(y_true, probs, [str(c) for c in classes], False)
    pred = p.argmax(axis=1)
    wrong = np.nonzero(pred != y)[0]
    conf = p[wrong, pred[wrong]]
    top = wrong[np.argsort(-conf, kind="stable")][:k]
    return [
        {
            "index": int(i),
            "true": str(classes[y[i]]),
            "pred": str(classes[pred[i]]),
            "confidence": float(p[i, pred[i]]),
            "p_true": float(p[i, y[i]]),
        }
        for i in top
    ]


def plot_confusion_matrix(cm: Any, classes: Sequence[str], normalize: bool = True) -> bytes:
    """Confusion matrix heat map as PNG.

    Args:
        cm: ``C x C`` counts, rows = true class, columns = predicted class.
        classes: Class names.
        normalize: Colour by row-normalised recall (counts are still written in the cells).

    Returns:
        PNG bytes.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = len(classes)
    if cm.shape != (n, n):
        raise InputError(f"confusion matrix: expected shape ({n}, {n}), got {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    shown = cm / np.where(rows > 0, rows, 1.0) if normalize else cm
    side = min(max(4.0, 0.45 * n + 2.5), 24.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row fraction" if normalize else "count")
    fontsize = 9 if n <= 12 else 7 if n <= 25 else 5
    ax.set_xticks(range(n), [textwrap.shorten(str(c), 18) for c in classes], rotation=60, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), [textwrap.shorten(str(c), 18) for c in classes], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:  # beyond that the numbers are unreadable anyway
        hi = shown.max() if shown.size else 0
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if shown[i, j] > 0.5 * hi else "black"
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=fontsize, color=color)
    return fig_to_png(fig)


def plot_roc_pr(curves: dict[str, Any], max_classes: int = 12) -> bytes:
    """ROC and precision-recall curves side by side, as PNG.

    Args:
        curves: The ``curves`` entry of :func:`classification_metrics` (name to
            ``{"auc", "ap", "roc": {fpr, tpr}, "pr": {recall, precision}}``).
        max_classes: Only the classes with most positives are drawn beyond this.

    Returns:
        PNG bytes.
    """
    fig = new_figure(11, 4.6)
    ax_roc, ax_pr = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    items = sorted(curves.items(), key=lambda kv: -kv[1].get("positives", 0))[:max_classes]
    for name, c in items:
        ax_roc.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=f"{textwrap.shorten(name, 20)} (AUC {c['auc']:.3f})")
        ax_pr.step(
            c["pr"]["recall"],
            c["pr"]["precision"],
            where="post",
            label=f"{textwrap.shorten(name, 20)} (AP {c['ap']:.3f})",
        )
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        if items:
            ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
        else:
            ax.text(0.5, 0.5, "no curves (a class never occurs)", ha="center", va="center")
    return fig_to_png(fig)


def image_grid(
    images: Sequence[tuple[Any, str]], columns: int = 4, thumb: float = 2.2, title: str | None = None
) -> bytes:
    """Captioned thumbnails in a grid, as one PNG (e.g. the worst mistakes).

    Args:
        images: ``(image, caption)`` pairs; an image is a PIL image, PNG/JPEG bytes or an
            ``(H, W[, C])`` uint8 array.
        columns: Thumbnails per row.
        thumb: Size of one cell in inches.
        title: Optional title.

    Returns:
        PNG bytes.
    """
    from PIL import Image

    n = max(len(images), 1)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(thumb * cols, (thumb + 0.35) * rows + (0.4 if title else 0))
    for i, (img, caption) in enumerate(images):
        if isinstance(img, (bytes, bytearray)):
            img = Image.open(io.BytesIO(img))
        if isinstance(img, Image.Image):
            img.thumbnail((256, 256))
            img = np.asarray(img.convert("RGB"))
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.asarray(img), cmap="gray" if np.asarray(img).ndim == 2 else None)
        ax.set_title("\n".join(textwrap.wrap(str(caption), 28)[:3]), fontsize=8)
        ax.set_axis_off()
    if not images:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no images", ha="center", va="center")
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig_to_png(fig)


def add_classification_section(report: Any, metrics: dict[str, Any], title: str = "Classification") -> Any:
    """Append the standard classification section to a report.

    Scalar metrics as cards, the per-class table, the confusion matrix and (binary,
    multi-label) the ROC/PR curves.

    Args:
        report: A :class:`dlforge.evaluate.html.Report`.
        metrics: The dict from :func:`classification_metrics`.
        title: Section heading.

    Returns:
        The report, for chaining.
    """
    report.add_heading(title)
    skip = {"num_samples", "classes", "thresholds"}
    report.add_metrics(
        {k: v for k, v in metrics.items() if k not in skip and (v is None or isinstance(v, (int, float)))}
    )
    report.add_table(metrics["per_class"], caption="Per class")
    cm = metrics.get("confusion_matrix")
    if cm is not None and metrics.get("task") != "multilabel" and len(cm) <= 100:
        report.add_image(plot_confusion_matrix(cm, metrics["classes"]), "Confusion matrix (rows: true class)")
    if metrics.get("curves"):
        report.add_image(plot_roc_pr(metrics["curves"]), "ROC and precision-recall curves")
    return report
