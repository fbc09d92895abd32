"""COCO mask AP (``iouType="segm"``) and drawings of instance masks.

:class:`MaskEvaluator` is :class:`~dlforge.evaluate.detection.DetectionEvaluator`
with instance masks in place of boxes: the same greedy matching, 101-point
interpolation, area ranges and summary numbers, with the IoU of two masks
(``pycocotools.mask.iou``, crowd regions counted against the detection's own area)
and the mask areas deciding small/medium/large for both ground truth and
detections, as ``COCOeval`` does in ``segm`` mode. The test suite checks its summary
against pycocotools on the same predictions.

Masks are ``(N, H, W)`` bool arrays in the image's pixels, or lists of COCO RLE dicts
(as ``pycocotools.mask.encode`` returns them).

Example:
    >>> import numpy as np
    >>> m = np.zeros((1, 8, 8), bool); m[0, 2:6, 2:6] = True
    >>> ev = MaskEvaluator(["cell"])
    >>> ev.add(0, m, [0], m, [0.9], [0])
    >>> ev.compute()["map_50"]
    1.0
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from dlforge.errors import InputError
from dlforge.evaluate.detection import (
    DetectionEvaluator,
)

__all__ = ["MaskEvaluator", "draw_instances", "encode_masks", "mask_boxes"]


def encode_masks(masks: Any, image_id: Any = "?") -> list[dict[str, Any]]:
    """``(N, H, W)`` bool masks (array or tensor) -> COCO compressed RLEs; RLE lists pass through."""
    from pycocotools import mask as mask_utils

    if isinstance(masks, (list, tuple)) and (not masks or isinstance(masks[0], dict)):
        return list(masks)
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise InputError(f"image {image_id!r}: masks must have shape (N, H, W), got {tuple(arr.shape)}")
    if len(arr) == 0:
        return []
    return mask_utils.encode(np.asfortranarray(arr.astype(np.uint8).transpose(1, 2, 0)))


def mask_boxes(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """Tight ``(N, 4)`` xyxy boxes of RLE masks (pixel edges)."""
    from pycocotools import mask as mask_utils

    if not rles:
        return np.zeros((0, 4), dtype=np.float64)
    xywh = np.asarray(mask_utils.toBbox(list(rles)), dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)


class MaskEvaluator(DetectionEvaluator):
    """Accumulates per-image instance masks and predictions; computes COCO mask AP.

    :meth:`compute` returns the same keys as
    :meth:`DetectionEvaluator.compute <dlforge.evaluate.detection.DetectionEvaluator.compute>`
    (``map``, ``map_50``, ``map_75``, ..., ``per_class``, ``pr_curves``), over masks.

    Args:
        class_names: Class names; labels are indices into this list.
        iou_pr_curve: IoU threshold of the per-class precision-recall curves.
    """

    def add(  # type: ignore[override]
        self,
        image_id: Hashable,
        gt_masks: Any,
        gt_labels: Any,
        pred_masks: Any,
        pred_scores: Any,
        pred_labels: Any,
        gt_iscrowd: Any = None,
    ) -> None:
        """Add one image's ground-truth masks and predicted masks.

        Args:
            image_id: Any hashable, unique per image.
            gt_masks: ``(G, H, W)`` bool masks or G RLE dicts.
            gt_labels: ``(G,)`` class indices (or names).
            pred_masks: ``(D, H, W)`` bool masks or D RLE dicts, same image size.
            pred_scores: ``(D,)`` confidences.
            pred_labels: ``(D,)`` class indices (or names).
            gt_iscrowd: ``(G,)`` flags for crowd regions.
        """
        from pycocotools import mask as mask_utils

        if image_id in self._images:
            raise InputError(f"image {image_id!r}: added twice")
        gt = encode_masks(gt_masks, image_id)
        dt = encode_masks(pred_masks, image_id)
        sizes = {tuple(r["size"]) for r in gt + dt}
        if len(sizes) > 1:
            raise InputError(f"image {image_id!r}: masks of different sizes {sorted(sizes)}")
        scores, g_lab, d_lab, crowd = self._checked_labels(
            image_id, "masks", len(gt), len(dt), pred_scores, gt_labels, pred_labels, gt_iscrowd
        )
        g_area = np.asarray(mask_utils.area(gt), dtype=np.float64) if gt else np.zeros(0)
        d_area = np.asarray(mask_utils.area(dt), dtype=np.float64) if dt else np.zeros(0)

        def mask_iou(di: np.ndarray, gi: np.ndarray) -> np.ndarray:
            if not (len(di) and len(gi)):
                return np.zeros((len(di), len(gi)))
            ious = mask_utils.iou([dt[i] for i in di], [gt[i] for i in gi], [int(v) for v in crowd[gi]])
            return np.asarray(ious, dtype=np.float64).reshape(len(di), len(gi))

        self._add_matches(image_id, g_lab, d_lab, crowd, scores, g_area, d_area, mask_iou)


def draw_instances(
    image: Any,
    masks: Any,
    labels: Any,
    scores: Any = None,
    class_names: Sequence[str] | None = None,
    *,
    min_score: float = 0.0,
    alpha: float = 0.5,
) -> Any:
    """Tint each instance mask in its own colour and draw its box and label on a copy of an image.

    Args:
        image: A :class:`PIL.Image.Image`.
        masks: ``(N, H, W)`` bool masks (or RLEs) in the image's pixels.
        labels: ``(N,)`` class indices.
        scores: ``(N,)`` confidences, or None for ground truth.
        class_names: Names for the labels.
        min_score: Instances below this score are not drawn.
        alpha: Opacity of the mask colours.

    Returns:
        A new RGB :class:`PIL.Image.Image`.
    """
    from pycocotools import mask as mask_utils

    from dlforge.evaluate.detection import draw_detections
    from dlforge.evaluate.segmentation import overlay_mask, voc_palette

    rles = encode_masks(masks)
    labels = np.asarray([] if labels is None else labels).reshape(-1)
    keep = np.arange(len(rles))
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        keep = keep[scores[keep] >= min_score]
    w, h = image.size
    index = np.zeros((h, w), dtype=np.uint8)  # 0 = no instance, k = k-th drawn instance (mod 254)
    # larger instances first, so smaller ones on top of them stay visible
    areas = np.asarray(mask_utils.area([rles[i] for i in keep])) if len(keep) else np.zeros(0)
    for rank, i in enumerate(keep[np.argsort(-areas, kind="mergesort")]):
        index[mask_utils.decode(rles[i]).astype(bool)] = rank % 254 + 1
    palette = voc_palette()
    tinted = overlay_mask(image, index, alpha=alpha, palette=palette, ignore_index=None, background=0)
    return draw_detections(
        tinted,
        mask_boxes([rles[i] for i in keep]),
        labels[keep],
        None if scores is None else scores[keep],
        class_names,
        width=1,
    )
