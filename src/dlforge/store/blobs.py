"""Content-addressed blob store: every file is kept once, named by its sha256."""

from __future__ import annotations

import hashlib
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

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, bool]:
        """Store ``data``; return ``(sha256, created)``."""
        sha = hashlib.sha256(data).hexdigest()
        if self.exists(sha):
            return sha, False
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return sha, self._commit(tmp, sha)

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
