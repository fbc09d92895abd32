"""Per-medium statistics for dataset reports: images, boxes, masks, text.

Everything works on arrays gathered once from the records (meta and
annotations), vectorised with numpy; pixels are decoded only for a bounded
random subsample (channel statistics, images whose meta lacks a size).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.data.records import SampleRecord

__all__ = ["histogram", "image_stats", "box_stats", "mask_stats", "text_stats", "charset"]

# COCO's size buckets: objects under 32x32 px are "small", under 96x96 "medium".
SMALL_AREA = 32 * 32
MEDIUM_AREA = 96 * 96
HEATMAP_BINS = 20


def histogram(values: np.ndarray, bins: int = 20, log: bool = False) -> dict[str, Any]:
    """``{"edges": [...], "counts": [...]}`` of finite values (log-spaced edges if ``log``)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    if log and lo > 0:
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        edges = np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(v, bins=edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.astype(int).tolist()}


def summary(values: np.ndarray) -> dict[str, float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {
        "n": int(v.size),
        "mean": round(float(v.mean()), 6),
        "std": round(float(v.std()), 6),
        "min": round(float(v.min()), 6),
        "median": round(float(np.median(v)), 6),
        "max": round(float(v.max()), 6),
    }


# --------------------------------------------------------------------------- images


def _probe_pixels(path: Path, thumb: int = 64) -> tuple[int, int, str, np.ndarray]:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        w, h = im.size
        mode = im.mode
        im.draft("RGB", (thumb * 2, thumb * 2))
        rgb = im.convert("RGB")
        rgb.thumbnail((thumb, thumb))
        return w, h, mode, np.asarray(rgb, dtype=np.float32) / 255.0  # (h, w, 3)


def image_stats(
    records: Sequence[SampleRecord], *, max_images: int = 2000, pixel_sample: int = 300, seed: int = 0
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Size, aspect, brightness, contrast and channel statistics of the image records.

    Sizes and brightness come from ``meta`` (``width``, ``height``, ``mode``,
    ``brightness``) where the store probed them; images without them are
    decoded, at most ``max_images`` (a random subsample when there are more).
    Channel mean/std and contrast need pixels: they are measured on a random
    subsample of ``pixel_sample`` images (64 px thumbnails).

    Returns:
        ``(figures, arrays)``: JSON-able figures and the raw arrays (for plots and box stats).
    """
    n = len(records)
    w = np.full(n, np.nan)
    h = np.full(n, np.nan)
    bright = np.full(n, np.nan)
    modes: Counter[str] = Counter()
    need: list[int] = []
    for i, r in enumerate(records):
        m = r.meta
        if "width" in m and "height" in m:
            w[i], h[i] = m["width"], m["height"]
            if m.get("brightness") is not None:
                bright[i] = m["brightness"]
            modes[str(m.get("mode", "unknown"))] += 1
        else:
            need.append(i)
    rng = np.random.default_rng(seed)
    probed = 0
    errors = 0
    if need:
        pick = need if len(need) <= max_images else sorted(rng.choice(need, max_images, replace=False).tolist())
        for i in pick:
            try:
                w[i], h[i], mode, px = _probe_pixels(records[i].path)
            except Exception:
                errors += 1
                continue
            bright[i] = float(px.mean(axis=2).mean() * 255.0)
            modes[mode] += 1
            probed += 1
    # Channel statistics on a bounded subsample: decoding every image would not scale.
    have = np.flatnonzero(np.isfinite(w))
    sample_idx = have if len(have) <= pixel_sample else np.sort(rng.choice(have, pixel_sample, replace=False))
    ch_mean, ch_sq, contrast, npx = np.zeros(3), np.zeros(3), [], 0
    for i in sample_idx:
        try:
            _, _, _, px = _probe_pixels(records[int(i)].path)
        except Exception:
            continue
        flat = px.reshape(-1, 3).astype(np.float64)
        ch_mean += flat.sum(axis=0)
        ch_sq += (flat**2).sum(axis=0)
        npx += len(flat)
        contrast.append(float(flat.mean(axis=1).std() * 255.0))
        if not np.isfinite(bright[i]):
            bright[i] = float(flat.mean() * 255.0)
    channel = None
    if npx:
        mu = ch_mean / npx
        sd = np.sqrt(np.maximum(ch_sq / npx - mu**2, 0.0))
        channel = {
            "mean": [round(float(x), 6) for x in mu],
            "std": [round(float(x), 6) for x in sd],
            "images": int(len(contrast)),
        }
    ok = np.isfinite(w) & np.isfinite(h) & (h > 0)
    aspect = np.where(ok, w / np.where(h > 0, h, 1), np.nan)
    sizes = Counter(zip(w[ok].astype(int).tolist(), h[ok].astype(int).tolist()))
    figs = {
        "count": n,
        "measured": int(ok.sum()),
        "decoded_for_size": probed,
        "unreadable": errors,
        "width": summary(w),
        "height": summary(h),
        "aspect": summary(aspect),
        "width_hist": histogram(w[ok]),
        "height_hist": histogram(h[ok]),
        "aspect_hist": histogram(aspect[ok], log=True),
        "distinct_sizes": len(sizes),
        "top_sizes": [{"width": a, "height": b, "count": c} for (a, b), c in sizes.most_common(10)],
        "modes": dict(modes),
        "brightness": summary(bright),
        "brightness_hist": histogram(bright, bins=16),
        "contrast": summary(np.array(contrast)) if contrast else None,
        "channels": channel,
    }
    return figs, {"width": w, "height": h, "aspect": aspect, "brightness": bright}


# --------------------------------------------------------------------------- boxes


def box_stats(
    records: Sequence[SampleRecord], classes: Sequence[str], width: np.ndarray, height: np.ndarray
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """Counts per image, sizes, aspects, positions and per-class sizes of ``box`` annotations."""
    cls_index = {c: i for i, c in enumerate(classes)}
    img_idx: list[int] = []
    coords: list[list[float]] = []
    lab: list[int] = []
    extra_labels: dict[str, int] = {}
    per_image = np.zeros(len(records), dtype=np.int64)
    for i, r in enumerate(records):
        for a in r.annotations:
            if a.kind != "box":
                continue
            bb = a.data.get("bbox")
            if not bb or len(bb) != 4:
                continue
            per_image[i] += 1
            img_idx.append(i)
            coords.append(bb)
            name = a.label or ""
            if name not in cls_index:
                extra_labels.setdefault(name, len(classes) + len(extra_labels))
            lab.append(cls_index.get(name, extra_labels.get(name, -1)))
    if not coords:
        return None, {}
    names = list(classes) + list(extra_labels)
    b = np.asarray(coords, dtype=np.float64)  # (B, 4) xyxy
    ii = np.asarray(img_idx)
    labels = np.asarray(lab)
    bw = b[:, 2] - b[:, 0]
    bh = b[:, 3] - b[:, 1]
    area = np.clip(bw, 0, None) * np.clip(bh, 0, None)
    iw, ih = width[ii], height[ii]
    known = np.isfinite(iw) & np.isfinite(ih) & (iw > 0) & (ih > 0)
    cx = (b[:, 0] + b[:, 2]) / 2 / np.where(known, iw, 1)
    cy = (b[:, 1] + b[:, 3]) / 2 / np.where(known, ih, 1)
    heat, _, _ = np.histogram2d(
        np.clip(cy[known], 0, 1 - 1e-9), np.clip(cx[known], 0, 1 - 1e-9), bins=HEATMAP_BINS, range=[[0, 1], [0, 1]]
    )
    rel = np.sqrt(area / np.where(known, iw * ih, np.nan))
    degenerate = (bw <= 0) | (bh <= 0)
    outside = known & ((b[:, 0] < -0.5) | (b[:, 1] < -0.5) | (b[:, 2] > iw + 0.5) | (b[:, 3] > ih + 0.5))
    aspect = np.where(bh > 0, bw / np.where(bh > 0, bh, 1), np.nan)
    per_class = []
    for k in np.unique(labels):
        m = labels == k
        per_class.append(
            {
                "class": names[k] if k >= 0 else "",
                "boxes": int(m.sum()),
                "median_width": round(float(np.median(bw[m])), 3),
                "median_height": round(float(np.median(bh[m])), 3),
                "median_rel_size": round(float(np.nanmedian(rel[m])), 6) if np.isfinite(rel[m]).any() else None,
                "small_share": round(float((area[m] < SMALL_AREA).mean()), 6),
            }
        )
    figs = {
        "boxes": int(len(b)),
        "images_with_boxes": int((per_image > 0).sum()),
        "per_image": summary(per_image),
        "per_image_hist": {
            "counts": np.bincount(np.minimum(per_image, 50)).astype(int).tolist(),
            "note": "index = boxes per image (50 = 50 or more)",
        },
        "width": summary(bw),
        "height": summary(bh),
        "area_buckets": {
            "small": int((area < SMALL_AREA).sum()),
            "medium": int(((area >= SMALL_AREA) & (area < MEDIUM_AREA)).sum()),
            "large": int((area >= MEDIUM_AREA).sum()),
        },
        "rel_size_hist": histogram(rel[np.isfinite(rel)]),
        "aspect": summary(aspect),
        "aspect_hist": histogram(aspect[np.isfinite(aspect) & (aspect > 0)], log=True),
        "heatmap": {"bins": HEATMAP_BINS, "rows_are": "y (top to bottom)", "counts": heat.astype(int).tolist()},
        "degenerate": int(degenerate.sum()),
        "outside_image": int(outside.sum()),
        "per_class": per_class,
        "unknown_labels": sorted(k for k in extra_labels if k),
    }
    arrays = {
        "w": bw,
        "h": bh,
        "rel": rel,
        "aspect": aspect,
        "heat": heat,
        "per_image": per_image,
        "labels": labels,
        "area": area,
    }
    return figs, arrays


# --------------------------------------------------------------------------- masks


def mask_stats(
    records: Sequence[SampleRecord],
    blob_path: Callable[[str], Path] | None,
    *,
    max_images: int = 2000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Class pixel shares of ``segmap`` annotations (PNG of class indices; 255 = ignore)."""
    from PIL import Image

    maps = [(i, a) for i, r in enumerate(records) for a in r.annotations if a.kind == "segmap"]
    counts_other = Counter(a.label or "" for r in records for a in r.annotations if a.kind in ("mask", "polygon"))
    if not maps and not counts_other:
        return None
    out: dict[str, Any] = {"segmaps": len(maps), "instance_masks_per_class": dict(counts_other)}
    if not maps:
        return out
    if blob_path is None:
        out["note"] = "no blob_path given: pixel shares not measured"
        return out
    rng = np.random.default_rng(seed)
    if len(maps) > max_images:
        maps = [maps[j] for j in sorted(rng.choice(len(maps), max_images, replace=False).tolist())]
    totals = np.zeros(256, dtype=np.int64)
    names: dict[int, str] = {}
    presence: Counter[int] = Counter()
    errors = 0
    for _, a in maps:
        try:
            with Image.open(blob_path(a.data["blob"])) as im:
                arr = np.asarray(im if im.mode in ("L", "P") else im.convert("L"))
        except Exception:
            errors += 1
            continue
        c = np.bincount(arr.reshape(-1), minlength=256)[:256]
        totals += c
        presence.update(np.flatnonzero(c[:255]).tolist())
        for k, v in (a.data.get("classes") or {}).items():
            names.setdefault(int(k), str(v))
    labelled = totals[:255].sum()
    shares = []
    for k in np.flatnonzero(totals[:255]):
        shares.append(
            {
                "index": int(k),
                "class": names.get(int(k), str(k)),
                "pixels": int(totals[k]),
                "share": round(float(totals[k] / labelled), 6),
                "images": presence[int(k)],
            }
        )
    shares.sort(key=lambda s: -s["pixels"])
    out.update(
        {
            "measured": len(maps) - errors,
            "unreadable": errors,
            "ignore_pixels": int(totals[255]),
            "pixel_shares": shares,
        }
    )
    return out


# --------------------------------------------------------------------------- text


def charset(ch: str) -> str:
    """``cjk``, ``latin``, ``digit``, ``space``, ``punct`` or ``other`` for one character."""
    o = ord(ch)
    if ch.isdigit():
        return "digit"
    if ch.isspace():
        return "space"
    if (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x20000 <= o <= 0x2A6DF
        or 0xF900 <= o <= 0xFAFF
        or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF
    ):
        return "cjk"
    if ch.isalpha() and ("LATIN" in unicodedata.name(ch, "") or ch.isascii()):
        return "latin"
    if unicodedata.category(ch).startswith("P") or unicodedata.category(ch).startswith("S"):
        return "punct"
    return "other"


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def _ngrams(text: str, cjk: bool) -> list[str]:
    if cjk:
        chars = [c for c in text if charset(c) == "cjk"]
        return ["".join(chars[i : i + 2]) for i in range(len(chars) - 1)] or chars
    words = [w.lower() for w in _WORD.findall(text)]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def text_stats(
    records: Sequence[SampleRecord], *, top: int = 10, max_texts: int = 50000, seed: int = 0
) -> dict[str, Any] | None:
    """Length distribution, character/vocabulary statistics, top n-grams per class, charset mix."""
    texts = [r for r in records if r.media_type == "text"]
    if not texts:
        return None
    if len(texts) > max_texts:
        rng = np.random.default_rng(seed)
        texts = [texts[j] for j in sorted(rng.choice(len(texts), max_texts, replace=False).tolist())]
    lengths, words_n = [], []
    mix: Counter[str] = Counter()
    doc_lang: Counter[str] = Counter()
    vocab: Counter[str] = Counter()
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    chars_vocab: set[str] = set()
    errors = 0
    for r in texts:
        try:
            t = r.read_text()
        except Exception:
            errors += 1
            continue
        lengths.append(len(t))
        c = Counter(charset(ch) for ch in t)
        mix.update(c)
        chars_vocab.update(t)
        letters = c["cjk"] + c["latin"]
        if letters == 0:
            doc_lang["none"] += 1
        elif c["cjk"] / letters > 0.8:
            doc_lang["cjk"] += 1
        elif c["latin"] / letters > 0.8:
            doc_lang["latin"] += 1
        else:
            doc_lang["mixed"] += 1
        is_cjk = c["cjk"] > c["latin"]
        toks = _ngrams(t, is_cjk)
        unigrams = [g for g in toks if " " not in g] if not is_cjk else [ch for ch in t if charset(ch) == "cjk"]
        words_n.append(len(unigrams))
        vocab.update(unigrams)
        for lab in r.labels() or ["(unlabelled)"]:
            per_class[lab].update(toks)
    total_chars = sum(mix.values()) or 1
    lengths_a = np.asarray(lengths, dtype=np.float64)
    return {
        "texts": len(lengths),
        "unreadable": errors,
        "length_chars": summary(lengths_a),
        "length_hist": histogram(lengths_a, log=bool(len(lengths_a)) and lengths_a.min() > 0),
        "tokens_per_text": summary(np.asarray(words_n, dtype=np.float64)),
        "vocabulary": len(vocab),
        "distinct_chars": len(chars_vocab),
        "type_token_ratio": round(len(vocab) / max(1, sum(vocab.values())), 6),
        "charset_mix": {
            k: round(mix.get(k, 0) / total_chars, 6) for k in ("cjk", "latin", "digit", "space", "punct", "other")
        },
        "languages": dict(doc_lang),
        "top_ngrams": {lab: [[g, n] for g, n in cnt.most_common(top)] for lab, cnt in sorted(per_class.items())},
        "empty": int((lengths_a == 0).sum()),
    }
