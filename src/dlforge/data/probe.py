"""Probe stored media once at import time and keep the metadata that later jobs need.

The import pipeline calls :func:`probe_many` for every new blob and stores each
result in ``SampleRecord.meta``; cleaning (:mod:`dlforge.data.clean`), analysis
and splitting read it from there instead of decoding the files again.

What a probe returns, by media type:

- ``image``: ``width``/``height`` as displayed (EXIF orientation applied),
  ``mode``, ``format``, ``exif_orientation`` (1-8), ``phash`` and ``dhash``
  (64-bit hex, see :func:`image_hashes`; computed on the oriented grayscale image),
  ``hash_algo`` (:data:`HASH_ALGO`) and ``brightness`` (mean gray level, 0-255).
- ``text``: ``length`` (characters), ``lines``, ``norm_sha`` (sha256 of
  :func:`normalize_text`) and ``empty``.
- ``row``: ``fields`` (number of fields), ``norm_sha`` and ``empty``.

An unreadable item gives ``{"error": "<reason>"}`` instead; probing never raises
for a bad file, so one corrupt image cannot stop a batch.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import io
import json
import math
import multiprocessing
import threading
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: EXIF tag holding the orientation (1 = as stored, 2-8 = flips/rotations).
EXIF_ORIENTATION = 0x0112

# Orientation -> the transpose that shows the image upright (same table as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# JPEG draft target. phash looks at a 32x32 Lanczos reduction, so decoding at a DCT scale that
# keeps at least 4x that (libjpeg's 1/2, 1/4, 1/8 scaling) changes no hash bit in practice
# (tests/data/test_probe.py checks this) and cuts decode time for large photos several fold.
_DRAFT_MIN_SIDE = 128

#: Fields an image probe must have for cleaning to use it without probing again
#: (``hash_algo`` must also equal :data:`HASH_ALGO`).
IMAGE_FIELDS = ("width", "height", "phash", "dhash", "hash_algo")
#: Fields a text probe must have for cleaning to use it without probing again.
TEXT_FIELDS = ("norm_sha", "empty")


def _dct_rows(n: int, keep: int) -> np.ndarray:
    # First `keep` rows of the unnormalised DCT-II matrix, C[k, i] = 2 cos(pi k (2i + 1) / 2n):
    # exactly what scipy.fftpack.dct(x, type=2) computes, as a matrix product.
    k = np.arange(keep)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def _area_rows(n_out: int, n_in: int) -> np.ndarray:
    # (n_out, n_in) weights of an area-average resize: output cell j covers input cells
    # [j * n_in / n_out, (j + 1) * n_in / n_out), fractional at the edges.
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, cells + 1) - np.maximum(lo, cells), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


_DCT8 = _dct_rows(32, 8)  # (8, 32)
_ROWS8 = _area_rows(8, 32)  # (8, 32): the 32x32 reduction's rows -> 8
_COLS9 = _area_rows(9, 32).T  # (32, 9): its columns -> 9

#: Private meta key carrying an image's 32x32 reduction from probing to batch hashing.
_REDUCTION = "_reduction32"

#: Identifies how ``phash``/``dhash`` are computed. Hashes of different algorithms do not
#: compare, so cleaning re-probes an image whose stored ``hash_algo`` differs.
HASH_ALGO = "area32-v2"


def image_hashes(gray: Image.Image) -> tuple[str, str]:
    """Perceptual hash and difference hash of a grayscale image, as 16-digit hex.

    The algorithms of ``imagehash.phash`` (8x8 lowest DCT frequencies of a 32x32
    reduction against their median) and ``imagehash.dhash`` (signs of horizontal
    gradients of a 9x8 reduction), with area-average reductions instead of Lanczos:
    Pillow's Lanczos resize of a small image costs ~5x its box filter and, for
    hashing, buys nothing (an area average is the anti-aliasing a hash needs). The
    9x8 image is reduced from the 32x32 one by a matrix product. Values stay within a
    few bits of imagehash's (``tests/data/test_probe.py``) but are not equal, which is
    why stored hashes carry :data:`HASH_ALGO`.
    """
    ((phash, dhash, _),) = _hash_reductions([_reduce32(gray)])
    return phash, dhash


def _reduce32(gray: Image.Image) -> bytes:
    """The 32x32 area-average reduction every hash starts from, as 1024 gray bytes."""
    return gray.resize((32, 32), Image.Resampling.BOX).tobytes()


def _hash_reductions(reductions: list[bytes]) -> list[tuple[str, str, float]]:
    """``(phash, dhash, brightness)`` for many 32x32 reductions in a few array operations.

    Hashing a chunk at once instead of one image at a time: the per-image cost was some
    twenty small numpy calls, whose fixed overhead exceeded their arithmetic.
    """
    n = len(reductions)
    small = np.frombuffer(b"".join(reductions), dtype=np.uint8).reshape(n, 32, 32).astype(np.float64)
    low = (_DCT8 @ small @ _DCT8.T).reshape(n, 64)  # the 8x8 lowest frequencies, row-major
    mid = np.partition(low, (31, 32), axis=1)[:, 31:33].mean(axis=1)  # the median of 64 values
    tiny = _ROWS8 @ small @ _COLS9  # (n, 8, 9)
    bits = np.concatenate((low > mid[:, None], (tiny[:, :, 1:] > tiny[:, :, :-1]).reshape(n, 64)), axis=1)
    packed = np.packbits(bits, axis=1)  # first bit most significant, as imagehash prints
    # The DC coefficient is 4 * sum(small), and an area average keeps the image's mean exactly:
    # the mean gray level without another pass over the pixels.
    brightness = (low[:, 0] / 4096).tolist()
    return [(row[:8].tobytes().hex(), row[8:].tobytes().hex(), round(b, 2)) for row, b in zip(packed, brightness)]


def _orientation(im: Image.Image) -> int:
    """EXIF orientation (1-8), 1 when absent or unreadable."""
    # Parsing EXIF costs more than decoding a small JPEG; formats that keep EXIF as a raw
    # block in `info` (JPEG, PNG, WebP; filled during load) have none when it is absent.
    if im.format in ("JPEG", "MPO", "PNG", "WEBP") and "exif" not in im.info:
        return 1
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block does not make the pixels unreadable
        return 1
    return value if value in _TRANSPOSE else 1


def normalize_text(text: str) -> str:
    """Normal form used to compare texts: NFKC, casefolded, whitespace collapsed and stripped.

    NFKC maps compatibility forms to their plain equivalents (full-width ``ＡＢＣ　１２３``
    becomes ``ABC 123``, ligatures split), so texts that read the same compare equal.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    # casefold can leave a string that is no longer NFKC (e.g. some Greek forms); normalise again.
    folded = unicodedata.normalize("NFKC", folded)
    return " ".join(folded.split())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read(source: Path | str | bytes) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


