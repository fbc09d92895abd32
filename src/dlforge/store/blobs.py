"""Content-addressed blob store: every file is kept once, named by its sha256."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
from pathlib import Path

_CHUNK = 1 << 20


class BlobStore:
    """Files stored under ``root/ab/cdef...`` by the sha256 of their bytes.

    Writes go to a temp file in the same directory tree and are renamed into
    place, so a reader never sees a partial blob and two writers of the same
    content simply race to the same final name.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self._root = str(self.root)
        self._shards: dict[str, Path] = {}
        self._seq = itertools.count()

    def path(self, sha256: str) -> Path:
        # Joining one name to a cached shard folder is ~3x cheaper than building the whole
        # path: reading a 100k-item version builds 100k of these.
        shard = self._shards.get(sha256[:2])
        if shard is None:
            shard = self._shards.setdefault(sha256[:2], self.root / sha256[:2])
        return shard / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return ``(sha256, created)``."""
        sha = hashlib.sha256(data).hexdigest()
        # Plain strings and os calls: at tens of thousands of small files per import,
        # pathlib's per-call overhead was a third of the cost of storing a blob.
        final = f"{self._root}/{sha[:2]}/{sha[2:]}"
        if os.path.isfile(final):
            return sha, False
        # The temp file lives next to its final name: a same-directory rename is cheap and
        # does not serialise parallel importers on the file system's cross-directory
        # rename lock.
        tmp = f"{self._root}/{sha[:2]}/.{sha[2:]}.{os.getpid()}.{next(self._seq)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            os.unlink(tmp)
            raise
        # os.replace over an existing final name (a concurrent writer of the same bytes)
        # is harmless: both files hold the same content.
        os.replace(tmp, final)
        return sha, True

    def put_file(self, src: Path) -> tuple[str, bool]:
        """Copy ``src`` into the store while hashing it; return ``(sha256, created)``."""
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        try:
            with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
        except BaseException:
            os.unlink(tmp)
            raise
        return h.hexdigest(), self._commit(tmp, h.hexdigest())

    def _commit(self, tmp: str, sha: str) -> bool:
        final = self.path(sha)
        if final.exists():
            os.unlink(tmp)
            return False
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        return True

    def remove(self, sha256: str) -> None:
        """Delete a blob (only for rolling back blobs a failed job created)."""
        self.path(sha256).unlink(missing_ok=True)

    def copy_to(self, sha256: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(sha256), dest)
