"""COCO-style object-detection evaluation in numpy, and drawing of detections.

:class:`DetectionEvaluator` reproduces ``pycocotools.cocoeval.COCOeval`` for
``iouType="bbox"`` (greedy matching by descending score, 10 IoU thresholds
0.50:0.95, 101-point interpolated precision, at most 100 detections per image
and class, crowd boxes that any number of detections may hit without counting,
small/medium/large area ranges decided by the ground-truth area) without going
through COCO JSON, and adds what a report needs: per-class AP/AP50/AP75 and the
per-class precision-recall curve at IoU 0.5. The test suite checks its summary
numbers against pycocotools on random predictions.

Boxes are ``[x1, y1, x2, y2]`` in absolute pixels (the convention of
:mod:`dlforge.data.records`); labels are class indices into ``class_names``
(class-name strings are accepted too).

Example:
    >>> ev = DetectionEvaluator(["cat", "dog"])
    >>> ev.add("img1", gt_boxes=[[0, 0, 10, 10]], gt_labels=[0],
    ...        pred_boxes=[[1, 1, 10, 10]], pred_scores=[0.9], pred_labels=[0])
    >>> round(ev.compute()["map_50"], 3)
    1.0
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlforge.errors import InputError

__all__ = ["add_detection_section", "DetectionEvaluator", "box_iou_coco", "draw_detections", "plot_detection_pr"]

# COCOeval's default parameters (pycocotools Params.setDetParams).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
_AREA_NAMES = tuple(AREA_RANGES)


def box_iou_coco(dt: np.ndarray, gt: np.ndarray, gt_iscrowd: np.ndarray) -> np.ndarray:
    """IoU between detections and ground truth as COCO computes it.

    For a crowd ground-truth box the denominator is the detection's own area
    (how much of the detection lies inside the crowd region), as in
    ``pycocotools.mask.iou``.

    Args:
        dt: ``(D, 4)`` boxes ``x1, y1, x2, y2``.
        gt: ``(G, 4)`` boxes ``x1, y1, x2, y2``.
        gt_iscrowd: ``(G,)`` booleans.

    Returns:
        ``(D, G)`` IoU matrix.
    """
    dt = np.asarray(dt, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    # COCO stores x, y, w, h and computes x + w; keep that arithmetic.
    dw, dh = dt[:, 2] - dt[:, 0], dt[:, 3] - dt[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    iw = np.minimum((dt[:, 0] + dw)[:, None], (gt[:, 0] + gw)[None, :]) - np.maximum(
        dt[:, 0][:, None], gt[:, 0][None, :]
    )
    ih = np.minimum((dt[:, 1] + dh)[:, None], (gt[:, 1] + gh)[None, :]) - np.maximum(
        dt[:, 1][:, None], gt[:, 1][None, :]
    )
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)  # (D, G)
    da = (dw * dh)[:, None]
    ga = (gw * gh)[None, :]
    union = np.where(np.asarray(gt_iscrowd, dtype=bool)[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


@dataclass
class _ImageClassResult:
    """Matching of one image's detections of one class, for every area range."""

    scores: np.ndarray  # (D,) sorted descending, at most max(MAX_DETS)
    matched: np.ndarray  # (A, T, D) bool
    ignored: np.ndarray  # (A, T, D) bool
    num_gt: np.ndarray  # (A,) non-ignored ground truth per area range


