"""Semantic-segmentation metrics from an accumulated confusion matrix, and mask overlays.

:class:`SegmentationMetrics` counts (true class, predicted class) pixel pairs
over a whole evaluation set; IoU, Dice and accuracies all derive from that one
``C x C`` matrix, so metrics are dataset-level (not averages of per-image
scores) and adding images in any batch split gives the same result.

Example:
    >>> import numpy as np
    >>> m = SegmentationMetrics(num_classes=2)
    >>> m.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]))
    >>> round(m.compute()["miou"], 3)
    0.583
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dlforge.errors import InputError
from dlforge.evaluate.plots import fig_to_png, new_figure

__all__ = ["add_segmentation_section", "SegmentationMetrics", "overlay_mask", "plot_per_class_iou", "voc_palette"]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensors, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class SegmentationMetrics:
    """Accumulates a pixel confusion matrix; computes mIoU, Dice and accuracies.

    Args:
        num_classes: Number of classes ``C``; labels are ``0..C-1``.
        ignore_index: Target value of pixels that do not count (VOC's 255 borders).
        class_names: Names for the per-class table (default: the indices).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255, class_names: Sequence[str] | None = None):
        if num_classes < 1:
            raise InputError(f"num_classes: must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise InputError(f"class_names: {len(class_names)} names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows = target

    def reset(self) -> None:
        """Forget all pixels seen so far."""
        self.confusion[:] = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add predictions for one image or a batch.

        Args:
            pred: ``(H, W)`` or ``(B, H, W)`` class indices, or ``(C, H, W)`` /
                ``(B, C, H, W)`` scores (logits or probabilities; argmax is taken).
            target: ``(H, W)`` or ``(B, H, W)`` class indices, ``ignore_index`` for
                pixels that do not count.
        """
        p = _to_numpy(pred)
        t = _to_numpy(target)
        if p.ndim == t.ndim + 1 and p.shape[-3] == self.num_classes and np.issubdtype(p.dtype, np.floating):
            p = p.argmax(axis=-3)
        if p.shape != t.shape:
            raise InputError(f"segmentation update: pred shape {p.shape} does not match target shape {t.shape}")
        if t.ndim not in (2, 3):
            raise InputError(f"segmentation update: expected (H, W) or (B, H, W) masks, got shape {t.shape}")
        t = t.astype(np.int64, copy=False).ravel()
        p = p.astype(np.int64, copy=False).ravel()
        valid = t != self.ignore_index if self.ignore_index is not None else np.ones_like(t, dtype=bool)
        t, p = t[valid], p[valid]
        c = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= c):
            bad = int(t.max() if t.max() >= c else t.min())
            raise InputError(f"segmentation target: class {bad} outside 0..{c - 1} (ignore_index {self.ignore_index})")
        if p.size and (p.min() < 0 or p.max() >= c):
            bad = int(p.max() if p.max() >= c else p.min())
            raise InputError(f"segmentation prediction: class {bad} outside 0..{c - 1}")
        self.confusion += np.bincount(t * c + p, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, Any]:
        """Metrics over everything added.

        Returns:
            ``miou`` and ``mean_dice`` (means over classes present in the target or the
            prediction), ``pixel_accuracy``, ``mean_accuracy`` (mean per-class recall over
            classes present in the target), ``fw_iou`` (IoU weighted by target frequency),
            ``iou`` and ``dice`` (per-class lists, ``None`` for classes never seen),
            ``per_class`` rows (``class``, ``iou``, ``dice``, ``accuracy``, ``precision``,
            ``gt_pixels``, ``pred_pixels``), ``confusion_matrix`` and ``num_pixels``.
            Means are ``None`` before any pixel was added.
        """
        cm = self.confusion.astype(np.float64)
        tp = np.diag(cm)
        gt = cm.sum(axis=1)
        pr = cm.sum(axis=0)
        union = gt + pr - tp
        present = union > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(present, tp / union, np.nan)
            dice = np.where(present, 2 * tp / (gt + pr), np.nan)
            acc = np.where(gt > 0, tp / gt, np.nan)
            prec = np.where(pr > 0, tp / pr, np.nan)
        total = cm.sum()

        def opt(v: float) -> float | None:
            return None if np.isnan(v) else float(v)

        def mean(v: np.ndarray) -> float | None:
            v = v[~np.isnan(v)]
            return float(v.mean()) if v.size else None

        names = self.class_names or [str(i) for i in range(self.num_classes)]
        return {
            "miou": mean(iou),
            "mean_dice": mean(dice),
            "pixel_accuracy": float(tp.sum() / total) if total else None,
            "mean_accuracy": mean(acc),
            "fw_iou": float(np.nansum(gt / total * iou)) if total else None,
            "iou": [opt(v) for v in iou],
            "dice": [opt(v) for v in dice],
            "per_class": [
                {
                    "class": names[i],
                    "iou": opt(iou[i]),
                    "dice": opt(dice[i]),
                    "accuracy": opt(acc[i]),
                    "precision": opt(prec[i]),
                    "gt_pixels": int(gt[i]),
                    "pred_pixels": int(pr[i]),
                }
                for i in range(self.num_classes)
            ],
            "confusion_matrix": self.confusion.tolist(),
            "num_pixels": int(total),
        }


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (0 black, 1 dark red, 2 green, ...), ``n`` colours."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def _palette_array(palette: Any, n: int) -> np.ndarray:
    if palette is None:
        return np.asarray(voc_palette(max(n, 256)), dtype=np.float64)
    if isinstance(palette, Mapping):
        arr = np.asarray(voc_palette(max(n, 256)), dtype=np.float64)
        for k, color in palette.items():
            arr[int(k)] = color[:3]
        return arr
    arr = np.asarray(palette, dtype=np.float64)
    if arr.ndim == 1:  # PIL's flat [r, g, b, r, g, b, ...]
        arr = arr[: len(arr) // 3 * 3].reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise InputError("palette: expected RGB triples, a flat RGB list or a {class: (r, g, b)} dict")
    arr = arr[:, :3]
    if len(arr) < n:
        raise InputError(f"palette: {len(arr)} colours for class index {n - 1}")
    return arr


def overlay_mask(
    image: Any,
    mask: Any,
    alpha: float = 0.5,
    palette: Any = None,
    ignore_index: int | None = 255,
    background: int | None = 0,
) -> Any:
    """Tint an image with a class mask.

    Args:
        image: A :class:`PIL.Image.Image`.
        mask: ``(H, W)`` class indices (array, tensor or mode-L/P PIL image); resized with
            nearest neighbour when its size differs from the image's.
        alpha: Opacity of the class colours.
        palette: RGB triples indexed by class, a flat PIL palette, or ``{class: (r, g, b)}``;
            default the VOC colour map.
        ignore_index: Pixels with this value are left untinted.
        background: Class left untinted (``None`` tints every class).

    Returns:
        A new RGB :class:`PIL.Image.Image`.
    """
    from PIL import Image

    img = image.convert("RGB")
    if isinstance(mask, Image.Image):
        m_img = mask if mask.mode in ("L", "P", "I") else mask.convert("L")
    else:
        m = _to_numpy(mask)
        if m.ndim != 2:
            raise InputError(f"overlay_mask: expected an (H, W) mask, got shape {m.shape}")
        m_img = Image.fromarray(m.astype(np.int32))  # mode "I"
    if m_img.size != img.size:
        m_img = m_img.resize(img.size, Image.Resampling.NEAREST)
    m = np.asarray(m_img).astype(np.int64)
    n = int(m[m != ignore_index].max()) + 1 if (m != ignore_index).any() else 1
    pal = _palette_array(palette, n)
    base = np.asarray(img, dtype=np.float64)
    tint = np.ones(m.shape, dtype=bool)
    if ignore_index is not None:
        tint &= m != ignore_index
    if background is not None:
        tint &= m != background
    colors = pal[np.clip(m, 0, len(pal) - 1)]
    out = np.where(tint[..., None], (1 - alpha) * base + alpha * colors, base)
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def plot_per_class_iou(metrics: Mapping[str, Any]) -> bytes:
    """Horizontal bar chart of per-class IoU (from :meth:`SegmentationMetrics.compute`), as PNG."""
    rows = [r for r in metrics["per_class"] if r["iou"] is not None]
    fig = new_figure(6.5, max(2.0, 0.28 * len(rows) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    names = [r["class"] for r in rows][::-1]
    values = [r["iou"] for r in rows][::-1]
    ax.barh(range(len(rows)), values, color="#3b7dd8")
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    if metrics.get("miou") is not None:
        ax.axvline(metrics["miou"], color="#d83b3b", ls="--", lw=1, label=f"mIoU {metrics['miou']:.3f}")
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig_to_png(fig)


def add_segmentation_section(report: Any, metrics: dict[str, Any], title: str = "Semantic segmentation") -> Any:
    """Append the standard segmentation section (mIoU, Dice, per-class table, IoU bars) to a report.

    Args:
        report: A :class:`dlforge.evaluate.html.Report`.
        metrics: The dict from :meth:`SegmentationMetrics.compute`.
        title: Section heading.

    Returns:
        The report, for chaining.
    """
    report.add_heading(title)
    keys = ("miou", "mean_dice", "pixel_accuracy", "mean_accuracy", "fw_iou", "num_pixels")
    report.add_metrics({k: ("n/a" if metrics.get(k) is None else metrics[k]) for k in keys})
    report.add_table(metrics["per_class"], caption="Per class (empty: class absent from target and prediction)")
    if any(r["iou"] is not None for r in metrics["per_class"]):
        report.add_image(plot_per_class_iou(metrics), "IoU per class")
    return report
