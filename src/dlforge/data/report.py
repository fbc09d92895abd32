"""Dataset reports: what the data looks like and what is wrong with it, as JSON figures and one HTML file.

:func:`dataset_report` works on plain :class:`~dlforge.data.records.SampleRecord`
lists, so it serves a stored version (:func:`report_version`), an import not
yet stored, or a test. It reads sizes and hashes from ``record.meta`` (the
store probes them once at import) and decodes pixels only for bounded random
subsamples, so 20,000 images with boxes take seconds.

Example:
    >>> from dlforge import Workspace
    >>> from dlforge.data.report import report_version
    >>> rep = report_version(Workspace.open(), "parts@3")
    >>> rep.findings[:1]
    ['class `scratch` has 12 samples, 40x fewer than `ok`']
    >>> rep.save_html("parts-report.html")
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlforge.data.records import REVIEW_STATES, SPLITS, SampleRecord
from dlforge.data.report_dups import duplicate_groups, leakage
from dlforge.data.report_media import box_stats, image_stats, mask_stats, text_stats

__all__ = ["DatasetReport", "dataset_report", "report_version"]


@dataclass
class DatasetReport:
    """A dataset report.

    Attributes:
        title: report title.
        figures: every figure as JSON-able data (``overview``, ``classes``, ``images``,
            ``boxes``, ``masks``, ``text``, ``duplicates``, ``annotations``, ``versions``).
        findings: short statements in plain words, most important first.
        plots: plot name -> PNG bytes (what the HTML embeds).
    """

    title: str
    figures: dict[str, Any]
    findings: list[str]
    plots: dict[str, bytes] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "findings": self.findings, "figures": self.figures}

    def to_html(self) -> str:
        return _html(self).render()

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write one self-contained HTML file (plots embedded as PNG, no external references)."""
        return _html(self).save(path)


# --------------------------------------------------------------------------- figures


def _class_figures(records: Sequence[SampleRecord], classes: Sequence[str]) -> dict[str, Any]:
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    total: Counter[str] = Counter()
    boxes: Counter[str] = Counter()
    for r in records:
        labels = set(r.labels())
        for lab in labels:
            total[lab] += 1
            per_split[r.split or "none"][lab] += 1
        for a in r.annotations:
            if a.kind in ("box", "polygon", "mask") and a.label:
                boxes[a.label] += 1
    # Detection datasets carry labels on boxes only: count objects then.
    basis = "samples" if total else ("objects" if boxes else "samples")
    counts = total if total else boxes
    names = list(classes) + sorted(set(counts) - set(classes))
    table = [
        {"class": c, "count": int(counts.get(c, 0)), **{s: int(per_split[s].get(c, 0)) for s in sorted(per_split)}}
        for c in names
    ]
    nonzero = [counts[c] for c in names if counts.get(c, 0) > 0]
    ratio = (max(nonzero) / min(nonzero)) if nonzero else None
    return {
        "basis": basis,
        "counts": {c: int(counts.get(c, 0)) for c in names},
        "per_split": {s: dict(per_split[s]) for s in sorted(per_split)},
        "table": table,
        "imbalance_ratio": round(ratio, 6) if ratio is not None else None,
        "empty_classes": [c for c in classes if counts.get(c, 0) == 0],
        "unknown_labels": sorted(set(counts) - set(classes)),
    }


def _annotation_figures(records: Sequence[SampleRecord]) -> dict[str, Any]:
    kinds: Counter[str] = Counter()
    review: Counter[str] = Counter()
    authors: Counter[str] = Counter()
    annotated = 0
    multi = 0
    for r in records:
        if r.annotations:
            annotated += 1
        if len(r.labels()) > 1:
            multi += 1
        for a in r.annotations:
            kinds[a.kind] += 1
            review[a.review] += 1
            authors[a.author] += 1
    n = len(records)
    return {
        "samples": n,
        "annotated": annotated,
        "coverage": round(annotated / n, 6) if n else 0.0,
        "multi_label_samples": multi,
        "kinds": dict(kinds),
        "review": {s: int(review.get(s, 0)) for s in REVIEW_STATES}
        | {k: v for k, v in review.items() if k not in REVIEW_STATES},
        "authors": dict(authors.most_common(20)),
    }