def _match(
    ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray, dt_area_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg's greedy matching, vectorised over IoU thresholds.

    Args:
        ious: ``(D, G)`` with detections sorted by score and ground truth sorted
            with ignored boxes last.
        gt_ignore: ``(G,)`` bool.
        gt_crowd: ``(G,)`` bool.
        dt_area_out: ``(D,)`` bool, detection area outside the area range.

    Returns:
        ``matched (T, D)`` and ``ignored (T, D)`` booleans.
    """
    num_t = len(IOU_THRESHOLDS)
    num_d, num_g = ious.shape
    matched = np.zeros((num_t, num_d), dtype=bool)
    ignored = np.zeros((num_t, num_d), dtype=bool)
    if num_g and num_d:
        thr = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[:, None]  # (T, 1)
        gt_taken = np.zeros((num_t, num_g), dtype=bool)
        rows = np.arange(num_t)
        # A detection whose best IoU is under the lowest threshold can match nothing:
        # skipping those makes background-heavy predictions cheap.
        for d in np.nonzero(ious.max(axis=1) >= thr.min())[0]:
            # A matched crowd box stays available; a matched regular one does not.
            cand = (~gt_taken | gt_crowd[None, :]) & (ious[d][None, :] >= thr)  # (T, G)
            regular = cand & ~gt_ignore[None, :]
            # COCO prefers any regular ground truth over an ignored one, then the
            # highest IoU, and on a tie the later box (it scans with ">=").
            use = np.where(regular.any(axis=1, keepdims=True), regular, cand)
            has = use.any(axis=1)
            if not has.any():
                continue
            score = np.where(use, ious[d][None, :], -1.0)
            best = num_g - 1 - np.argmax(score[:, ::-1], axis=1)  # (T,) last argmax
            matched[has, d] = True
            ignored[has, d] = gt_ignore[best[has]]
            gt_taken[rows[has], best[has]] = True
    ignored |= ~matched & dt_area_out[None, :]
    return matched, ignored


def _as_array(value: Any, shape_tail: tuple[int, ...], dtype: Any, what: str, image_id: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    arr = np.asarray([] if value is None else value, dtype=dtype)
    if arr.size == 0:
        return arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        want = "(N, 4)" if shape_tail else "(N,)"
        raise InputError(f"image {image_id!r}: {what} must have shape {want}, got {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"image {image_id!r}: {what} contains NaN or infinite values")
    return arr


class DetectionEvaluator:
    """Accumulates per-image detections and ground truth; computes COCO metrics.

    Args:
        class_names: Class names; labels are indices into this list.
        iou_pr_curve: IoU threshold of the per-class precision-recall curves
            (one of 0.50, 0.55, ..., 0.95).
    """

    def __init__(self, class_names: Sequence[str], iou_pr_curve: float = 0.5) -> None:
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise InputError("DetectionEvaluator: class_names is empty")
        hits = np.nonzero(np.isclose(IOU_THRESHOLDS, iou_pr_curve))[0]
        if not len(hits):
            raise InputError(f"iou_pr_curve: {iou_pr_curve} is not one of the COCO IoU thresholds")
        self.iou_pr_curve = float(iou_pr_curve)
        self._curve_t = int(hits[0])
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self._results: dict[tuple[Hashable, int], _ImageClassResult] = {}
        self._images: set[Hashable] = set()
        self._num_gt = np.zeros(len(self.class_names), dtype=np.int64)
        self._num_pred = np.zeros(len(self.class_names), dtype=np.int64)

    def reset(self) -> None:
        """Forget everything added so far."""
        self.__init__(self.class_names, self.iou_pr_curve)  # type: ignore[misc]

    def _labels(self, labels: Any, n: int, what: str, image_id: Any) -> np.ndarray:
        if hasattr(labels, "detach"):
            labels = labels.detach().cpu().numpy()
        seq = list(np.asarray([] if labels is None else labels).reshape(-1))
        if len(seq) != n:
            raise InputError(f"image {image_id!r}: {len(seq)} {what} for {n} boxes")
        out = np.empty(n, dtype=np.int64)
        for i, lab in enumerate(seq):
            if isinstance(lab, str):
                if lab not in self._index:
                    raise InputError(f"image {image_id!r}: unknown class {str(lab)!r} in {what}")
                out[i] = self._index[lab]
            else:
                out[i] = int(lab)
                if not 0 <= out[i] < len(self.class_names):
                    raise InputError(
                        f"image {image_id!r}: {what} value {out[i]} outside 0..{len(self.class_names) - 1}"
                    )
        return out

    def add(
        self,
        image_id: Hashable,
        gt_boxes: Any,
        gt_labels: Any,
        pred_boxes: Any,
        pred_scores: Any,
        pred_labels: Any,
        gt_iscrowd: Any = None,
        image_size: tuple[int, int] | None = None,
        gt_areas: Any = None,
    ) -> None:
        """Add one image's ground truth and predictions.

        Args:
            image_id: Any hashable, unique per image (adding an id twice is an error).
            gt_boxes: ``(G, 4)`` xyxy ground-truth boxes.
            gt_labels: ``(G,)`` class indices (or names).
            pred_boxes: ``(D, 4)`` xyxy predicted boxes.
            pred_scores: ``(D,)`` confidences.
            pred_labels: ``(D,)`` class indices (or names).
            gt_iscrowd: ``(G,)`` flags; crowd boxes neither count as misses nor
                make the detections inside them false positives.
            image_size: ``(width, height)``; when given, predicted boxes are clipped
                to the image (detectors may overshoot it; ground truth is kept as is).
            gt_areas: ``(G,)`` areas deciding small/medium/large (COCO uses the
                instance-mask area); default: box area.
        """
        if image_id in self._images:
            raise InputError(f"image {image_id!r}: added twice")
        gt = _as_array(gt_boxes, (4,), np.float64, "gt_boxes", image_id)
        dt = _as_array(pred_boxes, (4,), np.float64, "pred_boxes", image_id)
        scores, g_lab, d_lab, crowd = self._checked_labels(
            image_id, "boxes", len(gt), len(dt), pred_scores, gt_labels, pred_labels, gt_iscrowd
        )
        for what, boxes in (("gt_boxes", gt), ("pred_boxes", dt)):
            if len(boxes) and np.any(boxes[:, 2:] < boxes[:, :2]):
                raise InputError(
                    f"image {image_id!r}: {what} must be [x1, y1, x2, y2] with x2 >= x1 and y2 >= y1"
                )
        if image_size is not None and len(dt):
            w, h = image_size
            dt = dt.copy()
            dt[:, 0::2] = dt[:, 0::2].clip(0, w)
            dt[:, 1::2] = dt[:, 1::2].clip(0, h)
        if gt_areas is None:
            g_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        else:
            g_area = _as_array(gt_areas, (), np.float64, "gt_areas", image_id)
            if len(g_area) != len(gt):
                raise InputError(f"image {image_id!r}: {len(g_area)} gt_areas for {len(gt)} gt_boxes")

        d_area = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])

        def iou(di: np.ndarray, gi: np.ndarray) -> np.ndarray:
            return box_iou_coco(dt[di], gt[gi], crowd[gi])

        self._add_matches(image_id, g_lab, d_lab, crowd, scores, g_area, d_area, iou)

    def _checked_labels(
        self,
        image_id: Any,
        what: str,
        n_gt: int,
        n_dt: int,
        pred_scores: Any,
        gt_labels: Any,
        pred_labels: Any,
        gt_iscrowd: Any,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Scores, ground-truth and predicted labels and crowd flags, each checked against its count."""
        scores = _as_array(pred_scores, (), np.float64, "pred_scores", image_id)
        if len(scores) != n_dt:
            raise InputError(f"image {image_id!r}: {len(scores)} pred_scores for {n_dt} pred_{what}")
        g_lab = self._labels(gt_labels, n_gt, "gt_labels", image_id)
        d_lab = self._labels(pred_labels, n_dt, "pred_labels", image_id)
        crowd = np.zeros(n_gt, dtype=bool)
        if gt_iscrowd is not None:
            crowd = _as_array(gt_iscrowd, (), np.float64, "gt_iscrowd", image_id).astype(bool)
            if len(crowd) != n_gt:
                raise InputError(f"image {image_id!r}: {len(crowd)} gt_iscrowd flags for {n_gt} gt_{what}")
        return scores, g_lab, d_lab, crowd

    def _add_matches(
        self,
        image_id: Any,
        g_lab: np.ndarray,
        d_lab: np.ndarray,
        crowd: np.ndarray,
        scores: np.ndarray,
        g_area: np.ndarray,
        d_area: np.ndarray,
        iou: Any,
    ) -> None:
        """COCOeval.evaluateImg for one image: per class and area range, match detections to truth.

        ``iou(di, gi)`` gives the ``(D, G)`` IoU of the detections ``di`` (best first) with the
        ground truth ``gi`` of one class: boxes here, masks in the instance evaluator.
        """
        self._images.add(image_id)
        max_det = MAX_DETS[-1]
        for c in np.union1d(g_lab, d_lab):
            c = int(c)
            gi = np.nonzero(g_lab == c)[0]
            di = np.nonzero(d_lab == c)[0]
            self._num_gt[c] += int((~crowd[gi]).sum())
            self._num_pred[c] += len(di)
            # Highest score first; a stable sort keeps input order on ties, like COCO.
            di = di[np.argsort(-scores[di], kind="mergesort")][:max_det]
            ious_all = iou(di, gi)  # (D, G)
            n_area = len(AREA_RANGES)
            matched = np.zeros((n_area, len(IOU_THRESHOLDS), len(di)), dtype=bool)
            ignored = np.zeros_like(matched)
            num_gt = np.zeros(n_area, dtype=np.int64)
            for a, (lo, hi) in enumerate(AREA_RANGES.values()):
                g_ign = crowd[gi] | (g_area[gi] < lo) | (g_area[gi] > hi)
                order = np.argsort(g_ign, kind="mergesort")  # ignored ground truth last
                dt_out = (d_area[di] < lo) | (d_area[di] > hi)
                matched[a], ignored[a] = _match(ious_all[:, order], g_ign[order], crowd[gi][order], dt_out)
                num_gt[a] = int((~g_ign).sum())
            self._results[(image_id, c)] = _ImageClassResult(scores[di], matched, ignored, num_gt)

    def _accumulate(self) -> tuple[np.ndarray, np.ndarray]:
        """COCOeval.accumulate: precision ``(T, R, K, A, M)`` and recall ``(T, K, A, M)``, -1 = undefined."""
        num_t, num_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
        num_k, num_a, num_m = len(self.class_names), len(AREA_RANGES), len(MAX_DETS)
        precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
        recall = -np.ones((num_t, num_k, num_a, num_m))
        # COCO concatenates images in sorted-id order; the order only matters for
        # equal scores, but keep it so ties resolve the same way.
        by_class: dict[int, list[_ImageClassResult]] = {}
        for (_image_id, c), res in sorted(self._results.items(), key=lambda kv: _sort_key(kv[0][0])):
            by_class.setdefault(c, []).append(res)
        for k, results in by_class.items():
            for a in range(num_a):
                npig = int(sum(r.num_gt[a] for r in results))
                if npig == 0:
                    continue
                for m, max_det in enumerate(MAX_DETS):
                    scores = np.concatenate([r.scores[:max_det] for r in results])
                    order = np.argsort(-scores, kind="mergesort")
                    dtm = np.concatenate([r.matched[a][:, :max_det] for r in results], axis=1)[:, order]
                    dti = np.concatenate([r.ignored[a][:, :max_det] for r in results], axis=1)[:, order]
                    tp = np.cumsum(dtm & ~dti, axis=1).astype(np.float64)  # (T, D)
                    fp = np.cumsum(~dtm & ~dti, axis=1).astype(np.float64)
                    nd = tp.shape[1]
                    for t in range(num_t):
                        rc = tp[t] / npig
                        pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
                        recall[t, k, a, m] = rc[-1] if nd else 0.0
                        # Interpolate: precision at recall r is the best precision at recall >= r.
                        pr = np.maximum.accumulate(pr[::-1])[::-1]
                        idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                        q = np.zeros(num_r)
                        ok = idx < nd
                        q[ok] = pr[idx[ok]]
                        precision[t, :, k, a, m] = q
        return precision, recall

    def compute(self) -> dict[str, Any]:
        """COCO summary metrics, per-class AP and PR curves.

        Returns:
            ``map`` (AP@[.50:.95]), ``map_50``, ``map_75``, ``map_small``,
            ``map_medium``, ``map_large``, ``mar_1``, ``mar_10``, ``mar_100``,
            ``mar_small``, ``mar_medium``, ``mar_large`` (``None`` where COCO
            reports -1: no ground truth in that range), ``coco_stats`` (the 12
            numbers of ``COCOeval.stats`` in its order, -1 kept), ``per_class``
            (rows with ``class``, ``ap``, ``ap50``, ``ap75``, ``ar100``,
            ``num_gt``, ``num_pred``), ``pr_curves`` (class name to
            ``{"recall": [...], "precision": [...]}`` at ``iou_pr_curve``,
            101-point interpolated), ``num_images``, ``num_gt``, ``num_pred``.
        """
        precision, recall = self._accumulate()
        t50 = int(np.nonzero(np.isclose(IOU_THRESHOLDS, 0.5))[0][0])
        t75 = int(np.nonzero(np.isclose(IOU_THRESHOLDS, 0.75))[0][0])
        a_all = _AREA_NAMES.index("all")
        m_100 = MAX_DETS.index(100)

        def mean(x: np.ndarray) -> float:
            x = x[x > -1]
            return float(x.mean()) if x.size else -1.0

        stats = [
            mean(precision[:, :, :, a_all, m_100]),
            mean(precision[t50, :, :, a_all, m_100]),
            mean(precision[t75, :, :, a_all, m_100]),
            mean(precision[:, :, :, _AREA_NAMES.index("small"), m_100]),
            mean(precision[:, :, :, _AREA_NAMES.index("medium"), m_100]),
            mean(precision[:, :, :, _AREA_NAMES.index("large"), m_100]),
            mean(recall[:, :, a_all, MAX_DETS.index(1)]),
            mean(recall[:, :, a_all, MAX_DETS.index(10)]),
            mean(recall[:, :, a_all, m_100]),
            mean(recall[:, :, _AREA_NAMES.index("small"), m_100]),
            mean(recall[:, :, _AREA_NAMES.index("medium"), m_100]),
            mean(recall[:, :, _AREA_NAMES.index("large"), m_100]),
        ]
        names = [
            "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
            "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
        ]  # fmt: skip
        out: dict[str, Any] = {n: (None if s == -1 else s) for n, s in zip(names, stats)}
        out["coco_stats"] = stats
        per_class = []
        curves: dict[str, dict[str, list[float]]] = {}
        for k, name in enumerate(self.class_names):

            def opt(v: float) -> float | None:
                return None if v == -1 else v

            per_class.append(
                {
                    "class": name,
                    "ap": opt(mean(precision[:, :, k, a_all, m_100])),
                    "ap50": opt(mean(precision[t50, :, k, a_all, m_100])),
                    "ap75": opt(mean(precision[t75, :, k, a_all, m_100])),
                    "ar100": opt(mean(recall[:, k, a_all, m_100])),
                    "num_gt": int(self._num_gt[k]),
                    "num_pred": int(self._num_pred[k]),
                }
            )
            p = precision[self._curve_t, :, k, a_all, m_100]
            if (p > -1).all():
                curves[name] = {
                    "recall": [round(float(r), 4) for r in RECALL_THRESHOLDS],
                    "precision": [round(float(v), 4) for v in p],
                }
        out["per_class"] = per_class
        out["pr_curves"] = curves
        out["pr_curve_iou"] = self.iou_pr_curve
        out["num_images"] = len(self._images)
        out["num_gt"] = int(self._num_gt.sum())
        out["num_pred"] = int(self._num_pred.sum())
        return out


def _sort_key(image_id: Hashable) -> tuple[int, Any]:
    # Numbers before strings so mixed ids still sort; COCO ids are ints.
    if isinstance(image_id, (int, float, np.integer, np.floating)):
        return (0, float(image_id))
    return (1, str(image_id))


# Ground truth is drawn in one colour; predictions take a class colour from a
# palette without greens so the two never look alike.
GT_COLOR = (0, 200, 0)
_PRED_PALETTE = (
    (230, 25, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (240, 50, 230),
    (255, 225, 25),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (0, 0, 128),
)


def draw_detections(
    image: Any,
    boxes: Any,
    labels: Any,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    gt_boxes: Any = None,
    gt_labels: Any = None,
    min_score: float = 0.0,
    width: int | None = None,
) -> Any:
    """Draw predicted boxes (class colours, "name 0.87") and ground truth (green) on a copy of an image.

    Args:
        image: A :class:`PIL.Image.Image`.
        boxes: ``(D, 4)`` xyxy predicted boxes.
        labels: ``(D,)`` class indices.
        scores: ``(D,)`` confidences, or None.
        class_names: Names for the labels (indices are shown when None).
        gt_boxes: ``(G, 4)`` xyxy ground truth, drawn in green with a plain label.
        gt_labels: ``(G,)`` class indices.
        min_score: Predictions below this score are not drawn.
        width: Line width; default scales with the image size.

    Returns:
        A new RGB :class:`PIL.Image.Image`.
    """
    from PIL import ImageDraw, ImageFont

    img = image.convert("RGB")
    draw = ImageDraw.Draw(img)
    lw = width or max(1, round(max(img.size) / 250))
    font = ImageFont.load_default(size=max(10, round(max(img.size) / 45)))

    def name(lab: Any) -> str:
        lab = int(lab)
        if class_names is not None and 0 <= lab < len(class_names):
            return str(class_names[lab])
        return str(lab)

    def label_box(xy: tuple[float, float], text: str, color: tuple[int, int, int], below: bool) -> None:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        x, y = xy
        y = y + 1 if below else max(0, y - th - 4)
        draw.rectangle([x, y, x + tw + 4, y + th + 4], fill=color)
        draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)

    gt = np.asarray([] if gt_boxes is None else gt_boxes, dtype=np.float64).reshape(-1, 4)
    gl = np.asarray([] if gt_labels is None else gt_labels).reshape(-1)
    for i, b in enumerate(gt):
        draw.rectangle(b.tolist(), outline=GT_COLOR, width=lw)
        if i < len(gl):
            # Ground-truth labels sit inside the box's bottom edge, predictions above the top
            # edge, so a good prediction and its ground truth stay readable.
            text_h = draw.textbbox((0, 0), "Ag", font=font)[3]
            label_box((b[0], b[3] - text_h - 6), name(gl[i]), GT_COLOR, True)
    pb = np.asarray([] if boxes is None else boxes, dtype=np.float64).reshape(-1, 4)
    pl = np.asarray([] if labels is None else labels).reshape(-1)
    ps = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(ps) if ps is not None else np.arange(len(pb))  # best drawn last, on top
    for i in order:
        if ps is not None and ps[i] < min_score:
            continue
        color = _PRED_PALETTE[int(pl[i]) % len(_PRED_PALETTE)] if i < len(pl) else _PRED_PALETTE[0]
        draw.rectangle(pb[i].tolist(), outline=color, width=lw)
        text = name(pl[i]) if i < len(pl) else ""
        if ps is not None:
            text = f"{text} {ps[i]:.2f}".strip()
        if text:
            label_box((pb[i][0], pb[i][1]), text, color, False)
    return img


def plot_detection_pr(pr_curves: dict[str, dict[str, list[float]]], max_classes: int = 12) -> bytes:
    """Per-class interpolated precision-recall curves (``compute()["pr_curves"]``) as PNG.

    Args:
        pr_curves: Class name to ``{"recall": [...], "precision": [...]}``.
        max_classes: Only the classes with the largest area under the curve beyond this.

    Returns:
        PNG bytes.
    """
    from dlforge.evaluate.plots import fig_to_png, new_figure

    fig = new_figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    items = sorted(pr_curves.items(), key=lambda kv: -float(np.mean(kv[1]["precision"])))[:max_classes]
    for name, c in items:
        ax.plot(c["recall"], c["precision"], label=f"{name[:20]} (AP {np.mean(c['precision']):.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall per class")
    ax.grid(alpha=0.3)
    if items:
        ax.legend(fontsize=7, loc="lower left")
    else:
        ax.text(0.5, 0.5, "no class with ground truth", ha="center", va="center")
    return fig_to_png(fig)


def add_detection_section(report: Any, metrics: dict[str, Any], title: str = "Object detection") -> Any:
    """Append the standard detection section (COCO numbers, per-class AP, PR curves) to a report.

    Args:
        report: A :class:`dlforge.evaluate.html.Report`.
        metrics: The dict from :meth:`DetectionEvaluator.compute`.
        title: Section heading.

    Returns:
        The report, for chaining.
    """
    report.add_heading(title)
    keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100")
    cards = {k: ("n/a" if metrics.get(k) is None else metrics[k]) for k in keys if k in metrics}
    cards.update({k: metrics[k] for k in ("num_images", "num_gt", "num_pred") if k in metrics})
    report.add_metrics(cards)
    report.add_text(
        "COCO metrics: AP averaged over IoU 0.50:0.95 and 101 recall points, at most 100 detections "
        "per image and class; small < 32², medium < 96² pixels of ground-truth area; n/a = no ground truth."
    )
    report.add_table(metrics.get("per_class", []), caption="Per class (AP over IoU 0.50:0.95, AP50, AP75, AR@100)")
    if metrics.get("pr_curves"):
        iou = metrics.get("pr_curve_iou", 0.5)
        report.add_image(plot_detection_pr(metrics["pr_curves"]), f"Precision-recall at IoU {iou:.2f}")
    return report
