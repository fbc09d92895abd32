"""Moving a format reader's items into the blob store, probing each once.

Hashing, copying and probing (which fully decodes every image) are CPU-bound,
so large imports run them in a process pool over all cores; small ones stay in
process where a pool's start-up would cost more than it saves.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlforge.data.records import ImportItem
from dlforge.store.blobs import BlobStore

POOL_THRESHOLD = 256
ProgressFn = Callable[[int, int], None]


@dataclass
class StoredItem:
    item: ImportItem
    sha256: str
    size: int
    created: bool
    meta: dict[str, Any]


def _probe(path: Path | bytes, media_type: str) -> dict[str, Any]:
    from dlforge.data.probe import probe_bytes_or_path

    return probe_bytes_or_path(path, media_type)


_STORES: dict[str, BlobStore] = {}


def _ingest_chunk(blob_root: str, jobs: list[tuple[str, str]]) -> list[tuple[str, int, bool, dict[str, Any]]]:
    """Store and probe files; each is read once and the same bytes hashed, stored and probed."""
    from dlforge.data.probe import probe_batch

    store = _STORES.get(blob_root) or _STORES.setdefault(blob_root, BlobStore(Path(blob_root)))
    datas = [Path(path).read_bytes() for path, _ in jobs]
    stored = [store.put_bytes(data) for data in datas]
    metas = probe_batch([(data, m) for data, (_, m) in zip(datas, jobs)])  # images hashed together
    return [(sha, len(data), created, meta) for (sha, created), data, meta in zip(stored, datas, metas)]


def workers_default() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def store_items(
    items: list[ImportItem],
    blobs: BlobStore,
    *,
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> list[StoredItem]:
    """Store and probe every item; results keep the input order."""
    total = len(items)
    results: list[StoredItem | None] = [None] * total
    file_idx = [i for i, it in enumerate(items) if it.path is not None]
    done = 0
    for i, it in enumerate(items):
        if it.path is None:
            sha, created = blobs.put_bytes(it.content or b"")
            meta = _probe(blobs.path(sha), it.media_type)
            results[i] = StoredItem(it, sha, len(it.content or b""), created, meta)
            done += 1
    if progress and done:
        progress(done, total)
    workers = workers or workers_default()
    if len(file_idx) < POOL_THRESHOLD or workers == 1:
        for k in range(0, len(file_idx), 64):
            idx = file_idx[k : k + 64]
            jobs = [(str(items[i].path), items[i].media_type) for i in idx]
            for i, (sha, size, created, meta) in zip(idx, _ingest_chunk(str(blobs.root), jobs)):
                results[i] = StoredItem(items[i], sha, size, created, meta)
            done += len(idx)
            if progress:
                progress(done, total)
    else:
        chunk = 64
        chunks = [file_idx[k : k + chunk] for k in range(0, len(file_idx), chunk)]
        from dlforge.data.probe import pool_context

        ctx = pool_context()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [
                (
                    idx,
                    pool.submit(
                        _ingest_chunk,
                        str(blobs.root),
                        [(str(items[i].path), items[i].media_type) for i in idx],
                    ),
                )
                for idx in chunks
            ]
            for idx, fut in futures:
                for i, (sha, size, created, meta) in zip(idx, fut.result()):
                    results[i] = StoredItem(items[i], sha, size, created, meta)
                done += len(idx)
                if progress:
                    progress(done, total)
    if progress:
        progress(total, total)
    return [r for r in results if r is not None]