def _duplicates(
    records: Sequence[SampleRecord], near_dup_groups: Sequence[Sequence[int]] | None, phash_distance: int
) -> dict[str, Any]:
    groups = duplicate_groups(records, phash_distance if near_dup_groups is None else -1)
    if near_dup_groups is not None:
        index = {r.sample_id: i for i, r in enumerate(records)}
        groups["near"] = [[index[s] for s in g if s in index] for g in near_dup_groups]
        groups["near"] = [g for g in groups["near"] if len(g) > 1]
    # Texts equal after normalisation (the store's norm_sha) are duplicates too.
    by_norm: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        ns = r.meta.get("norm_sha")
        if ns:
            by_norm[ns].append(i)
    exact_sets = {frozenset(g) for g in groups["exact"]}
    norm = [g for g in by_norm.values() if len(g) > 1 and frozenset(g) not in exact_sets]
    groups["near"].extend(norm)
    leaks = leakage(records, groups["exact"] + groups["near"])

    def names(gs: list[list[int]]) -> list[list[str]]:
        return [[records[i].name for i in g] for g in gs[:50]]

    return {
        "exact_groups": len(groups["exact"]),
        "exact_extra_copies": int(sum(len(g) - 1 for g in groups["exact"])),
        "near_groups": len(groups["near"]),
        "near_samples": int(sum(len(g) for g in groups["near"])),
        "phash_distance": phash_distance if near_dup_groups is None else None,
        "cross_split_groups": len(leaks),
        "leakage": leaks[:50],
        "exact_examples": names(groups["exact"]),
        "near_examples": names(groups["near"]),
    }


def dataset_report(
    records: Sequence[SampleRecord],
    classes: Sequence[str],
    *,
    title: str = "Dataset report",
    versions_summary: Sequence[dict[str, Any]] | None = None,
    near_dup_groups: Sequence[Sequence[int]] | None = None,
    max_images: int = 2000,
    pixel_sample: int = 300,
    phash_distance: int = 4,
    blob_path: Callable[[str], Path] | None = None,
    plots: bool = True,
    seed: int = 0,
) -> DatasetReport:
    """Compute a dataset's figures and findings.

    Args:
        records: the samples (one version, all splits).
        classes: the version's class names.
        title: report title.
        versions_summary: optional rows describing the dataset's versions (number, message, counts).
        near_dup_groups: precomputed near-duplicate groups (lists of sample ids); by default
            they are found from ``meta["phash"]``.
        max_images: most images decoded for their size when ``meta`` lacks it.
        pixel_sample: images decoded (as 64 px thumbnails) for channel statistics and contrast.
        phash_distance: near-duplicate threshold in pHash bits.
        blob_path: ``sha256 -> Path`` resolving annotation side files (segmentation PNGs).
        plots: render PNG plots (off for JSON-only use).
        seed: subsampling seed.

    Returns:
        :class:`DatasetReport`.
    """
    classes = list(classes)
    splits = Counter(r.split or "none" for r in records)
    media = Counter(r.media_type for r in records)
    figures: dict[str, Any] = {
        "overview": {
            "samples": len(records),
            "media_types": dict(media),
            "splits": {s: int(splits.get(s, 0)) for s in (*SPLITS, "none") if splits.get(s, 0)},
            "classes": len(classes),
        },
        "classes": _class_figures(records, classes),
        "annotations": _annotation_figures(records),
    }
    arrays: dict[str, Any] = {}
    images = [r for r in records if r.media_type == "image"]
    if images:
        figures["images"], arrays["images"] = image_stats(
            images, max_images=max_images, pixel_sample=pixel_sample, seed=seed
        )
        bfig, arrays["boxes"] = box_stats(images, classes, arrays["images"]["width"], arrays["images"]["height"])
        if bfig is not None:
            figures["boxes"] = bfig
        mfig = mask_stats(images, blob_path, max_images=max_images, seed=seed)
        if mfig is not None:
            figures["masks"] = mfig
    tfig = text_stats(records, seed=seed)
    if tfig is not None:
        figures["text"] = tfig
    figures["duplicates"] = _duplicates(records, near_dup_groups, phash_distance)
    if versions_summary is not None:
        figures["versions"] = list(versions_summary)
    findings = _findings(figures)
    rep = DatasetReport(title, figures, findings)
    if plots:
        from dlforge.data.report_plots import render_plots

        rep.plots = render_plots(figures, arrays)
    return rep


# --------------------------------------------------------------------------- findings


