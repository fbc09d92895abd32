"""Safe extraction of uploaded dataset archives (.zip, .tar, .tar.gz/.tgz).

Every entry is checked before anything is written: absolute paths, ``..``
components and links that point outside the destination are refused
("zip slip"), as are device files. A failed extraction leaves the destination
as empty as it found it.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from dlforge.errors import InputError, NotFoundError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_CLUTTER = {"__MACOSX", ".DS_Store", "Thumbs.db"}
_DRIVE = re.compile(r"^[A-Za-z]:")


def is_archive(path: Path) -> bool:
    """True when the file name ends with a supported archive suffix."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def _check_name(name: str, archive: str) -> str:
    """The entry name normalised to POSIX, or InputError when it could escape the destination."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise InputError(f"{archive}: entry {name!r} has an absolute path; refusing to extract")
    if ".." in norm.split("/"):
        raise InputError(f"{archive}: entry {name!r} climbs out with '..'; refusing to extract")
    return norm


def _check_link(name: str, target: str, archive: str, hard: bool = False) -> None:
    """Refuse a link whose target lies outside the archive's own tree."""
    target = target.replace("\\", "/")
    # Hard-link targets name another member (archive-relative); symlinks are relative to their folder.
    joined = target if hard else posixpath.join(posixpath.dirname(name), target)
    resolved = posixpath.normpath(joined)
    if target.startswith("/") or _DRIVE.match(target) or resolved == ".." or resolved.startswith("../"):
        raise InputError(f"{archive}: entry {name!r} links to {target!r} outside the archive; refusing to extract")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _validate_zip(zf: zipfile.ZipFile, archive: str) -> list[str]:
    names = []
    for info in zf.infolist():
        name = _check_name(info.filename, archive)
        if _zip_is_symlink(info):
            _check_link(name, zf.read(info).decode("utf-8", "replace"), archive)
        names.append(name)
    return names


def _validate_tar(tf: tarfile.TarFile, archive: str) -> list[str]:
    names = []
    for m in tf.getmembers():
        name = _check_name(m.name, archive)
        if m.issym():
            _check_link(name, m.linkname, archive)
        elif m.islnk():
            _check_link(name, m.linkname, archive, hard=True)
        elif not (m.isfile() or m.isdir()):
            raise InputError(f"{archive}: entry {m.name!r} is a device or pipe; refusing to extract")
        names.append(name)
    return names


def _extract_zip(zf: zipfile.ZipFile, dest: Path, archive: str) -> None:
    root = dest.resolve()
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        target = dest / name
        # Defence in depth: whatever the checks missed, nothing lands outside dest.
        if root != target.resolve() and root not in target.resolve().parents:
            raise InputError(f"{archive}: entry {info.filename!r} resolves outside the destination")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if _zip_is_symlink(info):
            os.symlink(zf.read(info).decode("utf-8"), target)
            continue
        with zf.open(info) as fin, open(target, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)


def _top_folder(names: list[str], dest: Path) -> Path:
    tops = {n.strip("/").split("/")[0] for n in names if n.strip("/")}
    tops = {t for t in tops if t not in _CLUTTER and not t.startswith("._")}
    if len(tops) == 1:
        only = dest / tops.pop()
        if only.is_dir() and not only.is_symlink():
            return only
    return dest


def extract_archive(src: Path, dest: Path) -> Path:
    """Extract ``src`` into ``dest`` and return the dataset root.

    Args:
        src: a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (also ``.tar.bz2``/``.tar.xz``) file.
        dest: a folder that does not exist yet or is empty.

    Returns:
        The archive's single top folder when it has exactly one, else ``dest``.

    Raises:
        NotFoundError: ``src`` does not exist.
        InputError: unsupported or corrupt archive, non-empty ``dest``, or an
            entry that would land outside ``dest`` (named in the message).
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise NotFoundError(f"{src}: no such archive")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(f"{dest}: extraction target must be an empty folder")
    archive = src.name
    lower = archive.lower()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if lower.endswith(".zip"):
            with zipfile.ZipFile(src) as zf:
                names = _validate_zip(zf, archive)
                _extract_zip(zf, dest, archive)
        elif lower.endswith(ARCHIVE_SUFFIXES):
            with tarfile.open(src) as tf:
                names = _validate_tar(tf, archive)
                try:
                    tf.extractall(dest, filter="data")
                except tarfile.FilterError as exc:  # the stdlib's own checks, after ours
                    member = getattr(exc, "tarinfo", None)
                    entry = member.name if member is not None else "?"
                    raise InputError(f"{archive}: entry {entry!r} refused ({exc})") from exc
        else:
            raise InputError(f"{archive}: unsupported archive type (use {', '.join(ARCHIVE_SUFFIXES)})")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        _empty(dest)
        raise InputError(f"{archive}: corrupt or unreadable archive ({exc})") from exc
    except InputError:
        _empty(dest)
        raise
    return _top_folder(names, dest)


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
