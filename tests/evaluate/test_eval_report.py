"""The per-task report sections render into one self-contained HTML file."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from dlforge.evaluate import (
    DetectionEvaluator,
    Report,
    SegmentationMetrics,
    add_classification_section,
    add_detection_section,
    add_segmentation_section,
    classification_metrics,
    draw_detections,
    image_grid,
    overlay_mask,
    plot_training_curves,
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_full_report_all_tasks(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3))
    logits[np.arange(90), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    yb = (y == 1).astype(int)

    ev = DetectionEvaluator(["car", "person"])
    ev.add(1, [[10, 10, 60, 60], [100, 100, 300, 280]], [0, 1], [[12, 8, 60, 62], [0, 0, 20, 20]], [0.9, 0.4], [0, 1])
    ev.add(2, [], [], [[5, 5, 50, 50]], [0.3], [1])
    seg = SegmentationMetrics(3, class_names=["bg", "road", "sky"])
    seg.update(rng.integers(0, 3, (2, 16, 16)), rng.integers(0, 3, (2, 16, 16)))

    img = Image.new("RGB", (320, 300), (200, 200, 200))
    rep = Report("Everything")
    add_classification_section(rep, classification_metrics(y, probs, ["a", "b", "c"]))
    add_classification_section(
        rep, classification_metrics(yb, np.stack([1 - probs[:, 1], probs[:, 1]], 1), ["no", "b"])
    )
    add_detection_section(rep, ev.compute())
    add_segmentation_section(rep, seg.compute())
    rep.add_image(plot_training_curves({"train/loss": [(i, 1 / (i + 1)) for i in range(20)]}), "curves")
    rep.add_gallery(
        [
            (draw_detections(img, [[12, 8, 60, 62]], [0], [0.9], ["car", "person"], [[10, 10, 60, 60]], [0]), "det"),
            (overlay_mask(img, rng.integers(0, 3, (30, 32))), "seg"),
        ]
    )
    rep.add_image(image_grid([(img, "x"), (img, "y")]), "grid")
    html = rep.save(tmp_path / "r.html").read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(html)
    imgs = [a["src"] for t, a in parser.tags if t == "img"]
    # 2 confusion matrices, 1 ROC/PR, detection PR, IoU bars, curves, 2 gallery images, grid
    assert len(imgs) == 9
    assert all(re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", s) for s in imgs)
    assert "http://" not in html and "https://" not in html
    assert not any(t in ("script", "link", "iframe", "object", "embed") for t, _ in parser.tags)
    assert [t for t, _ in parser.tags].count("h2") == 4
