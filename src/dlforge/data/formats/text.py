"""Text and tables in CSV (``.csv``, ``.tsv``, ``.csv.gz``) and JSON Lines (``.jsonl``).

Text classification: each row becomes a ``"text"`` sample (UTF-8 bytes of the
text, named ``reviews.csv#12`` after the line it starts on) with one class
annotation per label. The text column is the first of ``text, review, content,
sentence, comment`` present (or ``text_column``), the label column the first of
``label, labels, category, cat, class, sentiment`` (or ``label_column``);
``label_sep="|"`` splits multi-label cells. Files are decoded as UTF-8, then
UTF-8 with BOM, then GB18030; the encoding used is kept in each item's meta.

``task="tabular"`` imports each row as a ``"row"`` sample whose content is the
canonical JSON (sorted keys) of the row, numbers typed per column, with the
``target`` column (when given) moved into a class annotation.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    Summary,
    prepare_out,
    require_root,
    split_from_name,
    split_groups,
    write_text_atomic,
)
from dlforge.data.records import Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError

TEXT_COLUMNS = ("text", "review", "content", "sentence", "comment")
LABEL_COLUMNS = ("label", "labels", "category", "cat", "class", "sentiment")
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")
_BOM = b"\xef\xbb\xbf"
_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".csv", ".tsv", ".jsonl", ".ndjson", ".txt"):
        name = name.removesuffix(ext)
    return name


def _files(root: Path, exts: tuple[str, ...]) -> list[Path]:
    if root.is_file():
        return [root] if root.name.lower().endswith(exts) else []
    return [p for p in sorted(root.iterdir()) if p.is_file() and p.name.lower().endswith(exts) and p.name[0] != "."]


def decode(raw: bytes, source: str) -> tuple[str, str]:
    """Text and the encoding that decoded it (UTF-8, UTF-8 with BOM, GB18030, in that order).

    Raises:
        InputError: none of them decodes the bytes.
    """
    for enc in ENCODINGS:
        if enc == "utf-8" and raw.startswith(_BOM):
            continue  # plain UTF-8 would keep the BOM as a character; report utf-8-sig instead
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise InputError(f"{source}: not text in {', '.join(ENCODINGS)}")


def _read_file(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path.name}: unreadable ({exc})") from exc


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, src: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise InputError(f"{src}: {what} column {wanted!r} not found; columns are {columns}")
        return wanted
    lowered = {c.lower().strip(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _labels_of(value: Any, sep: str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    text = str(value).strip().lstrip("\ufeff")
    if isinstance(value, bool):
        text = text.lower()
    if sep:
        return [p.strip() for p in text.split(sep) if p.strip()]
    return [text] if text else []


def _sorted_labels(labels: set[str]) -> list[str]:
    if labels and all(_INT.match(v) for v in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _typed_columns(rows: list[dict[str, Any]]) -> dict[str, type]:
    """Per column, int or float when every non-empty value parses as one, else str."""
    types: dict[str, type] = {}
    for row in rows:
        for key, value in row.items():
            if not isinstance(value, str) or value == "":
                continue
            current = types.get(key, int)
            if current is int and not _INT.match(value):
                current = float
            if current is float:
                try:
                    float(value)
                except ValueError:
                    current = str
            types[key] = current
    return types


def _cast(value: Any, typ: type | None) -> Any:
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    if typ is int:
        return int(value)
    if typ is float:
        return float(value)
    return value


def canonical_json(obj: dict[str, Any]) -> bytes:
    """Row content as stored: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class _Rows:
    """What a file parser yields: (line number, row dict) or skips, plus its columns."""

    def __init__(self, columns: list[str], encoding: str) -> None:
        self.columns = columns
        self.encoding = encoding
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.skipped: list[Skip] = []


def _parse_csv(path: Path, options: dict[str, Any]) -> _Rows:
    text, enc = decode(_read_file(path), path.name)
    delimiter = options.get("delimiter")
    first = text.split("\n", 1)[0]
    if delimiter is None:
        tsv = ".tsv" in path.name.lower() or ("\t" in first and "," not in first)
        delimiter = "\t" if tsv else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path.name}: empty file") from None
    except csv.Error as exc:
        raise InputError(f"{path.name}: malformed header line ({exc})") from exc
    header = [h.strip().lstrip("\ufeff") for h in header]
    parsed = _Rows(header, enc)
    prev = reader.line_num
    rows = iter(reader)
    while True:
        start = prev + 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.skipped.append(Skip(f"{path.name}:{start}", f"line {start}: malformed CSV ({exc})"))
            prev = reader.line_num
            continue
        prev = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            parsed.skipped.append(
                Skip(f"{path.name}:{start}", f"line {start}: expected {len(header)} fields, got {len(row)}")
            )
            continue
        parsed.rows.append((start, dict(zip(header, row))))
    return parsed


