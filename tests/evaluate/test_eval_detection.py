"""DetectionEvaluator agrees with pycocotools' COCOeval; drawing works headless."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlforge.errors import InputError
from dlforge.evaluate.detection import DetectionEvaluator, box_iou_coco, draw_detections

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _random_box(rng: np.random.Generator, size: float = 320.0) -> list[float]:
    # Log-uniform sides so small, medium and large objects all occur.
    w, h = np.exp(rng.uniform(np.log(6), np.log(260), size=2))
    x, y = rng.uniform(0, size - min(w, size - 1)), rng.uniform(0, size - min(h, size - 1))
    return [float(x), float(y), float(x + w), float(y + h)]


def _random_scene(seed: int, num_images: int = 40, num_classes: int = 4, round_scores: bool = False, noise: int = 6):
    """Images with 0..8 objects, predictions that are jittered hits, label swaps and noise."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        n_gt = int(rng.choice([0, 0, 1, 2, 3, 5, 8]))
        gt = [_random_box(rng) for _ in range(n_gt)]
        # The last class never has ground truth: COCO reports it as -1 and leaves it out.
        gl = [int(rng.integers(0, num_classes - 1)) for _ in range(n_gt)]
        crowd = [int(rng.random() < 0.08) for _ in range(n_gt)]
        pb, ps, pl = [], [], []
        if rng.random() > 0.15:  # some images get no predictions at all
            for b, lab in zip(gt, gl):
                for _ in range(int(rng.integers(0, 3))):  # misses and duplicates
                    w, h = b[2] - b[0], b[3] - b[1]
                    jit = rng.normal(0, 0.12, size=4) * [w, h, w, h]
                    nb = np.array(b) + jit
                    nb[2:] = np.maximum(nb[2:], nb[:2] + 1)
                    pb.append(nb.tolist())
                    pl.append(lab if rng.random() > 0.15 else int(rng.integers(0, num_classes)))
                    ps.append(float(rng.uniform(0.3, 1.0)))
            # A large noise level means a dense image: well over COCO's 100 detections per class.
            for _ in range(int(rng.integers(0 if noise < 50 else noise // 2, noise))):
                pb.append(_random_box(rng))
                pl.append(int(rng.integers(0, num_classes)))
                ps.append(float(rng.uniform(0.0, 0.7)))
        if round_scores:
            ps = [round(s, 1) for s in ps]  # many ties: checks the tie order too
        images.append((i + 1, gt, gl, crowd, pb, ps, pl))
    return images


def _coco_stats(images, num_classes: int) -> np.ndarray:
    gt_json = {
        "images": [{"id": i, "width": 320, "height": 320} for i, *_ in images],
        "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(num_classes)],
        "annotations": [],
    }
    dets = []
    for img_id, gt, gl, crowd, pb, ps, pl in images:
        for b, lab, cr in zip(gt, gl, crowd):
            w, h = b[2] - b[0], b[3] - b[1]
            gt_json["annotations"].append(
                {
                    "id": len(gt_json["annotations"]) + 1,
                    "image_id": img_id,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": cr,
                }
            )
        for b, s, lab in zip(pb, ps, pl):
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats), ev


@pytest.mark.parametrize(
    "seed,round_scores,num_images,noise",
    [
        (0, False, 40, 6),
        (1, False, 40, 6),
        (2, False, 40, 6),
        (3, True, 40, 6),
        (4, True, 40, 6),
        (5, False, 8, 900),
    ],
)
def test_matches_pycocotools(seed, round_scores, num_images, noise):
    # seed 5: over 100 detections of a class in one image, so the maxDets cut-off matters.
    num_classes = 4
    images = _random_scene(seed, num_images, num_classes, round_scores, noise)
    want, coco_eval = _coco_stats(images, num_classes)
    ev = DetectionEvaluator([f"c{c}" for c in range(num_classes)])
    for img_id, gt, gl, crowd, pb, ps, pl in images:
        ev.add(img_id, gt, gl, pb, ps, pl, gt_iscrowd=crowd)
    got = ev.compute()
    np.testing.assert_allclose(got["coco_stats"], want, atol=1e-3)
    assert got["map"] == pytest.approx(want[0], abs=1e-3)
    assert got["map_50"] == pytest.approx(want[1], abs=1e-3)
    # Per-class AP is COCO's precision array averaged per category.
    prec = coco_eval.eval["precision"][:, :, :, 0, -1]
    for k, row in enumerate(got["per_class"]):
        p = prec[:, :, k]
        if (p > -1).any():
            assert row["ap"] == pytest.approx(p[p > -1].mean(), abs=1e-3)
            assert row["ap50"] == pytest.approx(prec[0, :, k].mean(), abs=1e-3)
            curve = got["pr_curves"][row["class"]]
            np.testing.assert_allclose(curve["precision"], prec[0, :, k], atol=1e-3)
        else:
            assert row["ap"] is None and row["class"] not in got["pr_curves"]
    assert got["num_images"] == len(images)
    assert 0.05 < got["map"] < 0.95  # the scene is neither trivial nor hopeless


def test_perfect_and_empty_cases():
    ev = DetectionEvaluator(["a", "b"])
    ev.add(
        1,
        [[0, 0, 50, 50], [60, 60, 200, 200]],
        [0, 1],
        [[0, 0, 50, 50], [60, 60, 200, 200]],
        [0.9, 0.8],
        [0, 1],
    )
    ev.add(2, [], [], [], [], [])
    out = ev.compute()
    assert out["map"] == pytest.approx(1.0) and out["mar_100"] == pytest.approx(1.0)
    assert out["map_small"] is None and out["coco_stats"][3] == -1  # no small objects at all
    ev = DetectionEvaluator(["a"])
    ev.add("x", [[0, 0, 10, 10]], ["a"], [], [], [])
    assert ev.compute()["map"] == 0.0


def test_crowd_iou_uses_detection_area():
    iou = box_iou_coco(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 100, 100], [0, 0, 100, 100]]), np.array([1, 0]))
    assert iou[0, 0] == pytest.approx(1.0) and iou[0, 1] == pytest.approx(0.01)