def _probe_image(source: Path | str | bytes) -> dict[str, Any]:
    fp: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with warnings.catch_warnings():
        # A decompression-bomb warning is not an error of the file; keep the batch quiet.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(fp) as im:
            fmt = im.format
            mode = im.mode
            width, height = im.size
            if fmt == "JPEG":
                # Decode luminance only, at the smallest DCT scale that keeps >= _DRAFT_MIN_SIDE.
                # libjpeg still reads every entropy-coded byte, so truncation is still detected.
                im.draft("L", (_DRAFT_MIN_SIDE, _DRAFT_MIN_SIDE))
            im.load()  # full decode: raises on truncated or corrupt data
            orientation = _orientation(im)
            # Everything that reads pixels stays inside `with`: a drafted JPEG is already
            # mode L, so `gray` may be `im` itself.
            gray = im if im.mode == "L" else im.convert("L")
            if min(gray.size) >= 2 * _DRAFT_MIN_SIDE:
                # Same idea as the JPEG draft for other formats: a box reduction to >= 128 px
                # keeps every hash bit that matters and makes the Lanczos passes cheap.
                gray = gray.reduce(min(gray.size) // _DRAFT_MIN_SIDE)
            if orientation in _TRANSPOSE:
                gray = gray.transpose(_TRANSPOSE[orientation])
            reduction = _reduce32(gray)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return {
        "width": width,
        "height": height,
        "mode": mode,
        "format": fmt,
        "exif_orientation": orientation,
        _REDUCTION: reduction,  # hashed with its batch by probe_batch
    }


def _decode_text(data: bytes) -> str:
    # utf-8-sig drops a leading byte-order mark, which some exported CSVs carry on every row.
    return data.decode("utf-8-sig")


def _probe_text(source: Path | str | bytes) -> dict[str, Any]:
    text = _decode_text(_read(source))
    norm = normalize_text(text)
    return {
        "length": len(text),
        "lines": len(text.splitlines()),
        "norm_sha": _sha(norm),
        "empty": norm == "",
    }


def _probe_row(source: Path | str | bytes) -> dict[str, Any]:
    text = _decode_text(_read(source))
    norm = normalize_text(text)
    fields = 0
    if norm:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, (dict, list)):
            fields = len(value)
        else:
            first = next(csv.reader(io.StringIO(text.strip("\r\n"))), [])
            fields = len(first)
    return {"fields": fields, "norm_sha": _sha(norm), "empty": norm == ""}


_PROBES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "image": _probe_image,
    "text": _probe_text,
    "row": _probe_row,
}


def probe_bytes_or_path(path: Path | str | bytes, media_type: str) -> dict[str, Any]:
    """Probe one stored item and return its metadata.

    Args:
        path: The file to probe, or its content as bytes.
        media_type: ``"image"``, ``"text"`` or ``"row"``.

    Returns:
        The metadata described in the module docstring, or ``{"error": reason}`` when
        the item cannot be read (missing, truncated, corrupt, not UTF-8). An unknown
        media type also gives an ``error``.
    """
    return probe_batch([(path, media_type)])[0]