def _parse_jsonl(path: Path, options: dict[str, Any]) -> _Rows:
    text, enc = decode(_read_file(path), path.name)
    parsed = _Rows([], enc)
    seen: dict[str, None] = {}
    # Only "\n" ends a JSON line: str.splitlines would also cut at U+2028, U+0085 ... inside strings.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            parsed.skipped.append(Skip(f"{path.name}:{lineno}", f"line {lineno}: malformed JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            parsed.skipped.append(Skip(f"{path.name}:{lineno}", f"line {lineno}: not a JSON object"))
            continue
        seen.update(dict.fromkeys(obj))
        parsed.rows.append((lineno, obj))
    parsed.columns = list(seen)
    return parsed


def _read(fmt: str, root: Path, exts: tuple[str, ...], parser: Any, options: dict[str, Any]) -> ImportBatch:
    root = require_root(root)
    files = _files(root, exts)
    if not files:
        raise InputError(f"{root}: no {' / '.join(exts)} file found")
    tabular = options.get("task") == "tabular"
    items: list[ImportItem] = []
    skipped: list[Skip] = []
    labels: set[str] = set()
    wanted = options.get("classes")
    for path in files:
        split = split_from_name(_stem(path))
        try:
            parsed = parser(path, options)
        except InputError as exc:
            if len(files) == 1:
                raise
            skipped.append(Skip(path.name, str(exc).split(": ", 1)[-1]))
            continue
        skipped += parsed.skipped
        rows = _tabular_items if tabular else _text_items
        got, skips = rows(path, parsed, split, options)
        skipped += skips
        for item in got:
            kept = []
            for a in item.annotations:
                if wanted is not None and a.label not in wanted:
                    skipped.append(Skip(item.name, f"label {a.label!r} is not in the class list"))
                else:
                    kept.append(a)
                    labels.add(str(a.label))
            if item.annotations and not kept:
                continue
            item.annotations = kept
            items.append(item)
    classes = list(wanted) if wanted is not None else _sorted_labels(labels)
    return ImportBatch(fmt, items, classes, task="tabular" if tabular else "text_classification", skipped=skipped)


def _text_items(
    path: Path, parsed: _Rows, split: str | None, options: dict[str, Any]
) -> tuple[list[ImportItem], list[Skip]]:
    text_col = _pick(parsed.columns, options.get("text_column"), TEXT_COLUMNS, "text", path.name)
    if text_col is None:
        raise InputError(
            f"{path.name}: no text column (looked for {', '.join(TEXT_COLUMNS)}); columns are "
            f"{parsed.columns}; pass text_column"
        )
    label_col = _pick(parsed.columns, options.get("label_column"), LABEL_COLUMNS, "label", path.name)
    sep = options.get("label_sep")
    items, skipped = [], []
    for line, row in parsed.rows:
        where = f"{path.name}:{line}"
        value = row.get(text_col)
        if not isinstance(value, str):
            skipped.append(Skip(where, f"line {line}: {text_col!r} is {'missing' if value is None else 'not text'}"))
            continue
        text = value.replace("\ufeff", "").strip()
        if not text:
            skipped.append(Skip(where, f"line {line}: empty text"))
            continue
        annotations = []
        if label_col is not None:
            found = _labels_of(row.get(label_col), sep)
            if not found:
                skipped.append(Skip(where, f"line {line}: missing label in {label_col!r}"))
                continue
            annotations = [Annotation("class", lbl) for lbl in dict.fromkeys(found)]
        items.append(
            ImportItem(
                name=f"{path.name}#{line}",
                media_type="text",
                content=text.encode("utf-8"),
                annotations=annotations,
                split=split,
                meta={"encoding": parsed.encoding, "source": path.name, "line": line},
            )
        )
    return items, skipped