def test_bad_input_is_reported():
    ev = DetectionEvaluator(["a"])
    with pytest.raises(InputError, match="outside 0..0"):
        ev.add(1, [[0, 0, 1, 1]], [3], [], [], [])
    with pytest.raises(InputError, match="shape"):
        ev.add(2, [[0, 0, 1]], [0], [], [], [])
    with pytest.raises(InputError, match="x2 >= x1"):
        ev.add(3, [[5, 0, 1, 1]], [0], [], [], [])
    with pytest.raises(InputError, match="unknown class 'zz'"):
        ev.add(4, [], [], [[0, 0, 1, 1]], [0.5], ["zz"])
    ev.add(5, [], [], [], [], [])
    with pytest.raises(InputError, match="added twice"):
        ev.add(5, [], [], [], [], [])


def test_draw_detections_colours_gt_and_predictions_differently():
    img = Image.new("RGB", (200, 150), (255, 255, 255))
    out = draw_detections(
        img,
        [[100, 40, 190, 140]],
        [1],
        [0.87],
        ["cat", "dog"],
        gt_boxes=[[10, 40, 80, 140]],
        gt_labels=[0],
        width=3,
    )
    assert out.size == img.size and img.getpixel((10, 100)) == (255, 255, 255)  # original untouched
    gt_px, pred_px = out.getpixel((11, 100)), out.getpixel((101, 100))
    assert gt_px != (255, 255, 255) and pred_px != (255, 255, 255) and gt_px != pred_px
    hidden = draw_detections(img, [[100, 40, 190, 140]], [1], [0.1], ["cat", "dog"], min_score=0.5)
    assert hidden.getpixel((101, 100)) == (255, 255, 255)


# Property test: arbitrary small scenes with integer boxes (IoU exactly on the
# thresholds, duplicate boxes, equal scores, crowds) give exactly COCO's numbers.
_coord = st.integers(0, 120)


@st.composite
def _box(draw):
    x, y = draw(_coord), draw(_coord)
    return [x, y, x + draw(st.integers(1, 110)), y + draw(st.integers(1, 110))]


@st.composite
def _image(draw, image_id: int):
    n_gt = draw(st.integers(0, 4))
    gt = [draw(_box()) for _ in range(n_gt)]
    gl = [draw(st.integers(0, 2)) for _ in range(n_gt)]
    crowd = [int(draw(st.booleans()) and draw(st.booleans())) for _ in range(n_gt)]
    pb, ps, pl = [], [], []
    for _ in range(draw(st.integers(0, 6))):
        if gt and draw(st.booleans()):
            k = draw(st.integers(0, len(gt) - 1))
            b = list(gt[k])
            b[2] += draw(st.integers(0, 40))  # grown copies: IoU on a coarse grid, often exactly 0.5
            pb.append(b)
            pl.append(gl[k])
        else:
            pb.append(draw(_box()))
            pl.append(draw(st.integers(0, 2)))
        ps.append(draw(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0])))
    return (image_id, gt, gl, crowd, pb, ps, pl)


@st.composite
def _scene(draw):
    images = [draw(_image(i + 1)) for i in range(draw(st.integers(1, 5)))]
    if not any(im[4] for im in images):  # pycocotools cannot load an empty result list
        images[0][4].append([0, 0, 10, 10])
        images[0][5].append(0.5)
        images[0][6].append(0)
    return images


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_scene())
def test_equals_pycocotools_on_arbitrary_scenes(images):
    want, _ = _coco_stats(images, 3)
    ev = DetectionEvaluator(["a", "b", "c"])
    for img_id, gt, gl, crowd, pb, ps, pl in images:
        ev.add(img_id, gt, gl, pb, ps, pl, gt_iscrowd=crowd)
    np.testing.assert_allclose(ev.compute()["coco_stats"], want, atol=1e-9)
