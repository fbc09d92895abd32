"""Label-quality mining and annotator agreement.

:func:`find_label_issues` puts the likely mislabelled samples of a dataset in
front of a reviewer. It never trusts a model trained on the very labels it
checks: every sample's class probabilities come from a fast model fitted on the
*other* folds (out-of-fold cross-validation), and cleanlab's confident learning
turns those probabilities into a ranked list of suspects. Outliers (samples far
from everything else in feature space) and near-duplicate conflicts (the same
picture or text under two labels) are reported next to them.

:func:`annotator_agreement` measures how well several annotators agree on the
same items: Cohen's kappa per pair and Fleiss' kappa overall for class labels,
mean IoU of matched boxes (and the match rate) for detection.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from dlforge.data.records import SampleRecord, Skip
from dlforge.errors import InputError

__all__ = [
    "LabelIssue",
    "LabelIssues",
    "find_label_issues",
    "record_features",
    "cohen_kappa",
    "fleiss_kappa",
    "box_iou",
    "match_boxes",
    "annotator_agreement",
]

# Side of the square thumbnail image features are computed on: large enough for
# gradient orientations to mean something, small enough to keep 10k images fast.
_THUMB = 32
_HOG_CELLS = 4
_HOG_BINS = 9


@dataclass
class LabelIssue:
    """One flagged sample.

    Attributes:
        sample_id: the record's ``sample_id``.
        name: the record's name, for people.
        kind: ``"label"`` (probably mislabelled), ``"outlier"`` (far from the
            rest of the data) or ``"duplicate_conflict"`` (same content, other label).
        given: the label the dataset holds now.
        suggested: the label a reviewer should consider (None when there is no
            better guess, e.g. for outliers).
        score: how sure the finder is that something is wrong, in [0, 1].
    """

    sample_id: int
    name: str
    kind: str
    given: str | None
    suggested: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "name": self.name,
            "kind": self.kind,
            "given": self.given,
            "suggested": self.suggested,
            "score": round(float(self.score), 6),
        }


@dataclass
class LabelIssues:
    """What :func:`find_label_issues` found.

    Attributes:
        issues: flagged samples, most suspicious first (label issues, then
            duplicate conflicts, then outliers, each ranked by score).
        sample_ids: the samples that took part, in the order of ``pred_probs``.
        labels: their given labels as class indices.
        pred_probs: out-of-fold class probabilities, shape (N, K).
        quality: cleanlab's label-quality score per sample (low = suspicious).
        classes: class names, index = column of ``pred_probs``.
        cv_accuracy: accuracy of the out-of-fold predictions against the given labels.
        skipped: records left out (no label, several labels, unreadable...).
    """

    issues: list[LabelIssue]
    sample_ids: list[int]
    labels: np.ndarray
    pred_probs: np.ndarray
    quality: np.ndarray
    classes: list[str]
    cv_accuracy: float
    skipped: list[Skip] = field(default_factory=list)

    def ranked(self, k: int | None = None) -> list[int]:
        """Sample ids ordered from the least to the most trustworthy label (top ``k``)."""
        order = np.argsort(self.quality, kind="stable")
        if k is not None:
            order = order[:k]
        return [self.sample_ids[i] for i in order]

    def suggestions(self) -> dict[int, tuple[str | None, float]]:
        """``sample_id -> (suggested label, score)`` for every flagged sample.

        This is what a dataset version needs to write ``needs_review``
        annotations; when a sample is flagged for several reasons the highest
        score wins.
        """
        out: dict[int, tuple[str | None, float]] = {}
        for issue in self.issues:
            prev = out.get(issue.sample_id)
            if prev is None or issue.score > prev[1]:
                out[issue.sample_id] = (issue.suggested, issue.score)
        return out

    def counts(self) -> dict[str, int]:
        c = Counter(i.kind for i in self.issues)
        return {k: c.get(k, 0) for k in ("label", "duplicate_conflict", "outlier")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_samples": len(self.sample_ids),
            "classes": self.classes,
            "cv_accuracy": round(self.cv_accuracy, 6),
            "counts": self.counts(),
            "issues": [i.to_dict() for i in self.issues],
            "skipped": [s.to_dict() for s in self.skipped],
        }


# --------------------------------------------------------------------------- features


def _hog(gray: np.ndarray) -> np.ndarray:
    """A small histogram-of-oriented-gradients descriptor of (N, S, S) images -> (N, C*C*B)."""
    gy, gx = np.gradient(gray, axis=(1, 2))
    mag = np.hypot(gx, gy)
    # Unsigned orientation in [0, pi): a dark-on-light edge and its inverse look the same.
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((ang / np.pi * _HOG_BINS).astype(np.int64), _HOG_BINS - 1)
    n, s, _ = gray.shape
    cell = s // _HOG_CELLS
    cy = np.arange(s) // cell
    cell_idx = cy[:, None] * _HOG_CELLS + cy[None, :]  # (S, S)
    flat = cell_idx[None] * _HOG_BINS + bins  # (N, S, S)
    out = np.zeros((n, _HOG_CELLS * _HOG_CELLS * _HOG_BINS), dtype=np.float64)
    rows = np.repeat(np.arange(n), s * s)
    np.add.at(out, (rows, flat.reshape(-1)), mag.reshape(-1))
    # Block-normalise per image so contrast does not dominate.
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out


def _image_features(records: Sequence[SampleRecord], skipped: list[Skip]) -> tuple[np.ndarray, list[int]]:
    from PIL import Image

    grays, colors, keep = [], [], []
    for i, r in enumerate(records):
        try:
            with Image.open(r.path) as im:
                rgb = im.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
        except Exception as exc:  # one unreadable image must not stop the job
            skipped.append(Skip(r.name, f"cannot read image: {exc}"))
            continue
        arr = np.asarray(rgb, dtype=np.float32) / 255.0  # (S, S, 3)
        grays.append(arr.mean(axis=2))
        colors.append(np.concatenate([arr.mean(axis=(0, 1)), arr.std(axis=(0, 1))]))
        keep.append(i)
    if not keep:
        return np.zeros((0, 0)), keep
    gray = np.stack(grays)  # (N, S, S)
    # Raw pixels at half resolution carry the layout; HOG carries the shapes.
    small = gray.reshape(len(gray), _THUMB // 2, 2, _THUMB // 2, 2).mean(axis=(2, 4)).reshape(len(gray), -1)
    feats = np.concatenate([small, _hog(gray), np.stack(colors)], axis=1)
    return feats.astype(np.float32), keep


def _row_frame(records: Sequence[SampleRecord], skipped: list[Skip]) -> tuple[Any, list[int]]:
    import pandas as pd

    rows, keep = [], []
    for i, r in enumerate(records):
        try:
            rows.append(json.loads(r.path.read_bytes()))
            keep.append(i)
        except Exception as exc:
            skipped.append(Skip(r.name, f"cannot read row: {exc}"))
    return pd.DataFrame(rows), keep


def record_features(
    records: Sequence[SampleRecord], *, exclude_columns: Sequence[str] = ()
) -> tuple[np.ndarray, list[int], list[Skip]]:
    """Fast, model-free features for the records' media.

    Images: a 16x16 grayscale thumbnail, a 4x4-cell gradient-orientation
    histogram and the channel means/stds. Rows: numeric columns plus one-hot
    categorical columns (``exclude_columns``, e.g. the label column, are
    dropped). Text is handled by :func:`find_label_issues` itself (TF-IDF).

    Returns:
        ``(features (N, D) float32, indices of the records used, skipped)``.
    """
    skipped: list[Skip] = []
    kinds = {r.media_type for r in records}
    if len(kinds) > 1:
        raise InputError(f"records mix media types {sorted(kinds)}; check one media type at a time")
    kind = kinds.pop() if kinds else "image"
    if kind == "image":
        feats, keep = _image_features(records, skipped)
        return feats, keep, skipped
    if kind == "row":
        import pandas as pd

        df, keep = _row_frame(records, skipped)
        df = df.drop(columns=[c for c in exclude_columns if c in df.columns])
        num = df.select_dtypes(include="number")
        num = num.fillna(num.median())
        cat_cols = [c for c in df.columns if c not in num.columns and df[c].nunique() <= 50]
        cat = pd.get_dummies(df[cat_cols].astype(str), dtype=float) if cat_cols else None
        parts = [num.to_numpy(dtype=float)] + ([cat.to_numpy()] if cat is not None else [])
        return np.concatenate(parts, axis=1).astype(np.float32), keep, skipped
    raise InputError(f"record_features: no feature extractor for media type {kind!r}; pass features=")


# --------------------------------------------------------------------------- label issues


def _oof_probs(x: Any, y: np.ndarray, n_classes: int, folds: int, seed: int, text: bool) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probs = np.zeros((len(y), n_classes), dtype=np.float64)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in skf.split(np.zeros(len(y)), y):
        if text:
            from sklearn.feature_extraction.text import TfidfVectorizer

            # Character n-grams work for CJK (no spaces) and Latin text alike.
            model = make_pipeline(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1),
                LogisticRegression(C=10.0, max_iter=2000),
            )
            xtr = [x[i] for i in train_idx]
            xte = [x[i] for i in test_idx]
        else:
            # Moderate regularisation: a model that memorises the noisy labels
            # would agree with them and hide the errors we are looking for.
            # PCA to 64 components keeps lbfgs fast (25 s -> 1 s on digits) and
            # acts as a further smoother.
            from sklearn.decomposition import PCA

            n_comp = min(64, x.shape[1], len(train_idx) - 1)
            model = make_pipeline(
                StandardScaler(), PCA(n_comp, random_state=seed), LogisticRegression(C=0.1, max_iter=1000)
            )
            xtr, xte = x[train_idx], x[test_idx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(xtr, y[train_idx])
        p = model.predict_proba(xte)
        cols = model.classes_  # a fold may lack a rare class; put columns where they belong
        probs[np.ix_(test_idx, cols)] = p
    # Rows for classes absent in a fold's training part get zero mass there; renormalise.
    probs = np.clip(probs, 1e-9, None)
    return probs / probs.sum(axis=1, keepdims=True)


def _duplicate_groups(records: Sequence[SampleRecord], phash_distance: int) -> list[list[int]]:
    """Indices of records sharing content: equal sha256, or pHash within ``phash_distance``."""
    parent = list(range(len(records)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    from dlforge.data.report_dups import duplicate_groups

    # Exact groups by sha256 and near groups by multi-index hashing (no N x N comparison),
    # merged: a near group and an exact group sharing a member are one family.
    found = duplicate_groups(records, phash_distance)
    for g in (*found["exact"], *found["near"]):
        for i in g[1:]:
            union(g[0], i)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def find_label_issues(
    records: Sequence[SampleRecord],
    classes: Sequence[str],
    *,
    features: np.ndarray | None = None,
    cv_folds: int = 5,
    seed: int = 0,
    label_column: str | None = None,
    phash_distance: int = 4,
    outlier_iqr: float = 3.0,
    progress: Callable[[str], None] | None = None,
) -> LabelIssues:
    """Rank the samples whose class label is most likely wrong.

    Args:
        records: samples with exactly one ``class`` annotation each (others are
            skipped and reported).
        classes: the dataset's class names.
        features: optional (N, D) features aligned with ``records`` (e.g.
            embeddings of a trained model); by default fast features are
            computed from the media (see :func:`record_features`; TF-IDF
            character n-grams for text).
        cv_folds: cross-validation folds for the out-of-fold probabilities
            (lowered automatically when the rarest class has fewer samples).
        seed: fold assignment seed.
        label_column: for ``row`` samples, a column of the row to drop from
            the features (the label itself, if the rows carry it).
        phash_distance: near-duplicate threshold on ``meta["phash"]`` (Hamming
            bits); -1 turns near-duplicate search off (exact duplicates are
            always checked).
        outlier_iqr: a sample whose mean distance to its nearest neighbours is
            above Q3 + ``outlier_iqr`` x IQR is an outlier.
        progress: optional callback receiving one-line progress messages.

    Returns:
        :class:`LabelIssues`, ranked, with ``suggestions()`` ready to be
        written as ``needs_review`` annotations.

    Raises:
        InputError: fewer than two classes with at least two samples each.
    """
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    say = progress or (lambda _m: None)
    classes = list(classes)
    cls_index = {c: i for i, c in enumerate(classes)}
    skipped: list[Skip] = []
    usable: list[int] = []
    for i, r in enumerate(records):
        labels = r.labels()
        if len(labels) != 1:
            skipped.append(Skip(r.name, "no class label" if not labels else "several class labels"))
        elif labels[0] not in cls_index:
            skipped.append(Skip(r.name, f"label {labels[0]!r} is not one of the classes"))
        else:
            usable.append(i)
    recs = [records[i] for i in usable]
    if features is not None:
        features = np.asarray(features)
        if len(features) != len(records):
            raise InputError(f"features has {len(features)} rows but there are {len(records)} records")
        features = features[usable]

    text = False
    if features is None:
        kinds = {r.media_type for r in recs}
        if kinds == {"text"}:
            text = True
            x_all: Any = []
            keep = []
            for j, r in enumerate(recs):
                try:
                    x_all.append(r.read_text())
                    keep.append(j)
                except Exception as exc:
                    skipped.append(Skip(r.name, f"cannot read text: {exc}"))
        else:
            say(f"computing features for {len(recs)} samples")
            x_all, keep, sk = record_features(recs, exclude_columns=[label_column] if label_column else [])
            skipped.extend(sk)
    else:
        x_all, keep = features, list(range(len(recs)))
    recs = [recs[j] for j in keep]
    y = np.array([cls_index[r.labels()[0]] for r in recs], dtype=np.int64)

    # Classes with a single sample cannot be cross-validated; leave them out, loudly.
    counts = Counter(y.tolist())
    rare = {c for c, n in counts.items() if n < 2}
    if rare:
        mask = np.array([c not in rare for c in y])
        for j in np.flatnonzero(~mask):
            skipped.append(Skip(recs[j].name, f"class {classes[y[j]]!r} has only one sample"))
        recs = [r for r, m in zip(recs, mask) if m]
        y = y[mask]
        x_all = [x_all[j] for j in np.flatnonzero(mask)] if text else x_all[mask]
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise InputError("find_label_issues needs at least two classes with two or more samples each")
    folds = max(2, min(cv_folds, min(Counter(y.tolist()).values())))

    # Work in the space of present classes so cleanlab sees no empty columns.
    remap = {c: k for k, c in enumerate(present)}
    yk = np.array([remap[c] for c in y])
    say(f"cross-validating a fast model ({folds} folds)")
    from threadpoolctl import threadpool_limits

    # Small dense problems: one BLAS thread is as fast, and far faster when cores are shared.
    with threadpool_limits(limits=1):
        probs = _oof_probs(x_all, yk, len(present), folds, seed, text)
    quality = get_label_quality_scores(yk, probs, method="self_confidence")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = cl_find(
            yk, probs, return_indices_ranked_by="self_confidence", filter_by="prune_by_noise_rate"
        )
    pred = probs.argmax(axis=1)
    cv_acc = float((pred == yk).mean())

    issues: list[LabelIssue] = []
    for j in flagged:
        j = int(j)
        suggested = classes[present[pred[j]]] if pred[j] != yk[j] else None
        issues.append(
            LabelIssue(
                recs[j].sample_id, recs[j].name, "label", classes[y[j]], suggested, 1.0 - float(quality[j])
            )
        )

    # Near-duplicate conflicts: identical content cannot be two classes at once.
    for group in _duplicate_groups(recs, phash_distance):
        labs = [classes[y[j]] for j in group]
        if len(set(labs)) < 2:
            continue
        top = Counter(labs).most_common()
        majority = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None
        for j, lab in zip(group, labs):
            if lab == majority:
                continue
            share = 1.0 - labs.count(lab) / len(labs)
            issues.append(
                LabelIssue(recs[j].sample_id, recs[j].name, "duplicate_conflict", lab, majority, share)
            )

    # Outliers: far from their nearest neighbours in the (standardised) feature space.
    if not text and len(recs) > 10:
        from sklearn.neighbors import NearestNeighbors
        from sklearn.preprocessing import StandardScaler

        z = StandardScaler().fit_transform(np.asarray(x_all, dtype=np.float64))
        k = min(10, len(recs) - 1)
        dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
        d = dist[:, 1:].mean(axis=1)  # column 0 is the point itself
        q1, q3 = np.percentile(d, [25, 75])
        limit = q3 + outlier_iqr * (q3 - q1)
        for j in np.flatnonzero(d > limit):
            score = float(1.0 - limit / d[j])  # 0 at the limit, towards 1 far beyond it
            issues.append(LabelIssue(recs[j].sample_id, recs[j].name, "outlier", classes[y[j]], None, score))

    order = {"label": 0, "duplicate_conflict": 1, "outlier": 2}
    issues.sort(key=lambda i: (order[i.kind], -i.score))
    full_probs = np.zeros((len(recs), len(classes)))
    full_probs[:, present] = probs
    return LabelIssues(
        issues=issues,
        sample_ids=[r.sample_id for r in recs],
        labels=y,
        pred_probs=full_probs,
        quality=np.asarray(quality, dtype=np.float64),
        classes=classes,
        cv_accuracy=cv_acc,
        skipped=skipped,
    )


# --------------------------------------------------------------------------- agreement


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Cohen's kappa between two annotators' labels on the same items."""
    if len(a) != len(b):
        raise InputError(f"cohen_kappa: {len(a)} labels vs {len(b)} labels")
    if not a:
        raise InputError("cohen_kappa: no items")
    cats = sorted(set(a) | set(b), key=str)
    idx = {c: i for i, c in enumerate(cats)}
    m = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b):
        m[idx[x], idx[y]] += 1
    n = m.sum()
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    if pe >= 1.0:  # both annotators always said the same single category
        return 1.0
    return float((po - pe) / (1.0 - pe))


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa from an (items, categories) table of how many raters chose each category.

    Every item must have the same number of raters (at least two).
    """
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        raise InputError("fleiss_kappa: counts must be a non-empty (items, categories) table")
    n_raters = m.sum(axis=1)
    if not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise InputError("fleiss_kappa: every item needs the same number (>= 2) of ratings")
    n = n_raters[0]
    p_j = m.sum(axis=0) / m.sum()
    p_i = ((m * m).sum(axis=1) - n) / (n * (n - 1))
    p_bar, pe = p_i.mean(), float((p_j**2).sum())
    if pe >= 1.0:
        return 1.0
    return float((p_bar - pe) / (1.0 - pe))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(
    a: np.ndarray,
    b: np.ndarray,
    labels_a: Sequence[str] | None = None,
    labels_b: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> list[tuple[int, int, float]]:
    """One-to-one matching of two annotators' boxes (Hungarian on IoU, same label only).

    Returns:
        ``(index in a, index in b, iou)`` for each pair with IoU >= ``iou_threshold``.
    """
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(a, b)
    if iou.size == 0:
        return []
    if labels_a is not None and labels_b is not None:
        same = np.array([[la == lb for lb in labels_b] for la in labels_a], dtype=bool)
        iou = np.where(same, iou, 0.0)
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]


def annotator_agreement(
    records: Sequence[SampleRecord],
    *,
    kind: str = "class",
    annotators: Sequence[str] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Agreement between annotators (``Annotation.author``) who labelled the same samples.

    Args:
        records: samples carrying annotations by several authors.
        kind: ``"class"`` (one label per author per sample) or ``"box"``.
        annotators: authors to compare (default: every author seen).
        iou_threshold: minimum IoU for two boxes to count as the same object.

    Returns:
        For ``class``: ``{"annotators", "items", "pairwise": [{"a", "b", "items",
        "cohen_kappa", "percent_agreement"}], "fleiss_kappa", "fleiss_items"}``
        (Fleiss over the items every annotator labelled). For ``box``:
        ``{"annotators", "items", "pairwise": [{"a", "b", "items", "mean_iou",
        "matched", "match_rate"}], "mean_iou"}`` where ``match_rate`` is
        2 x matched / (boxes of a + boxes of b).
    """
    if kind not in ("class", "box"):
        raise InputError(f"annotator_agreement: kind must be 'class' or 'box', not {kind!r}")
    per: list[dict[str, list[Any]]] = []
    seen: set[str] = set()
    for r in records:
        by_author: dict[str, list[Any]] = defaultdict(list)
        for a in r.annotations:
            if a.kind != kind:
                continue
            seen.add(a.author)
            by_author[a.author].append(a.label if kind == "class" else (a.label, a.data.get("bbox")))
        per.append(by_author)
    authors = sorted(annotators) if annotators else sorted(seen)
    if len(authors) < 2:
        raise InputError(
            f"annotator_agreement: need two or more annotators with {kind!r} annotations, found {authors}"
        )
    pairwise = []
    if kind == "class":
        for a, b in combinations(authors, 2):
            la, lb = [], []
            for d in per:
                if len(d.get(a, [])) == 1 and len(d.get(b, [])) == 1:
                    la.append(d[a][0])
                    lb.append(d[b][0])
            entry: dict[str, Any] = {"a": a, "b": b, "items": len(la)}
            if la:
                entry["cohen_kappa"] = round(cohen_kappa(la, lb), 6)
                entry["percent_agreement"] = round(float(np.mean([x == y for x, y in zip(la, lb)])), 6)
            pairwise.append(entry)
        full = [d for d in per if all(len(d.get(x, [])) == 1 for x in authors)]
        cats = sorted({d[x][0] for d in full for x in authors}, key=str)
        fk = None
        if full and cats:
            table = np.zeros((len(full), len(cats)))
            ci = {c: i for i, c in enumerate(cats)}
            for i, d in enumerate(full):
                for x in authors:
                    table[i, ci[d[x][0]]] += 1
            fk = round(fleiss_kappa(table), 6)
        return {
            "kind": kind,
            "annotators": authors,
            "items": len(per),
            "pairwise": pairwise,
            "fleiss_kappa": fk,
            "fleiss_items": len(full),
        }
    all_ious: list[float] = []
    for a, b in combinations(authors, 2):
        ious: list[float] = []
        n_a = n_b = items = 0
        for d in per:
            if a not in d or b not in d:
                continue
            items += 1
            ba = [x for x in d[a] if x[1] is not None]
            bb = [x for x in d[b] if x[1] is not None]
            n_a += len(ba)
            n_b += len(bb)
            if ba and bb:
                m = match_boxes(
                    np.array([x[1] for x in ba]),
                    np.array([x[1] for x in bb]),
                    [x[0] for x in ba],
                    [x[0] for x in bb],
                    iou_threshold,
                )
                ious.extend(v for _, _, v in m)
        all_ious.extend(ious)
        pairwise.append(
            {
                "a": a,
                "b": b,
                "items": items,
                "mean_iou": round(float(np.mean(ious)), 6) if ious else None,
                "matched": len(ious),
                "match_rate": round(2 * len(ious) / (n_a + n_b), 6) if n_a + n_b else None,
            }
        )
    return {
        "kind": kind,
        "annotators": authors,
        "items": len(per),
        "pairwise": pairwise,
        "mean_iou": round(float(np.mean(all_ious)), 6) if all_ious else None,
    }
