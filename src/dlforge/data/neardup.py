"""Group near-duplicate images by the Hamming distance of their perceptual hashes.

Comparing every pair is quadratic (5 billion pairs for 100k images), so this uses
multi-index hashing (Norouzi, Punjani and Fleet, *Fast Search in Hamming Space
with Multi-Index Hashing*, CVPR 2012): split the B hash bits into m bands; by the
pigeonhole principle two hashes within distance k agree to within ``k // m`` bits
on at least one band. Each band is bucketed in a dense table, each hash looks up
its own bucket (and, when ``k // m`` is 1 or 2, the buckets one or two bit flips
away), and only those candidates are verified on the full hash. With m = k + 1
this is the classic "share one exact band" scheme; m is chosen from a cost model
so that buckets are neither empty (wasted lookups) nor crowded (wasted checks).
Verified pairs become edges and connected components become groups (the same
result as a union-find).

Identical hashes (a blank image imported twice, an exact copy re-encoded
losslessly) are merged up front, so a thousand equal hashes cost one lookup.
"""

from __future__ import annotations

import math

import numpy as np

from dlforge.errors import InputError

#: Default threshold on the 128-bit ``phash + dhash`` concatenation that
#: :mod:`dlforge.data.clean` uses; tuned in ``tests/data/test_neardup.py`` and
#: ``benchmarks/import_clean.py`` (resize, JPEG re-encode, crop up to 5%, brightness
#: +-15% stay within it with recall >= 0.99; distinct images are above it).
DEFAULT_MAX_DISTANCE_128 = 18
#: Default threshold for a single 64-bit hash (phash alone).
DEFAULT_MAX_DISTANCE_64 = 8

# Dense bucket tables are 2**bits entries; cap them at 4M entries (32 MB of int64).
_MAX_BAND_BITS = 22
# Candidate pairs verified per numpy batch: bounds memory whatever the bucket sizes.
_BATCH_PAIRS = 1 << 21


#: Below this side a perceptual hash sees too few pixels to tell images apart (8x8 digits all collide).
MIN_HASH_SIDE = 32


def hashable(meta: dict, min_side: int = MIN_HASH_SIDE) -> bool:
    """Whether an image's probed hashes are meaningful enough to call it a near duplicate."""
    return (
        bool(meta.get("phash") and meta.get("dhash")) and min(meta.get("width", 0), meta.get("height", 0)) >= min_side
    )


def default_max_distance(bits: int) -> int:
    """Tuned default threshold for hashes of ``bits`` bits (64: phash, 128: phash + dhash)."""
    if bits == 128:
        return DEFAULT_MAX_DISTANCE_128
    if bits == 64:
        return DEFAULT_MAX_DISTANCE_64
    return max(1, round(bits * DEFAULT_MAX_DISTANCE_128 / 128))


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, -1).sum(-1)


