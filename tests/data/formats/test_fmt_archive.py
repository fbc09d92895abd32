"""Archive extraction: single top folder, flat archives, zip slip and link escapes refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from dlforge.data.archive import extract_archive, is_archive
from dlforge.errors import InputError, NotFoundError


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tf.addfile(info, io.BytesIO(e[1]))
    return path


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_zip_with_single_top_folder(tmp_path: Path) -> None:
    src = tmp_path / "ds.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("ds/cat/a.png", b"x")
        zf.writestr("ds/dog/b.png", b"y")
        zf.writestr("__MACOSX/ds/._a.png", b"junk")
    root = extract_archive(src, tmp_path / "out")
    assert root == tmp_path / "out" / "ds"
    assert (root / "cat" / "a.png").read_bytes() == b"x"


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_flat_tar_returns_dest(tmp_path: Path, suffix: str, mode: str) -> None:
    src = _tar(tmp_path / f"ds{suffix}", [("a.txt", b"1"), ("sub/b.txt", b"2")], mode)
    assert is_archive(src)
    root = extract_archive(src, tmp_path / "out")
    assert root == tmp_path / "out" and (root / "sub" / "b.txt").read_bytes() == b"2"


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_zip_slip_is_refused_and_nothing_written(tmp_path: Path, name: str) -> None:
    src = tmp_path / "bad.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("good.txt", b"fine")
        zf.writestr(name, b"pwned")
    with pytest.raises(InputError, match=rf"bad.zip: entry '{name}'"):
        extract_archive(src, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "entry",
    [
        _link("ds/link", "../../outside"),
        _link("ds/abs", "/etc/passwd"),
        _link("ds/hard", "../outside", tarfile.LNKTYPE),
    ],
)
def test_tar_links_outside_are_refused(tmp_path: Path, entry: tarfile.TarInfo) -> None:
    src = _tar(tmp_path / "bad.tar.gz", [("ds/a.txt", b"1"), entry])
    with pytest.raises(InputError, match=f"entry '{entry.name}'"):
        extract_archive(src, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_tar_link_inside_is_fine(tmp_path: Path) -> None:
    src = _tar(tmp_path / "ok.tar", [("ds/a.txt", b"1"), _link("ds/b.txt", "a.txt")], "w")
    root = extract_archive(src, tmp_path / "out")
    assert (root / "b.txt").read_bytes() == b"1"


def test_zip_symlink_outside_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "link.zip"
    with zipfile.ZipFile(src, "w") as zf:
        info = zipfile.ZipInfo("ds/escape")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "../../../etc")
    with pytest.raises(InputError, match="entry 'ds/escape' links to"):
        extract_archive(src, tmp_path / "out")


def test_corrupt_missing_and_unsupported(tmp_path: Path) -> None:
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="broken.zip: corrupt"):
        extract_archive(tmp_path / "broken.zip", tmp_path / "o1")
    with pytest.raises(NotFoundError):
        extract_archive(tmp_path / "nope.zip", tmp_path / "o2")
    (tmp_path / "x.rar").write_bytes(b"rar")
    with pytest.raises(InputError, match="unsupported archive"):
        extract_archive(tmp_path / "x.rar", tmp_path / "o3")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(InputError, match="empty folder"):
        extract_archive(tmp_path / "broken.zip", tmp_path / "full")
