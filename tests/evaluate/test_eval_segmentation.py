"""SegmentationMetrics on hand-built masks and against torchmetrics; overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dlforge.errors import InputError
from dlforge.evaluate.segmentation import SegmentationMetrics, overlay_mask, plot_per_class_iou, voc_palette


def test_hand_built_masks():
    # 4x4 target: left half class 0, right half class 1, one ignored pixel.
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 255]])
    # Prediction: one class-0 pixel called 1, one class-1 pixel called 2 (absent in target).
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 2, 1], [0, 0, 1, 0]])
    m = SegmentationMetrics(num_classes=4, class_names=["bg", "a", "b", "never"])
    m.update(pred, target)
    r = m.compute()
    # class 0: tp 7, fn 1, fp 0 -> IoU 7/8; class 1: tp 6, fn 1 (the 2), fp 1 -> 6/8; class 2: 0/1.
    assert r["iou"][:3] == pytest.approx([7 / 8, 6 / 8, 0.0])
    assert r["iou"][3] is None  # neither in target nor prediction: left out of the mean
    assert r["miou"] == pytest.approx((7 / 8 + 6 / 8 + 0) / 3)
    assert r["dice"][:3] == pytest.approx([14 / 15, 12 / 14, 0.0])
    assert r["mean_dice"] == pytest.approx((14 / 15 + 12 / 14) / 3)
    assert r["pixel_accuracy"] == pytest.approx(13 / 15) and r["num_pixels"] == 15
    assert r["mean_accuracy"] == pytest.approx((7 / 8 + 6 / 7) / 2)
    assert r["per_class"][2] == {
        "class": "b", "iou": 0.0, "dice": 0.0, "accuracy": None, "precision": 0.0, "gt_pixels": 0, "pred_pixels": 1
    }  # fmt: skip
    assert r["confusion_matrix"][1] == [0, 6, 1, 0]


def test_batches_logits_and_torchmetrics_parity():
    torch = pytest.importorskip("torch")
    from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    c = 5
    target = rng.integers(0, c - 1, size=(6, 32, 40))  # class 4 never in the target
    target[:, :3, :] = 255
    logits = rng.normal(size=(6, c, 32, 40)).astype(np.float32)
    logits[np.arange(6)[:, None, None], np.clip(target, 0, c - 1), np.arange(32)[None, :, None], np.arange(40)] += 1.2
    m = SegmentationMetrics(c)
    for i in range(0, 6, 4):  # uneven batches, logits input, torch tensors
        m.update(torch.from_numpy(logits[i : i + 4]), torch.from_numpy(target[i : i + 4]))
    r = m.compute()
    pred = torch.from_numpy(logits.argmax(1))
    tgt = torch.from_numpy(target)
    jac = MulticlassJaccardIndex(c, average=None, ignore_index=255)(pred, tgt).numpy()
    f1 = MulticlassF1Score(c, average=None, ignore_index=255, multidim_average="global")(pred, tgt).numpy()
    np.testing.assert_allclose(r["iou"], jac, atol=1e-6)
    np.testing.assert_allclose(r["dice"], f1, atol=1e-6)
    assert r["miou"] == pytest.approx(float(np.mean(jac)), abs=1e-6)
    one = SegmentationMetrics(c)
    one.update(logits.argmax(1), target)
    assert one.compute()["confusion_matrix"] == r["confusion_matrix"]


def test_bad_inputs():
    m = SegmentationMetrics(3)
    with pytest.raises(InputError, match="does not match"):
        m.update(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="target: class 7 outside 0..2"):
        m.update(np.zeros((2, 2)), np.full((2, 2), 7))
    with pytest.raises(InputError, match="prediction: class 3"):
        m.update(np.full((2, 2), 3), np.zeros((2, 2)))
    assert SegmentationMetrics(3).compute()["miou"] is None


def test_overlay_and_plot():
    img = Image.new("RGB", (8, 6), (100, 100, 100))
    mask = np.zeros((3, 4), np.uint8)  # half resolution: resized with nearest neighbour
    mask[0, 0] = 1
    mask[2, 3] = 255
    out = overlay_mask(img, mask, alpha=0.5)
    assert out.size == img.size and out.mode == "RGB"
    red = voc_palette()[1]
    assert out.getpixel((0, 0)) == tuple(round(0.5 * 100 + 0.5 * v) for v in red)
    assert out.getpixel((7, 5)) == (100, 100, 100)  # ignored
    assert out.getpixel((4, 2)) == (100, 100, 100)  # background untinted
    tinted = overlay_mask(img, Image.fromarray(mask), alpha=1.0, palette={0: (0, 0, 255)}, background=None)
    assert tinted.getpixel((4, 2)) == (0, 0, 255)
    m = SegmentationMetrics(3, class_names=["bg", "x", "y"])
    m.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 2]]))
    assert Image.open(io.BytesIO(plot_per_class_iou(m.compute()))).format == "PNG"