def _parse(hashes: dict[int, str]) -> tuple[list[int], np.ndarray]:
    ids = list(hashes)
    if not ids:
        return ids, np.zeros((0, 8), dtype=np.uint8)
    width = len(next(iter(hashes.values())))
    if width == 0 or width % 16:
        raise InputError(f"hashes: expected hex strings of 16, 32, ... digits, got {width} digits")
    try:
        raw = b"".join(bytes.fromhex(h) if len(h) == width else b"" for h in hashes.values())
    except ValueError as exc:
        raise InputError(f"hashes: not a hex string ({exc})") from None
    if len(raw) != len(ids) * width // 2:
        bad = next(i for i, h in hashes.items() if len(h) != width)
        raise InputError(f"hashes: sample {bad} has {len(hashes[bad])} hex digits, others have {width}")
    return ids, np.frombuffer(raw, dtype=np.uint8).reshape(len(ids), width // 2)


def _plan(n: int, bits: int, k: int) -> tuple[int, int]:
    """Pick (bands, per-band radius) that minimise the expected work per hash."""
    best: tuple[float, int, int] | None = None
    for m in range(1, bits + 1):
        band = math.ceil(bits / m)
        r = k // m
        if band > _MAX_BAND_BITS or r > 2:
            continue
        lookups = sum(math.comb(band, j) for j in range(r + 1))
        # per hash: m * lookups bucket reads, each yielding n / 2**band candidates on uniform hashes
        cost = m * lookups * (1.0 + n / 2.0**band)
        if best is None or cost < best[0]:
            best = (cost, m, r)
    # k < bits always admits m = k + 1 exact bands of <= 22 bits once bits/22 <= m, and callers
    # handle k >= bits (everything matches) themselves.
    assert best is not None, (n, bits, k)
    return best[1], best[2]


def _flip_masks(band: int, r: int) -> list[int]:
    masks = [0]
    if r >= 1:
        masks += [1 << a for a in range(band)]
    if r >= 2:
        masks += [(1 << a) | (1 << b) for a in range(band) for b in range(a + 1, band)]
    return masks


def candidate_edges(packed: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs of rows of ``packed`` (N, bytes) within ``max_distance`` bits, via multi-index hashing.

    Returns:
        ``(i, j, candidates)``: verified pairs of distinct rows (a pair may repeat when it
        matches on several bands) and how many candidate pairs were checked, which is
        what keeps this sub-quadratic.
    """
    n, nbytes = packed.shape
    bits = nbytes * 8
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, 0
    words = np.ascontiguousarray(packed).view(np.uint64)  # (N, bytes / 8); byte order is irrelevant to xor
    bitmat = np.unpackbits(packed, axis=1)  # (N, B), most significant bit first
    m, r = _plan(n, bits, max_distance)
    edges_i: list[np.ndarray] = []
    edges_j: list[np.ndarray] = []
    checked = 0
    bounds = np.linspace(0, bits, m + 1).round().astype(int)
    for s, e in zip(bounds[:-1], bounds[1:]):
        band = int(e - s)
        weights = (1 << np.arange(band - 1, -1, -1)).astype(np.int64)
        keys = bitmat[:, s:e].astype(np.int64) @ weights  # (N,)
        counts = np.bincount(keys, minlength=1 << band)
        start = np.concatenate(([0], np.cumsum(counts)[:-1]))
        # Work in bucket-sorted order: a bucket is a contiguous run, so candidates are ranges
        # and the hash words are read from contiguous 1-D arrays.
        order = np.argsort(keys, kind="stable")
        ks = keys[order]
        sw = [np.ascontiguousarray(words[order, t]) for t in range(words.shape[1])]
        for mask in _flip_masks(band, r):
            if mask == 0:
                # Same bucket: each position pairs with the later positions of its bucket.
                lo = np.arange(1, n + 1)
                cnt = start[ks] + counts[ks] - lo
            else:
                # Bucket `mask` bits away; only from the smaller key, so each pair comes once.
                q = ks ^ mask
                lo = start[q]
                cnt = np.where(q > ks, counts[q], 0)
            who = np.nonzero(cnt)[0]
            if who.size == 0:
                continue
            c = cnt[who]
            cum = np.cumsum(c)
            # Batches of whole ranges, at most _BATCH_PAIRS candidates each.
            cuts = np.searchsorted(cum, np.arange(_BATCH_PAIRS, int(cum[-1]), _BATCH_PAIRS))
            for part_who, part_c in zip(np.split(who, cuts), np.split(c, cuts)):
                if part_who.size == 0:
                    continue
                total = int(part_c.sum())
                ip = np.repeat(part_who, part_c)
                jp = np.arange(total) + np.repeat(lo[part_who] - (np.cumsum(part_c) - part_c), part_c)
                checked += total
                dist = _popcount(sw[0][ip] ^ sw[0][jp])
                for w in sw[1:]:
                    dist = dist + _popcount(w[ip] ^ w[jp])
                close = np.nonzero(dist <= max_distance)[0]
                edges_i.append(order[ip[close]])
                edges_j.append(order[jp[close]])
    if not edges_i:
        return empty, empty, checked
    return np.concatenate(edges_i), np.concatenate(edges_j), checked


def _components(n: int, ei: np.ndarray, ej: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes joined by the edges ``ei[k]-ej[k]``.

    A union-find over the edges: near-duplicate edges are few (about one per copy), so
    this is a fraction of a millisecond, and it keeps scipy.sparse (0.4 s to import)
    out of every clean.
    """
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    for a, b in zip(ei.tolist(), ej.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def near_duplicate_groups(hashes: dict[int, str], max_distance: int | None = None) -> list[list[int]]:
    """Group ids whose hashes are within ``max_distance`` bits of each other (transitively).

    Args:
        hashes: Sample id -> hex hash, all the same length (16 digits for one 64-bit hash,
            32 for the ``phash + dhash`` concatenation that cleaning uses).
        max_distance: Largest Hamming distance (over all bits) that counts as a near
            duplicate; ``None`` takes :func:`default_max_distance` for the hash width.

    Returns:
        Groups of two or more ids, each sorted, groups ordered by their smallest id.

    Raises:
        InputError: Hashes that are not hex, differ in length, or a negative threshold.
    """
    ids, packed = _parse(hashes)
    if len(ids) < 2:
        return []
    bits = packed.shape[1] * 8
    k = default_max_distance(bits) if max_distance is None else int(max_distance)
    if k < 0:
        raise InputError(f"max_distance must be >= 0, got {k}")
    if k >= bits:  # every pair is within k bits
        return [sorted(ids)]
    uniq, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    u = uniq.shape[0]
    if k > 0 and u > 1:
        ei, ej, _ = candidate_edges(uniq, k)
    else:
        ei = ej = np.zeros(0, dtype=np.int64)
    # Components over unique hashes; ids sharing a hash share its component.
    comp_of_id = _components(u, ei, ej)[inverse]
    sizes = np.bincount(comp_of_id)
    groups: dict[int, list[int]] = {}
    for sid, c in zip(ids, comp_of_id.tolist()):
        if sizes[c] > 1:
            groups.setdefault(c, []).append(sid)
    out = [sorted(g) for g in groups.values()]
    out.sort(key=lambda g: g[0])
    return out