def _findings(f: dict[str, Any]) -> list[str]:
    out: list[str] = []
    ov, cl = f["overview"], f["classes"]
    unit = "samples" if cl["basis"] == "samples" else "objects"
    counts = {c: n for c, n in cl["counts"].items() if n > 0}
    if len(counts) >= 2:
        big = max(counts, key=counts.get)  # type: ignore[arg-type]
        for c, n in sorted(counts.items(), key=lambda kv: kv[1]):
            ratio = counts[big] / n
            if ratio < 5 or c == big:
                break
            out.append(f"class `{c}` has {n} {unit}, {ratio:.0f}x fewer than `{big}`")
            if len(out) >= 3:
                break
    for c in cl["empty_classes"]:
        out.append(f"class `{c}` has no {unit}")
    if cl["unknown_labels"]:
        out.append(f"labels not in the class list: {', '.join(map(repr, cl['unknown_labels'][:5]))}")
    per_split = cl["per_split"]
    for s in ("val", "test"):
        if s in per_split and counts:
            missing = [c for c in counts if per_split[s].get(c, 0) == 0]
            if missing:
                out.append(f"the {s} split has no {unit} of class(es) {', '.join(f'`{c}`' for c in missing[:5])}")
    if "none" in ov["splits"] and len(ov["splits"]) > 1:
        out.append(f"{ov['splits']['none']} samples have no split assigned")
    d = f["duplicates"]
    if d["cross_split_groups"]:
        out.append(f"{d['cross_split_groups']} duplicate groups span several splits (train/test leakage)")
    if d["exact_extra_copies"]:
        n = d["exact_extra_copies"]
        out.append(f"{n} sample{'s are' if n > 1 else ' is an'} exact cop{'ies' if n > 1 else 'y'} of another sample")
    if d["near_groups"]:
        out.append(f"{d['near_groups']} groups of near-duplicates ({d['near_samples']} samples)")
    an = f["annotations"]
    if an["samples"] and an["coverage"] < 1:
        out.append(
            f"{an['samples'] - an['annotated']} of {an['samples']} samples have no annotation "
            f"({100 * (1 - an['coverage']):.1f}%)"
        )
    if an["review"].get("needs_review"):
        out.append(f"{an['review']['needs_review']} annotations are marked needs_review")
    im = f.get("images")
    if im and im["measured"]:
        if im["width"]["min"] is not None and min(im["width"]["min"], im["height"]["min"]) < 32:
            out.append(f"some images are tiny (smallest side {min(im['width']['min'], im['height']['min']):.0f} px)")
        if im["distinct_sizes"] > 1 and im["aspect"]["max"] / max(im["aspect"]["min"], 1e-9) > 2:
            out.append(
                f"aspect ratios range from {im['aspect']['min']:.2f} to {im['aspect']['max']:.2f}; "
                "resizing will distort some images"
            )
        if len([m for m in im["modes"] if m not in ("unknown",)]) > 1:
            out.append(f"mixed colour modes: {', '.join(f'{k} ({v})' for k, v in im['modes'].items())}")
        if im["unreadable"]:
            out.append(f"{im['unreadable']} images could not be read")
    bx = f.get("boxes")
    if bx:
        small = bx["area_buckets"]["small"] / bx["boxes"]
        if small > 0.3:
            out.append(f"{100 * small:.0f}% of boxes are small (< 32x32 px); consider a larger input size")
        if bx["outside_image"]:
            out.append(f"{bx['outside_image']} boxes extend outside their image")
        if bx["degenerate"]:
            out.append(f"{bx['degenerate']} boxes have zero width or height")
        if im and bx["images_with_boxes"] < im["count"]:
            out.append(f"{im['count'] - bx['images_with_boxes']} images have no boxes (background images)")
    tx = f.get("text")
    if tx:
        if tx["empty"]:
            out.append(f"{tx['empty']} texts are empty")
        langs = {k: v for k, v in tx["languages"].items() if k != "none"}
        # Only worth saying when the second script is more than a stray few percent.
        if len(langs) > 1 and sorted(langs.values())[-2] >= 0.05 * sum(langs.values()):
            out.append("texts mix scripts: " + ", ".join(f"{k} {v}" for k, v in sorted(langs.items())))
    return out


# --------------------------------------------------------------------------- HTML


