"""The HTML report of a classification run: metrics, plots, worst mistakes, provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlforge.data.records import SampleRecord


def worst_mistakes(y: np.ndarray, probs: np.ndarray, classes: list[str], k: int = 24) -> list[int]:
    """Indices of the most confident wrong predictions; multi-label: the most wrong label sets."""
    if y.ndim == 1:
        from dlforge.evaluate.classification import worst_mistakes as single_label

        return [row["index"] for row in single_label(y, probs, classes, k)]
    wrong = np.abs((probs >= 0.5).astype(float) - y).sum(1)
    return [int(i) for i in np.argsort(-wrong)[:k] if wrong[i] > 0]


def write_classification_report(
    run: Any,
    metrics: dict[str, Any],
    records: list[SampleRecord],
    probs: np.ndarray,
    y: np.ndarray,
    path: Path,
    *,
    kind: str,
) -> Path:
    from PIL import Image, ImageOps

    from dlforge.evaluate.html import Report
    from dlforge.evaluate.plots import fig_to_png, new_figure, plot_training_curves

    m = run.manifest()
    classes = m["classes"]
    rep = Report(f"Evaluation of run {run.id}")
    rep.add_text(
        f"Task {m['task']}, model {m['model']}, data {m['data']}, split {metrics['split']} ({metrics['n']} samples)."
    )
    rep.add_heading("Metrics")
    rep.add_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if metrics.get("per_class"):
        rows = metrics["per_class"]
        rep.add_table(
            rows if isinstance(rows, list) else [{"class": c, **v} for c, v in rows.items()],
            caption="Per-class precision, recall, F1 and support",
        )
    try:
        from dlforge.evaluate.classification import plot_confusion_matrix, plot_roc_pr

        if metrics.get("confusion_matrix") is not None:
            rep.add_image(plot_confusion_matrix(np.array(metrics["confusion_matrix"]), classes), "Confusion matrix")
        if metrics.get("curves"):
            rep.add_image(plot_roc_pr(metrics["curves"]), "ROC and precision-recall curves")
    except ImportError:  # plots are optional extras of the metrics module
        pass
    history = run.history()
    if history:
        rep.add_heading("Training curves")
        rep.add_image(plot_training_curves(history), "Loss, learning rate and validation metrics per step")
    idx = worst_mistakes(y, probs, classes)
    if idx:
        rep.add_heading("Worst mistakes")
        if kind == "image":
            tiles = []
            for i in idx:
                with Image.open(records[i].path) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    im.thumbnail((160, 160))
                    if max(im.size) < 96:  # small images (digits) are unreadable at native size
                        im = im.resize((96, 96 * im.height // max(1, im.width)), Image.NEAREST)
                fig = new_figure(2, 2.2)
                ax = fig.add_subplot(111)
                ax.imshow(np.asarray(im))
                ax.axis("off")
                tiles.append((fig_to_png(fig), _caption(y, probs, i, classes, records[i])))
            rep.add_gallery(tiles)
        else:
            rep.add_table(
                [
                    {
                        "uid": records[i].sample_id,
                        "text": records[i].read_text()[:300],
                        "caption": _caption(y, probs, i, classes, records[i]),
                    }
                    for i in idx
                ],
                caption="Most confident wrong predictions",
            )
    rep.add_heading("Hyperparameters and provenance")
    rep.add_table([{"parameter": k, "value": str(v)} for k, v in sorted(m.get("params", {}).items())])
    rep.add_table(
        [
            {"item": k, "value": str(v)}
            for k, v in {"data version": m["data"], "run": run.id, **m.get("environment", {})}.items()
        ]
    )
    return rep.save(path)


def _caption(y: np.ndarray, probs: np.ndarray, i: int, classes: list[str], r: SampleRecord) -> str:
    if y.ndim == 1:
        p = int(probs[i].argmax())
        return f"{r.name}: true {classes[int(y[i])]}, predicted {classes[p]} ({probs[i, p]:.2f})"
    t = [classes[c] for c in np.where(y[i] > 0.5)[0]]
    pr = [classes[c] for c in np.where(probs[i] >= 0.5)[0]]
    return f"{r.name}: true {t}, predicted {pr}"
