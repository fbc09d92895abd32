"""Draw predictions onto images (``dlforge predict --draw``), Pillow only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dlforge.deploy.results import Classification, MultiLabel, Segmentation

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
]


def draw_result(image: Image.Image, result: Any) -> Image.Image:
    """A copy of ``image`` with ``result`` drawn on it (boxes, a mask overlay or the label)."""
    img = image.convert("RGB").copy()
    if isinstance(result, Segmentation):
        colours = np.array([PALETTE[i % len(PALETTE)] for i in range(len(result.classes))], dtype=np.uint8)
        overlay = Image.fromarray(colours[result.mask.clip(0, len(colours) - 1)])
        return Image.blend(img, overlay, 0.45)
    draw = ImageDraw.Draw(img)
    if isinstance(result, list):  # detections
        for det in result:
            colour = PALETTE[hash(det.label) % len(PALETTE)]
            draw.rectangle(det.box, outline=colour, width=2)
            draw.text((det.box[0] + 2, det.box[1] + 1), f"{det.label} {det.score:.2f}", fill=colour)
    elif isinstance(result, Classification):
        draw.text((3, 3), f"{result.label} {result.score:.2f}", fill=(255, 0, 0))
    elif isinstance(result, MultiLabel):
        draw.text((3, 3), ", ".join(result.labels), fill=(255, 0, 0))
    return img


def save_drawing(source: Any, result: Any, out_dir: Path, index: int) -> Path:
    """Draw ``result`` on the image ``source`` and write it to ``out_dir`` as PNG."""
    from dlforge.deploy.handlers.image_io import load_image

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(str(source)).stem if isinstance(source, (str, Path)) else f"input_{index}"
    path = out_dir / f"{stem}.pred.png"
    draw_result(load_image(source), result).save(path)
    return path
