"""The HTML report of a tabular model: CV metrics vs baseline, confusion matrix or residuals, importance."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlforge.evaluate.html import Report
from dlforge.evaluate.plots import fig_to_png, new_figure

__all__ = ["tabular_report"]


def _confusion_png(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> bytes:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=classes)
    k = len(classes)
    fig = new_figure(min(3 + 0.5 * k, 12), min(2.6 + 0.45 * k, 11))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [c[:12] for c in classes], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), [c[:12] for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black",
                )
    ax.set_title("confusion matrix")
    return fig_to_png(fig)


def _residual_png(y: np.ndarray, pred: np.ndarray) -> bytes:
    fig = new_figure(10, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    ax.scatter(y, pred, s=6, alpha=0.5)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted (out of fold)")
    ax = fig.add_subplot(1, 2, 2)
    ax.hist(pred - y, bins=40, color="#f58518")
    ax.set_xlabel("residual (predicted - true)")
    return fig_to_png(fig)


def _importance_png(imp: Any) -> bytes | None:
    if imp is None or not len(imp):
        return None
    top = imp.head(25)
    fig = new_figure(6, 1 + 0.28 * len(top))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(
        top["feature"].astype(str).str.slice(0, 24)[::-1],
        top["importance"][::-1],
        xerr=top["std"][::-1],
        color="#54a24b",
    )
    ax.set_xlabel("permutation importance (score drop)")
    return fig_to_png(fig)


def tabular_report(res: Any, title: str, held_out: dict[str, Any] | None = None) -> Report:
    """Build the :class:`~dlforge.evaluate.html.Report` of a :class:`~dlforge.tasks.tabular.TabularResult`.

    ``held_out`` (``{"name", "y", "pred", "metrics"}``) adds an evaluation split before the CV section.
    """
    r = Report(title)
    if held_out is not None:
        r.add_heading(f"Evaluation on {held_out['name']}")
        r.add_metrics({**held_out["metrics"], "rows": len(held_out["y"])})
        if res.task == "classification":
            r.add_image(_confusion_png(np.asarray(held_out["y"]), np.asarray(held_out["pred"]), res.classes))
        else:
            r.add_image(_residual_png(np.asarray(held_out["y"], float), np.asarray(held_out["pred"], float)))
    r.add_heading("Cross-validated metrics")
    r.add_text(
        f"{res.task}, model {res.model}, {len(res.y)} rows, {res.params.get('cv')} folds; "
        "the baseline predicts the majority class (classification) or the mean (regression) "
        "in the same folds."
    )
    r.add_table(
        [{"metric": k, "model": round(v, 4), "baseline": round(res.baseline[k], 4)} for k, v in res.cv_metrics.items()]
    )
    r.add_table(
        [{"fold": i, **{k: round(v, 4) for k, v in f.items()}} for i, f in enumerate(res.cv_folds)], caption="Per fold"
    )
    if res.task == "classification":
        r.add_heading("Confusion matrix")
        r.add_image(_confusion_png(res.y, res.oof_pred, res.classes))
    else:
        r.add_heading("Residuals")
        r.add_image(_residual_png(np.asarray(res.y, float), np.asarray(res.oof_pred, float)))
    png = _importance_png(res.importance)
    if png:
        r.add_heading("Feature importance")
        r.add_image(png, caption="Permutation importance on a held-out fold")
        r.add_table(res.importance.round(5))
    r.add_heading("Features")
    r.add_table(res.schema)
    return r