def _tabular_items(
    path: Path, parsed: _Rows, split: str | None, options: dict[str, Any]
) -> tuple[list[ImportItem], list[Skip]]:
    target = options.get("target")
    if target is not None and target not in parsed.columns:
        raise InputError(f"{path.name}: target column {target!r} not found; columns are {parsed.columns}")
    types = _typed_columns([row for _, row in parsed.rows])
    columns = [c for c in parsed.columns if c != target]
    items, skipped = [], []
    for line, row in parsed.rows:
        annotations = []
        if target is not None:
            found = _labels_of(row.get(target), None)
            if not found:
                skipped.append(Skip(f"{path.name}:{line}", f"line {line}: missing target {target!r}"))
                continue
            annotations = [Annotation("class", found[0])]
        features = {k: _cast(v, types.get(k)) for k, v in row.items() if k != target}
        try:
            content = canonical_json(features)
        except ValueError as exc:
            skipped.append(Skip(f"{path.name}:{line}", f"line {line}: {exc}"))
            continue
        meta = {"encoding": parsed.encoding, "source": path.name, "line": line, "columns": columns}
        if target is not None:
            meta["target"] = target
        items.append(
            ImportItem(f"{path.name}#{line}", "row", content=content, annotations=annotations, split=split, meta=meta)
        )
    return items, skipped


def _write(fmt: str, records: list[SampleRecord], out: Path, options: dict[str, Any]) -> dict:
    out = prepare_out(out)
    summary = Summary(fmt)
    rows_mode = bool(records) and not any(r.media_type == "text" for r in records)
    kind = "row" if rows_mode else "text"
    sep = options.get("label_sep") or "|"
    target = options.get("target") or next((r.meta.get("target") for r in records if r.meta.get("target")), "label")
    files = []
    for split, group in split_groups(records, summary).items():
        dicts: list[dict[str, Any]] = []
        columns: dict[str, None] = {}
        for rec in group:
            if rec.media_type != kind:
                summary.drop(rec, f"media type {rec.media_type!r} does not fit a {kind} {fmt} file")
                continue
            others = [a.kind for a in rec.annotations if a.kind != "class"]
            if others:
                summary.drop(rec, f"{len(others)} non-class annotations dropped")
            labels = rec.labels()
            if rows_mode:
                row = json.loads(rec.path.read_bytes())
                columns.update(dict.fromkeys(rec.meta.get("columns") or []))
                columns.update(dict.fromkeys(row))
                if labels:
                    row[target] = labels[0]
                    columns[target] = None
            else:
                columns.update({"text": None, "label": None})
                row = {"text": rec.read_text()}
                if fmt == "jsonl":
                    row["label"] = labels[0] if len(labels) == 1 else labels
                else:
                    row["label"] = sep.join(labels)
            summary.items += 1
            summary.annotations += len(labels)
            dicts.append(row)
        name = f"{split or 'data'}.{fmt}"
        if fmt == "csv":
            buf = io.StringIO(newline="")
            # "\r\n" (RFC 4180) also makes the writer quote fields holding a lone "\r".
            writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\r\n")
            writer.writeheader()
            for row in dicts:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            write_text_atomic(out / name, buf.getvalue())
        else:
            lines = (json.dumps(row, ensure_ascii=False) for row in dicts)
            write_text_atomic(out / name, "".join(f"{line}\n" for line in lines))
        files.append(name)
    return summary.to_dict(files=files)


@register_format
class CsvFormat:
    """CSV/TSV (optionally gzip-compressed) text classification or tabular rows."""

    name = "csv"
    priority = 50
    extensions = (".csv", ".csv.gz", ".tsv", ".tsv.gz")

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        return root.exists() and bool(_files(root, CsvFormat.extensions))

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read every CSV in ``root`` (or the CSV file ``root``).

        Args:
            root: a CSV file or a folder of them (``train.csv``/``val.csv``/``test.csv`` set splits).
            **options: ``text_column``, ``label_column``, ``label_sep``, ``delimiter``,
                ``classes`` (keep only these labels), ``task="tabular"`` with ``target``.
        """
        return _read("csv", Path(root), CsvFormat.extensions, _parse_csv, options)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``<split>.csv`` (or ``data.csv``) with ``text,label`` (labels joined by
        ``label_sep``, default ``|``) or, for row samples, the row's columns plus ``target``."""
        return _write("csv", records, Path(out), options)


@register_format
class JsonlFormat:
    """JSON Lines text classification or tabular rows."""

    name = "jsonl"
    priority = 51
    extensions = (".jsonl", ".jsonl.gz", ".ndjson")

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        return root.exists() and bool(_files(root, JsonlFormat.extensions))

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read every JSONL file in ``root``; a list-valued label is multi-label.

        Args:
            root: a ``.jsonl`` file or a folder of them.
            **options: as for :class:`CsvFormat`.
        """
        return _read("jsonl", Path(root), JsonlFormat.extensions, _parse_jsonl, options)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``<split>.jsonl`` (or ``data.jsonl``): ``{"text", "label"}`` (a list when multi-label)."""
        return _write("jsonl", records, Path(out), options)
