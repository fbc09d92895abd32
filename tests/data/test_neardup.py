"""Near-duplicate grouping: exact against brute force, tuned threshold, sub-quadratic at scale."""

from __future__ import annotations

import io
import random
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance
from scipy.sparse.csgraph import connected_components

from dlforge.data.neardup import candidate_edges, near_duplicate_groups
from dlforge.data.probe import probe_bytes_or_path
from dlforge.errors import InputError


def _brute_groups(packed: np.ndarray, k: int) -> list[list[int]]:
    bits = np.unpackbits(packed, axis=1).astype(np.int16)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    _, lab = connected_components((dist <= k).astype(np.int8), directed=False)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(lab):
        groups.setdefault(int(g), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


@pytest.mark.parametrize(("nbytes", "k"), [(8, 8), (8, 3), (16, 18), (16, 30), (8, 0)])
def test_groups_equal_brute_force(nbytes: int, k: int) -> None:
    rng = np.random.default_rng(k + nbytes)
    base = rng.integers(0, 256, (200, nbytes), dtype=np.uint8)
    rows = [base, base[:20]]  # exact copies too
    for _ in range(3):  # noisy copies around and across the threshold
        bits = np.unpackbits(base[rng.integers(0, 200, 150)], axis=1)
        rows.append(np.packbits(bits ^ (rng.random(bits.shape) < 0.8 * max(k, 1) / (8 * nbytes)), axis=1))
    packed = np.concatenate(rows)
    hashes = {i: packed[i].tobytes().hex() for i in range(len(packed))}
    assert near_duplicate_groups(hashes, k) == _brute_groups(packed, k)


def test_input_errors_and_edge_cases() -> None:
    with pytest.raises(InputError, match="hex digits"):
        near_duplicate_groups({1: "ab" * 8, 2: "ab" * 16})
    with pytest.raises(InputError, match="hex"):
        near_duplicate_groups({1: "zz" * 8, 2: "ab" * 8})
    with pytest.raises(InputError, match=">= 0"):
        near_duplicate_groups({1: "00" * 8, 2: "00" * 8}, -1)
    assert near_duplicate_groups({}) == []
    assert near_duplicate_groups({7: "00" * 8}) == []
    assert near_duplicate_groups({5: "00" * 8, 3: "00" * 8, 9: "ff" * 8}, 0) == [[3, 5]]
    assert near_duplicate_groups({5: "00" * 8, 3: "ff" * 8}, 64) == [[3, 5]]


def test_fifty_thousand_random_hashes_are_fast_and_not_all_pairs() -> None:
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, (50_000, 16), dtype=np.uint8)
    hashes = {i: packed[i].tobytes().hex() for i in range(len(packed))}
    t0 = time.perf_counter()
    groups = near_duplicate_groups(hashes)  # 128-bit default threshold
    elapsed = time.perf_counter() - t0
    assert groups == []  # random 128-bit hashes are ~64 bits apart
    _, _, checked = candidate_edges(packed, 18)
    all_pairs = len(packed) * (len(packed) - 1) // 2
    assert checked < all_pairs / 25, checked
    assert elapsed < 12, elapsed  # ~2 s on a 2-core machine


# -- tuned threshold on realistic perturbations -------------------------------------------------


def _scene(rng: random.Random) -> Image.Image:
    w = rng.randint(64, 128)
    h = rng.randint(int(w * 0.75), w)
    nrng = np.random.default_rng(rng.getrandbits(32))
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    bg = np.zeros((h, w, 3))
    for _ in range(3):
        fx, fy = nrng.uniform(-3, 3, 2)
        bg += np.sin(2 * np.pi * (fx * xx + fy * yy) + nrng.uniform(0, 6.3))[..., None] * nrng.uniform(-60, 60, 3)
    im = Image.fromarray(np.clip(bg + nrng.uniform(60, 200, 3), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(4, 10)):
        x0, y0 = rng.randint(-w // 4, w), rng.randint(-h // 4, h)
        box = [x0, y0, x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)]
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=fill)
    return im


def _perturb(rng: random.Random, im: Image.Image, kind: str) -> Image.Image:
    w, h = im.size
    if kind == "resize":
        f = rng.uniform(0.5, 1.5)
        return im.resize((int(w * f), int(h * f)), Image.Resampling.BILINEAR)
    if kind == "crop":  # up to 5% off each axis, split between the two sides
        cx, cy = int(w * rng.uniform(0, 0.05)), int(h * rng.uniform(0, 0.05))
        left, top = rng.randint(0, cx), rng.randint(0, cy)
        return im.crop((left, top, w - (cx - left), h - (cy - top)))
    if kind == "bright":
        return ImageEnhance.Brightness(im).enhance(rng.choice([0.85, 0.9, 1.1, 1.15]))
    return im  # "jpeg": the re-encode below is the perturbation


def _hash(im: Image.Image, fmt: str, quality: int = 90) -> str:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    m = probe_bytes_or_path(buf.getvalue(), "image")
    return m["phash"] + m["dhash"]


def test_default_threshold_precision_and_recall_on_perturbations() -> None:
    rng = random.Random(7)
    n_orig, n_copies = 600, 240
    originals = [_scene(rng) for _ in range(n_orig)]
    hashes = {i: _hash(im, rng.choice(["JPEG", "PNG"])) for i, im in enumerate(originals)}
    truth: set[tuple[int, int]] = set()
    kinds = ["resize", "crop", "bright", "jpeg"]
    for c in range(n_copies):
        src = rng.randrange(n_orig)
        copy = _perturb(rng, originals[src], kinds[c % 4])
        cid = n_orig + c
        hashes[cid] = _hash(copy, "JPEG", quality=rng.randint(50, 85) if kinds[c % 4] == "jpeg" else 90)
        truth.add((src, cid))
    # Copies of the same original are also near duplicates of each other.
    by_src: dict[int, list[int]] = {}
    for a, b in truth:
        by_src.setdefault(a, [a]).append(b)
    true_pairs = {(x, y) for g in by_src.values() for x in g for y in g if x < y}
    found = {(x, y) for g in near_duplicate_groups(hashes) for x in g for y in g if x < y}
    precision = len(found & true_pairs) / max(1, len(found))
    recall = len(found & true_pairs) / len(true_pairs)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
