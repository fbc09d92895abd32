"""Image classification: image -> normalised NCHW batch; logits (B, C) -> Classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Prepared, register_handler
from dlforge.deploy.handlers.classify import classify
from dlforge.deploy.handlers.image_io import preprocess_images
from dlforge.deploy.manifest import Manifest


def preprocess(inputs: Sequence[Any], manifest: Manifest) -> Prepared:
    batch, meta = preprocess_images(list(inputs), manifest)  # (B, C, H, W)
    return Prepared(feeds={manifest.input_names[0]: batch}, meta=meta)


def postprocess(
    outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict[str, Any]], *, top_k: int = 5, **_: Any
) -> list[Any]:
    return classify(outputs[manifest.output_names[0]], manifest, top_k)


register_handler("image_classification", preprocess=preprocess, postprocess=postprocess)
