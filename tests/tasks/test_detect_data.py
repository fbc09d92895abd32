"""Detection/segmentation data pipeline: alignment under augmentation, bad input handling."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlforge.data.records import Annotation, SampleRecord
from dlforge.data.synthetic import generate_shapes, mask_to_rle, shapes_to_records
from dlforge.errors import InputError
from dlforge.tasks.detection_data import (
    AugmentConfig,
    DetectionDataset,
    MultiScaleCollate,
    SegmentationDataset,
    prepare_records,
)

CLASSES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def shape_records(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    samples = generate_shapes(6, size=((60, 90), (60, 120)), classes=CLASSES, max_objects=3, seed=11)
    return shapes_to_records(samples, d, CLASSES)


@pytest.fixture(scope="module")
def aug_datasets(shape_records):
    out = {}
    for mosaic in (False, True):
        aug = AugmentConfig(hflip=0.5, scale_range=(0.3, 2.0), photometric=0.5, mosaic=1.0 if mosaic else 0.0)
        out[mosaic] = DetectionDataset(shape_records, CLASSES, 96, train=True, augment=aug, with_masks=True)
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), mosaic=st.booleans(), idx=st.integers(0, 5))
def test_augmented_boxes_still_enclose_their_masks(aug_datasets, seed, mosaic, idx):
    ds = aug_datasets[mosaic]
    torch.manual_seed(seed)
    random.seed(seed)
    image, target = ds[idx]
    assert image.shape == (3, 96, 96) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    boxes, masks = target["boxes"], target["masks"]
    assert len(boxes) == len(masks) == len(target["labels"])
    for box, mask in zip(boxes, masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(xs) == 0:  # an object cropped away to a sliver thinner than a pixel
            assert float((box[2:] - box[:2]).min()) < 4
            continue
        mb = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        # boxes move exactly; the mask is resampled nearest-neighbour (cache resize, then up to 2x
        # scale jitter), which shifts its edge by up to ~1.5 source pixels: up to 3-4 output pixels
        tol = 4.0
        assert (mb[:2] >= box[:2] - tol).all() and (mb[2:] <= box[2:] + tol).all(), (box, mb)  # encloses
        if box[0] > 0.5 and box[1] > 0.5 and box[2] < 95.5 and box[3] < 95.5:
            # not cut by the crop: the box is the mask's bbox (a cut object keeps its clipped box,
            # which may be larger than the visible slice of a round shape)
            assert torch.allclose(box, mb, atol=tol), (box, mb)


def test_no_augmentation_keeps_exact_boxes_after_resize(shape_records):
    ds = DetectionDataset(shape_records, CLASSES, 64, train=False, with_masks=True)
    for it in ds.items:
        h, w = it.orig_size
        scale = torch.tensor([64 / w, 64 / h, 64 / w, 64 / h])
        assert torch.allclose(it.boxes, torch.from_numpy(it.orig_boxes) * scale)


def _record(tmp_path, anns, size=(40, 50)):
    from PIL import Image

    p = tmp_path / "img.png"
    Image.new("RGB", (size[1], size[0]), (120, 30, 60)).save(p)
    return SampleRecord(1, "x", "image", "img.png", p, annotations=anns)


def test_out_of_image_boxes_are_clipped_and_degenerate_ones_dropped(tmp_path):
    rec = _record(
        tmp_path,
        [
            Annotation("box", "circle", {"bbox": [-5, -5, 20, 20]}),  # clipped
            Annotation("box", "square", {"bbox": [10, 10, 10.2, 30]}),  # degenerate: dropped
            Annotation("box", "square", {"bbox": [60, 50, 80, 70]}),  # outside: dropped
            Annotation("box", "triangle", {"bbox": [5, 5, 30, 30]}),
        ],
    )
    items, stats = prepare_records([rec], CLASSES, 50)
    assert stats.clipped_boxes == 1 and stats.dropped_boxes == 2
    assert items[0].orig_boxes.tolist() == [[0, 0, 20, 20], [5, 5, 30, 30]]
    assert items[0].labels.tolist() == [0, 2]


def test_unknown_label_is_a_clear_error(tmp_path):
    rec = _record(tmp_path, [Annotation("box", "hexagon", {"bbox": [1, 1, 9, 9]})])
    with pytest.raises(InputError, match="img.png: label 'hexagon' is not in the label map"):
        prepare_records([rec], CLASSES, 32)


def test_mask_of_the_wrong_size_is_a_counted_skip(tmp_path):
    good = np.zeros((40, 50), bool)
    good[5:15, 5:20] = True
    bad = np.zeros((20, 20), bool)
    bad[2:5, 2:5] = True
    rec = _record(
        tmp_path,
        [
            Annotation("mask", "circle", {"rle": mask_to_rle(good)}),
            Annotation("mask", "square", {"rle": mask_to_rle(bad)}),
        ],
    )
    det_items, det_stats = prepare_records([rec], CLASSES, 32)
    assert det_items[0].orig_boxes.tolist() == [[5, 5, 20, 15]]  # box from the good mask
    assert "mask size 20x20 differs from image size 40x50" in det_stats.skipped[0].reason
    seg = SegmentationDataset([rec], CLASSES, 32)
    assert len(seg) == 0 and seg.stats.skipped


def test_images_without_objects_and_polygons(tmp_path):
    empty = _record(tmp_path, [])
    items, stats = prepare_records([empty], CLASSES, 32)
    assert items[0].boxes.shape == (0, 4) and stats.empty_images == 1
    ds = DetectionDataset([empty] * 4, CLASSES, 32, train=True, augment=AugmentConfig.strong())
    image, target = ds[0]
    assert image.shape == (3, 32, 32) and target["boxes"].shape == (0, 4)
    poly = _record(tmp_path, [Annotation("polygon", "triangle", {"points": [[10, 10, 30, 10, 20, 30]]})])
    seg = SegmentationDataset([poly], CLASSES, 50)
    sem = seg.items[0].semantic
    assert set(torch.unique(sem).tolist()) == {0, 3}


def test_multiscale_collate_rescales_boxes():
    batch = [(torch.rand(3, 64, 64), {"boxes": torch.tensor([[8.0, 8, 32, 32]]), "labels": torch.tensor([1])})]
    images, targets = MultiScaleCollate([96])(batch)
    assert images.shape == (1, 3, 96, 96)
    assert targets[0]["boxes"].tolist() == [[12.0, 12.0, 48.0, 48.0]]
