"""Detection, segmentation and multi-label bundles: outputs mapped back to the original image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dlforge.deploy import Detection, MultiLabel, Predictor, Segmentation
from dlforge.deploy.bundle import build_bundle
from dlforge.deploy.handlers import get_handler
from dlforge.deploy.handlers.image_io import resize_image
from dlforge.deploy.manifest import BundleError
from dlforge.deploy.spec import ExportSpec, ImageInput

SIZE = 32


class BrightBox(nn.Module):
    """A fixed-shape detector: the box around the bright pixels, plus a padded low-score row.

    Outputs boxes (B, 2, 4) xyxy in input pixels, scores (B, 2), labels (B, 2) int64,
    the contract detection bundles follow.
    """

    def forward(self, x: torch.Tensor):  # (B, 3, H, W)
        b, _, h, w = x.shape
        bright = (x.mean(1) > 0.5).float()  # (B, H, W)
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, w)
        rows = torch.arange(h, dtype=x.dtype).view(1, h, 1)
        big = 1e4
        x1 = torch.where(bright > 0, cols.expand_as(bright), torch.full_like(bright, big)).amin((1, 2))
        y1 = torch.where(bright > 0, rows.expand_as(bright), torch.full_like(bright, big)).amin((1, 2))
        x2 = torch.where(bright > 0, cols.expand_as(bright) + 1, torch.zeros_like(bright)).amax((1, 2))
        y2 = torch.where(bright > 0, rows.expand_as(bright) + 1, torch.zeros_like(bright)).amax((1, 2))
        box = torch.stack([x1, y1, x2, y2], 1)  # (B, 4)
        boxes = torch.stack([box, torch.zeros_like(box)], 1)  # (B, 2, 4)
        scores = torch.stack([bright.mean((1, 2)) * 0 + 0.9, torch.full((b,), 0.05)], 1)  # (B, 2)
        labels = torch.ones(b, 2, dtype=torch.int64)  # (B, 2)
        return boxes, scores, labels


def _square_image(w: int, h: int, box: tuple[int, int, int, int]) -> Image.Image:
    img = Image.new("RGB", (w, h), (0, 0, 0))
    img.paste((255, 255, 255), box)
    return img


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_detection_boxes_in_original_pixels(tmp_path: Path, resize: str) -> None:
    examples = torch.stack(
        [torch.from_numpy(np.array(_square_image(SIZE, SIZE, (4, 8, 12, 20)))).permute(2, 0, 1).float() / 255]
    )
    spec = ExportSpec(
        model=BrightBox(), task="object_detection", labels=["background", "square"],
        input=ImageInput(size=(SIZE, SIZE), resize=resize, mean=(0, 0, 0), std=(1, 1, 1)),
        example_inputs=examples, input_names=["image"], output_names=["boxes", "scores", "labels"],
        postprocess={"score_threshold": 0.5, "max_detections": 10},
    )
    build_bundle(spec, tmp_path / "det")
    # A 128x64 image whose white square is at x 32..64, y 16..48: at 32x32 it lands on whole pixels.
    img = _square_image(128, 64, (32, 16, 64, 48))
    dets = Predictor(tmp_path / "det").predict(img)
    assert len(dets) == 1 and isinstance(dets[0], Detection)
    assert dets[0].label == "square" and abs(dets[0].score - 0.9) < 1e-6
    np.testing.assert_allclose(dets[0].box, [32, 16, 64, 48], atol=4.0)


class PixelSeg(nn.Module):
    """1x1 conv segmenter: class 1 where the pixel is bright. Logits (B, 2, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]).view(2, 3, 1, 1))
            self.conv.bias.copy_(torch.tensor([1.5, -1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_segmentation_mask_at_original_size(tmp_path: Path) -> None:
    ex = torch.rand(2, 3, SIZE, SIZE)
    spec = ExportSpec(
        model=PixelSeg(), task="semantic_segmentation", labels=["background", "bright"],
        input=ImageInput(size=(SIZE, SIZE), mean=(0, 0, 0), std=(1, 1, 1)), example_inputs=ex,
    )
    build_bundle(spec, tmp_path / "seg")
    img = _square_image(96, 64, (24, 16, 72, 48))
    seg = Predictor(tmp_path / "seg").predict(img)
    assert isinstance(seg, Segmentation) and seg.mask.shape == (64, 96)
    truth = np.asarray(img.convert("L")) > 127
    assert np.mean((seg.mask == 1) == truth) > 0.97
    assert seg.to_dict()["pixel_counts"]["bright"] == int((seg.mask == 1).sum())


def test_multilabel_thresholds(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    spec = ExportSpec(
        model=model, task="image_classification", labels=["a", "b", "c"],
        input=ImageInput(size=(8, 8)), example_inputs=torch.randn(4, 3, 8, 8), multi_label=True,
        postprocess={"thresholds": [0.0, 1.01, 0.5]},  # "a" always, "b" never
    )
    build_bundle(spec, tmp_path / "ml")
    res = Predictor(tmp_path / "ml").predict(np.zeros((8, 8, 3), np.uint8))
    assert isinstance(res, MultiLabel) and "a" in res.labels and "b" not in res.labels
    assert set(res.all_scores) == {"a", "b", "c"}


def test_resize_geometry_and_unknown_task() -> None:
    img = Image.new("RGB", (100, 50))
    out, geo = resize_image(img, (32, 32), "letterbox")
    assert out.size == (32, 32) and geo["valid"] == [32, 16] and geo["scale"] == [0.32, 0.32]
    out, geo = resize_image(img, (32, 32), "center_crop")
    assert out.size == (32, 32) and geo["offset"][0] > 0
    with pytest.raises(BundleError, match="no deployment handler"):
        get_handler("teleportation")
