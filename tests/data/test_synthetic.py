"""Synthetic shapes: boxes are exactly the masks' bounding boxes, COCO output is valid."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from dlforge.data.synthetic import generate_shapes, make_shapes, mask_to_rle, shapes_to_records
from dlforge.errors import InputError
from dlforge.tasks.detection_data import rle_to_mask


def _bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_boxes_equal_mask_bboxes_and_objects_do_not_overlap():
    samples = generate_shapes(
        12, size=((60, 120), (80, 160)), classes=("circle", "square", "triangle", "cross"), max_objects=5, seed=3
    )
    assert len({s.image.shape for s in samples}) > 1  # varied sizes and aspects
    for s in samples:
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3
        for box, mask in zip(s.boxes, s.masks):
            assert list(box) == _bbox(mask)
        if len(s.masks) > 1:
            assert s.masks.sum(0).max() == 1
        sem = s.semantic()
        for lab, mask in zip(s.labels, s.masks):
            assert (sem[mask] == lab + 1).all()


def test_seed_determinism_and_empty_fraction():
    a = generate_shapes(6, size=(48, 48), seed=7, empty_fraction=0.5)
    b = generate_shapes(6, size=(48, 48), seed=7, empty_fraction=0.5)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b))
    many = generate_shapes(40, size=(32, 32), seed=1, empty_fraction=0.5, max_objects=2)
    empties = sum(len(s.labels) == 0 for s in many)
    assert 8 <= empties <= 32


def test_rle_round_trip_matches_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((7, 11)) > 0.6
        rle = mask_to_rle(m)
        assert np.array_equal(rle_to_mask(rle), m)
        coco = mask_utils.frPyObjects({"size": rle["size"], "counts": rle["counts"]}, *rle["size"])
        assert np.array_equal(mask_utils.decode(coco).astype(bool), m)


@pytest.mark.parametrize("mask_format", ["rle", "polygon"])
def test_make_shapes_writes_coco_and_voc_masks(tmp_path, mask_format):
    info = make_shapes(tmp_path / "ds", 5, size=(64, 80), seed=2, max_objects=3, mask_format=mask_format)
    coco = json.loads((tmp_path / "ds" / "annotations.json").read_text())
    assert info["images"] == 5 and len(coco["images"]) == 5
    assert [c["name"] for c in coco["categories"]] == ["circle", "square", "triangle"]
    for ann in coco["annotations"]:
        img = coco["images"][ann["image_id"] - 1]
        h, w = img["height"], img["width"]
        seg = ann["segmentation"]
        rle = mask_utils.frPyObjects(seg, h, w)
        m = mask_utils.decode(mask_utils.merge(rle) if isinstance(rle, list) else rle).astype(bool)
        x, y, bw, bh = ann["bbox"]
        if isinstance(seg, dict):  # RLE masks are the exact pixels
            assert _bbox(m) == [x, y, x + bw, y + bh]
        else:  # polygons are the outlines the shapes were drawn from: COCO rasterises them within 2 px
            assert np.allclose(_bbox(m), [x, y, x + bw, y + bh], atol=2.01)
    seg_png = Image.open(tmp_path / "ds" / "SegmentationClass" / coco["images"][0]["file_name"])
    assert seg_png.mode == "P" and seg_png.size == (80, 64)
    assert set(np.unique(np.asarray(seg_png))) <= {0, 1, 2, 3}


def test_records_carry_boxes_and_masks(tmp_path):
    samples = generate_shapes(3, size=(40, 40), seed=0)
    recs = shapes_to_records(samples, tmp_path)
    for r, s in zip(recs, samples):
        assert r.path.exists() and r.media_type == "image"
        boxes = [a for a in r.annotations if a.kind == "box"]
        masks = [a for a in r.annotations if a.kind == "mask"]
        assert len(boxes) == len(masks) == len(s.labels)
        for b, m in zip(boxes, masks):
            assert b.data["bbox"] == _bbox(rle_to_mask(m.data["rle"]))


def test_unknown_shape_is_a_clear_error():
    with pytest.raises(InputError, match="unknown classes"):
        generate_shapes(1, classes=("hexagon",))