def _probe_one(path: Path | str | bytes, media_type: str) -> dict[str, Any]:
    # An image's meta comes back with its 32x32 reduction, not yet hashed (see probe_batch).
    probe = _PROBES.get(media_type)
    if probe is None:
        return {"error": f"unknown media type {media_type!r}"}
    try:
        return probe(path)
    except FileNotFoundError:
        return {"error": "file not found"}
    except UnicodeDecodeError as exc:
        return {"error": f"not UTF-8 text ({exc.reason} at byte {exc.start})"}
    except Image.UnidentifiedImageError:
        return {"error": "not a readable image (unknown or corrupt format)"}
    except Image.DecompressionBombError as exc:
        return {"error": f"image too large: {exc}"}
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        # Pillow reports truncated/corrupt data as OSError ("image file is truncated"),
        # SyntaxError (broken PNG chunks) or ValueError; all mean the pixels are unusable.
        reason = str(exc) or type(exc).__name__
        return {"error": f"corrupt or truncated {media_type}: {reason}"}


def probe_batch(items: Sequence[tuple[Path | str | bytes, str]]) -> list[dict[str, Any]]:
    """:func:`probe_bytes_or_path` for many items; images are hashed together.

    Args:
        items: ``(path or bytes, media_type)`` pairs.

    Returns:
        One metadata dict per item, in order.
    """
    metas = [_probe_one(p, m) for p, m in items]
    images = [m for m in metas if _REDUCTION in m]
    if images:
        for m, (phash, dhash, brightness) in zip(images, _hash_reductions([m.pop(_REDUCTION) for m in images])):
            m.update(phash=phash, dhash=dhash, hash_algo=HASH_ALGO, brightness=brightness)
    return metas


def _probe_chunk(chunk: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return probe_batch(chunk)


#: What a forkserver imports once, so each worker it forks starts with them loaded.
#: ``__main__`` too: otherwise every worker re-imports the main script (for the CLI, the
#: whole command-line app) before it can start.
_WORKER_PRELOAD = ["__main__", "dlforge.data.ingest", "dlforge.data.probe", "numpy", "PIL.Image"]


def pool_context() -> multiprocessing.context.BaseContext:
    """Start method for the import/probe pools.

    fork is the cheapest start (no re-import per worker) but is unsafe when other threads
    may hold locks (a progress bar's refresh thread, a web server, a DB pool); then a
    forkserver that has the worker modules preloaded, which makes its workers start almost
    as fast as forked ones (a bare forkserver re-imported numpy and Pillow in every worker).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_WORKER_PRELOAD)  # no effect once the server runs: it has them
    return ctx


#: Below this many items a process pool costs more than it saves.
_MIN_POOL_ITEMS = 64


def probe_many(
    items: list[tuple[Path, str]],
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Probe many items in a process pool; results come back in input order.

    Args:
        items: ``(path, media_type)`` pairs.
        workers: Worker processes (the machine's cores is a good value). ``1`` probes
            in this process.
        progress: Called with the number of items probed so far after each chunk.

    Returns:
        One metadata dict per item (see :func:`probe_bytes_or_path`).
    """
    n = len(items)
    results: list[dict[str, Any] | None] = [None] * n
    work = [(str(p), m) for p, m in items]
    if workers <= 1 or n < _MIN_POOL_ITEMS:
        for start in range(0, n, 64):
            results[start : start + 64] = probe_batch(work[start : start + 64])
            if progress is not None:
                progress(min(n, start + 64))
        return results  # type: ignore[return-value]

    # Chunks small enough for steady progress and load balance, big enough that the
    # per-task IPC cost (a pickle round trip) stays well under the decode cost.
    size = max(8, min(256, math.ceil(n / (workers * 16))))
    chunks = [(start, work[start : start + size]) for start in range(0, n, size)]
    done = 0
    try:
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=pool_context()) as pool:
            futures = {pool.submit(_probe_chunk, chunk): start for start, chunk in chunks}
            for fut in cf.as_completed(futures):
                start = futures[fut]
                out = fut.result()
                results[start : start + len(out)] = out
                done += len(out)
                if progress is not None:
                    progress(done)
    except cf.process.BrokenProcessPool:
        # A worker died (killed for memory, a crashing codec): finish what is left here,
        # one item at a time, so the batch still completes and reports per item.
        for i, (p, m) in enumerate(work):
            if results[i] is None:
                results[i] = probe_bytes_or_path(p, m)
                done += 1
                if progress is not None and done % 64 == 0:
                    progress(done)
        if progress is not None:
            progress(n)
    return results  # type: ignore[return-value]