def _html(rep: DatasetReport) -> Any:
    from dlforge.evaluate.html import Report

    f = rep.figures
    r = Report(rep.title)
    r.add_heading("Findings")
    r.add_list(rep.findings or ["nothing unusual found"])
    r.add_heading("Overview")
    ov = f["overview"]
    r.add_metrics(
        {
            "samples": ov["samples"],
            "classes": ov["classes"],
            **{f"split {k}": v for k, v in ov["splits"].items()},
            "imbalance ratio": f["classes"]["imbalance_ratio"],
        }
    )
    if "versions" in f:
        r.add_table(f["versions"], caption="Versions")
    r.add_heading("Classes")
    r.add_table(f["classes"]["table"], caption=f"{f['classes']['basis']} per class and split")
    _img(r, rep, "classes", "Class distribution")
    if "images" in f:
        im = f["images"]
        r.add_heading("Images")
        r.add_metrics(
            {
                "measured": im["measured"],
                "distinct sizes": im["distinct_sizes"],
                "median width": im["width"]["median"],
                "median height": im["height"]["median"],
                "mean brightness": im["brightness"]["mean"],
                "mean contrast": (im["contrast"] or {}).get("mean"),
            }
        )
        if im["channels"]:
            r.add_table(
                [
                    {"channel": c, "mean": m, "std": s}
                    for c, m, s in zip("RGB", im["channels"]["mean"], im["channels"]["std"])
                ],
                caption=f"Channel statistics (0-1 scale, {im['channels']['images']} images sampled)",
            )
        r.add_table(im["top_sizes"], caption="Most common sizes")
        _img(r, rep, "images", "Image sizes, aspect ratios and brightness")
    if "boxes" in f:
        bx = f["boxes"]
        r.add_heading("Boxes")
        r.add_metrics(
            {
                "boxes": bx["boxes"],
                "images with boxes": bx["images_with_boxes"],
                "boxes per image (mean)": bx["per_image"]["mean"],
                **bx["area_buckets"],
            }
        )
        r.add_table(bx["per_class"], caption="Per-class box sizes (pixels)")
        _img(r, rep, "boxes", "Boxes per image, sizes, aspect ratios and positions")
    if "masks" in f and f["masks"].get("pixel_shares"):
        r.add_heading("Masks")
        r.add_table(f["masks"]["pixel_shares"], caption="Class pixel shares")
        _img(r, rep, "masks", "Class pixel shares")
    if "text" in f:
        tx = f["text"]
        r.add_heading("Text")
        r.add_metrics(
            {
                "texts": tx["texts"],
                "median length": tx["length_chars"]["median"],
                "vocabulary": tx["vocabulary"],
                "distinct chars": tx["distinct_chars"],
                **{f"{k} share": v for k, v in tx["charset_mix"].items() if v},
            }
        )
        r.add_table(
            [
                {"class": c, "top n-grams": ", ".join(f"{g} ({n})" for g, n in grams)}
                for c, grams in tx["top_ngrams"].items()
            ],
            caption="Top n-grams per class",
        )
        _img(r, rep, "text", "Text lengths and character sets")
    d = f["duplicates"]
    r.add_heading("Duplicates and leakage")
    r.add_metrics(
        {
            "exact groups": d["exact_groups"],
            "near-duplicate groups": d["near_groups"],
            "groups across splits": d["cross_split_groups"],
        }
    )
    if d["leakage"]:
        r.add_table(
            [{"splits": ", ".join(x["splits"]), "samples": ", ".join(x["names"][:5])} for x in d["leakage"]],
            caption="Duplicate groups spanning splits",
        )
    an = f["annotations"]
    r.add_heading("Annotations")
    r.add_metrics(
        {
            "coverage": an["coverage"],
            **{f"kind {k}": v for k, v in an["kinds"].items()},
            **{f"review {k}": v for k, v in an["review"].items()},
        }
    )
    return r


def _img(r: Any, rep: DatasetReport, key: str, caption: str) -> None:
    if key in rep.plots:
        r.add_image(rep.plots[key], caption=caption)


# --------------------------------------------------------------------------- workspace


def report_version(ws: Any, ref: str, **kwargs: Any) -> DatasetReport:
    """The report of a stored dataset version (``name`` or ``name@3``), with its version history."""
    v = ws.version(ref)
    records = v.records()
    versions = []
    try:
        for other in ws.dataset(v.name).versions():
            c = other.counts()
            versions.append(
                {
                    "version": other.number,
                    "message": other.message,
                    **{k: val for k, val in c.items() if isinstance(val, (int, float, str))},
                }
            )
    except Exception:  # the history is a nicety; the report must not fail on it
        versions = []
    rep = dataset_report(
        records, v.classes, title=f"Dataset {v.ref}", versions_summary=versions or None, blob_path=v.blob_path, **kwargs
    )
    rep.figures["dataset"] = v.ref
    return rep
