"""Semantic segmentation: image -> NCHW batch; logits (B, C, H, W) -> class mask at original size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from dlforge.deploy.handlers import Prepared, register_handler
from dlforge.deploy.handlers.image_io import preprocess_images
from dlforge.deploy.manifest import Manifest
from dlforge.deploy.results import Segmentation


def preprocess(inputs: Sequence[Any], manifest: Manifest) -> Prepared:
    batch, meta = preprocess_images(list(inputs), manifest)  # (B, C, H, W)
    return Prepared(feeds={manifest.input_names[0]: batch}, meta=meta)


def mask_to_original(mask: np.ndarray, geo: dict[str, Any]) -> np.ndarray:
    """Map a model-size class mask back to the original image (nearest neighbour)."""
    w0, h0 = geo["orig_size"]
    sx, sy = geo["scale"]
    ox, oy = geo["offset"]
    vw, vh = geo["valid"]
    if ox or oy:
        # center_crop: the mask covers the crop only; the rest stays class 0.
        full_w, full_h = round(w0 * sx), round(h0 * sy)
        canvas = np.zeros((full_h, full_w), dtype=mask.dtype)
        canvas[int(oy) : int(oy) + mask.shape[0], int(ox) : int(ox) + mask.shape[1]] = mask
        mask = canvas
    else:
        mask = mask[: int(vh), : int(vw)]  # letterbox: drop the padding
    img = Image.fromarray(mask.astype(np.uint8) if mask.max(initial=0) < 256 else mask.astype(np.int32))
    return np.asarray(img.resize((int(w0), int(h0)), Image.NEAREST)).astype(np.int64)


def postprocess(
    outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict[str, Any]], **_: Any
) -> list[Segmentation]:
    logits = outputs[manifest.output_names[0]]  # (B, C, H, W)
    masks = logits.argmax(axis=1)  # (B, h, w)
    h, w = (int(v) for v in manifest.input["size"])
    if masks.shape[1:] != (h, w):
        # Models that predict at a stride: bring the mask to the input size first.
        masks = np.stack([np.asarray(Image.fromarray(m.astype(np.uint8)).resize((w, h), Image.NEAREST)) for m in masks])
    return [Segmentation(mask=mask_to_original(m, geo), classes=list(manifest.labels)) for m, geo in zip(masks, meta)]


register_handler("semantic_segmentation", preprocess=preprocess, postprocess=postprocess)
