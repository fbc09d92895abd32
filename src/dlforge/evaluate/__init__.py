"""Evaluation: metrics for each task, plots as PNG, self-contained HTML reports.

Submodules load lazily (scikit-learn and matplotlib are slow to import), so
``from dlforge.evaluate import Report`` costs only what it uses.

- :mod:`dlforge.evaluate.html`: :class:`Report`.
- :mod:`dlforge.evaluate.plots`: :func:`fig_to_png`, :func:`plot_training_curves`.
- :mod:`dlforge.evaluate.classification`: :func:`classification_metrics` and plots.
- :mod:`dlforge.evaluate.detection`: :class:`DetectionEvaluator` (COCO semantics), :func:`draw_detections`.
- :mod:`dlforge.evaluate.segmentation`: :class:`SegmentationMetrics`, :func:`overlay_mask`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Report": "html",
    "image_data_uri": "html",
    "fig_to_png": "plots",
    "new_figure": "plots",
    "plot_training_curves": "plots",
    "classification_metrics": "classification",
    "plot_confusion_matrix": "classification",
    "plot_roc_pr": "classification",
    "image_grid": "classification",
    "worst_mistakes": "classification",
    "add_classification_section": "classification",
    "DetectionEvaluator": "detection",
    "draw_detections": "detection",
    "box_iou_coco": "detection",
    "plot_detection_pr": "detection",
    "add_detection_section": "detection",
    "SegmentationMetrics": "segmentation",
    "overlay_mask": "segmentation",
    "voc_palette": "segmentation",
    "plot_per_class_iou": "segmentation",
    "add_segmentation_section": "segmentation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dlforge.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dlforge.evaluate.{module}"), name)
