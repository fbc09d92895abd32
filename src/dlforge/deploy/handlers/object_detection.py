"""Object detection: image -> NCHW batch; boxes/scores/labels -> Detection lists at original size.

The ONNX model outputs ``boxes`` (B, N, 4) xyxy in model-input pixels, ``scores``
(B, N) and ``labels`` (B, N) int64 (rows past the real detections padded with
score 0 or -1). Settings from ``manifest.postprocess``: ``score_threshold``
(default 0.5), ``max_detections`` (default 100).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Prepared, register_handler
from dlforge.deploy.handlers.image_io import preprocess_images
from dlforge.deploy.manifest import BundleError, Manifest
from dlforge.deploy.results import Detection


def preprocess(inputs: Sequence[Any], manifest: Manifest) -> Prepared:
    batch, meta = preprocess_images(list(inputs), manifest)  # (B, C, H, W)
    return Prepared(feeds={manifest.input_names[0]: batch}, meta=meta)


def _output(outputs: dict[str, np.ndarray], manifest: Manifest, name: str, index: int) -> np.ndarray:
    if name in outputs:
        return outputs[name]
    names = manifest.output_names
    if len(names) < 3:
        raise BundleError("manifest: object detection bundles need outputs boxes, scores, labels")
    return outputs[names[index]]


def postprocess(
    outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict[str, Any]], **_: Any
) -> list[list[Detection]]:
    boxes = _output(outputs, manifest, "boxes", 0)  # (B, N, 4)
    scores = _output(outputs, manifest, "scores", 1)  # (B, N)
    labels = _output(outputs, manifest, "labels", 2)  # (B, N)
    thr = float(manifest.postprocess.get("score_threshold", 0.5))
    max_det = int(manifest.postprocess.get("max_detections", 100))
    names = manifest.labels
    results: list[list[Detection]] = []
    for b, geo in enumerate(meta):
        sx, sy = geo["scale"]
        ox, oy = geo["offset"]
        w0, h0 = geo["orig_size"]
        order = np.argsort(-scores[b], kind="stable")
        dets: list[Detection] = []
        for i in order:
            s = float(scores[b, i])
            if s < thr or len(dets) >= max_det:
                break
            x1, y1, x2, y2 = (float(v) for v in boxes[b, i])
            box = [
                min(max((x1 + ox) / sx, 0.0), w0),
                min(max((y1 + oy) / sy, 0.0), h0),
                min(max((x2 + ox) / sx, 0.0), w0),
                min(max((y2 + oy) / sy, 0.0), h0),
            ]
            lab = int(labels[b, i])
            name = names[lab] if 0 <= lab < len(names) else str(lab)
            dets.append(Detection(box=box, label=name, score=s))
        results.append(dets)
    return results


register_handler("object_detection", preprocess=preprocess, postprocess=postprocess)
