"""Typed prediction results returned by the Predictor and, as JSON, by the server."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Classification:
    """Single-label prediction: the top label, its probability and the top-k list."""

    label: str
    score: float
    top_k: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": self.score,
            "top_k": [{"label": lab, "score": s} for lab, s in self.top_k],
        }


@dataclass
class MultiLabel:
    """Multi-label prediction: every label whose probability passed its threshold."""

    labels: list[str]
    scores: list[float]
    all_scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Detection:
    """One detected object; ``box`` is ``[x1, y1, x2, y2]`` in original image pixels."""

    box: list[float]
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Segmentation:
    """Semantic segmentation: a class-index mask at the original image size."""

    mask: np.ndarray  # (H, W) int
    classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        present = np.unique(self.mask)
        counts = {self.classes[int(i)]: int((self.mask == i).sum()) for i in present if i < len(self.classes)}
        return {
            "height": int(self.mask.shape[0]),
            "width": int(self.mask.shape[1]),
            "classes": self.classes,
            "pixel_counts": counts,
            "mask": self.mask.astype(int).tolist(),
        }


def result_to_json(result: Any) -> Any:
    """A result (or list of results) as JSON-ready Python objects."""
    if isinstance(result, list):
        return [result_to_json(r) for r in result]
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, dict):
        return {k: result_to_json(v) for k, v in result.items()}
    if isinstance(result, np.generic):
        return result.item()
    if isinstance(result, np.ndarray):
        return result.tolist()
    return result
