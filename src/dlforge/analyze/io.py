"""Reading tables from CSV/TSV/JSONL/Parquet files with encoding fallback and ragged-row skips."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dlforge.data.records import Skip
from dlforge.errors import InputError, NotFoundError

__all__ = ["TableRead", "read_table", "read_transactions", "decode_bytes", "ENCODINGS"]

#: Encodings tried in order. GB18030 is a superset of GBK/GB2312, which covers
#: the Chinese CSV exports that are not UTF-8.
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")


@dataclass
class TableRead:
    """A table and what reading it took.

    Attributes:
        df: the table.
        encoding: the text encoding that decoded the file (None for Parquet).
        delimiter: the field separator used (None for Parquet/JSONL).
        skipped: rows left out, each naming ``file:line`` and the reason.
    """

    df: pd.DataFrame
    path: str
    encoding: str | None = None
    delimiter: str | None = None
    skipped: list[Skip] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "rows": len(self.df),
            "columns": [str(c) for c in self.df.columns],
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "skipped_rows": len(self.skipped),
            "skipped": [s.to_dict() for s in self.skipped[:100]],
        }


def decode_bytes(data: bytes, name: str, encoding: str | None = None) -> tuple[str, str]:
    """Decode ``data`` with ``encoding`` or the first of :data:`ENCODINGS` that works.

    Returns:
        ``(text, encoding used)``.

    Raises:
        InputError: no encoding decodes the file.
    """
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise InputError(f"{name}: cannot decode as {encoding}: {exc}") from None
    # A BOM means utf-8-sig; plain utf-8 would keep the BOM glued to the first column name.
    order = (
        ("utf-8-sig",) + tuple(e for e in ENCODINGS if e != "utf-8-sig")
        if data.startswith(b"\xef\xbb\xbf")
        else ENCODINGS
    )
    for enc in order:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise InputError(f"{name}: not valid text in any of {', '.join(ENCODINGS)}; pass encoding=")


def _sniff_delimiter(text: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    head = text[:65536]
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_table(
    path: str | os.PathLike[str],
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    max_skips_reported: int = 1000,
) -> TableRead:
    """Read a CSV/TSV, JSON Lines or Parquet file into a DataFrame.

    Text files are decoded with ``encoding`` or, when not given, the first of
    UTF-8, UTF-8 with BOM and GB18030 that decodes the whole file (the one used
    is reported). Rows whose number of fields differs from the header's are
    skipped and reported with their line number, never silently padded.

    Args:
        path: the file.
        encoding: force a text encoding.
        delimiter: force a field separator (default: sniffed; tab for .tsv).
        max_skips_reported: keep at most this many skip records (all are counted in the
            ``skipped_total`` attribute of the frame's ``attrs``).

    Raises:
        NotFoundError: the file does not exist.
        InputError: the file cannot be decoded or parsed, or has no header.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return TableRead(pd.read_parquet(p), str(p))
        except Exception as exc:
            raise InputError(f"{p}: not a readable Parquet file: {exc}") from None
    text, used = decode_bytes(p.read_bytes(), str(p), encoding)
    if suffix in (".jsonl", ".ndjson"):
        rows, skipped = [], []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skip(f"{p.name}:{n}", f"not JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                skipped.append(Skip(f"{p.name}:{n}", "not a JSON object"))
                continue
            rows.append(obj)
        return TableRead(pd.DataFrame(rows), str(p), used, None, skipped)

    sep = delimiter or _sniff_delimiter(text, suffix)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{p}: empty file, expected a header row") from None
    except csv.Error as exc:
        raise InputError(f"{p}: cannot parse the header: {exc}") from None
    if not any(h.strip() for h in header):
        raise InputError(f"{p}: the first row is empty, expected a header row")
    good: list[list[str]] = []
    skipped: list[Skip] = []
    total_skipped = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            total_skipped += 1
            if len(skipped) < max_skips_reported:
                skipped.append(Skip(f"{p.name}:{reader.line_num}", f"unparsable row: {exc}"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            total_skipped += 1
            if len(skipped) < max_skips_reported:
                skipped.append(Skip(f"{p.name}:{reader.line_num}", f"{len(row)} fields, the header has {len(header)}"))
            continue
        good.append(row)
    # Re-parse the well-formed rows with pandas so column types are inferred the usual way.
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(good)
    buf.seek(0)
    try:
        df = pd.read_csv(buf)
    except Exception as exc:
        raise InputError(f"{p}: cannot parse as a table: {exc}") from None
    df.attrs["skipped_total"] = total_skipped
    return TableRead(df, str(p), used, sep, skipped)


def read_transactions(
    path: str | os.PathLike[str], *, encoding: str | None = None, delimiter: str | None = None
) -> tuple[list[list[str]], str]:
    """Read a basket file: one transaction per line, items separated by ``delimiter``.

    Returns:
        ``(transactions, encoding used)``; empty items and blank lines are dropped.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such file")
    text, used = decode_bytes(p.read_bytes(), str(p), encoding)
    sep = delimiter or _sniff_delimiter(text, p.suffix.lower())
    out = []
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep):
        items = sorted({c.strip() for c in row if c.strip()})
        if items:
            out.append(items)
    if not out:
        raise InputError(f"{p}: no transactions found")
    return out, used
