"""CSV / JSONL text classification and tabular rows: columns, encodings, bad lines, round trips."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlforge.data.formats.text import CsvFormat, JsonlFormat, canonical_json
from dlforge.data.records import Annotation, SampleRecord
from dlforge.errors import InputError

ROWS = [("1", "很快，好吃，味道足"), ("0", "送餐太慢了"), ("1", 'said "great", twice\nsecond line'), ("0", "ok")]


def test_csv_detects_columns_and_names_rows(tmp_path: Path, fmtgen) -> None:
    path = fmtgen.text_csv(tmp_path / "reviews.csv", ROWS)
    batch = CsvFormat.read(path)
    assert batch.task == "text_classification" and batch.classes == ["0", "1"]
    assert [it.content.decode() for it in batch.items] == [t for _, t in ROWS]
    assert [it.annotations[0].label for it in batch.items] == [lbl for lbl, _ in ROWS]
    # the quoted two-line row starts on line 4, so the row after it starts on line 6
    assert [it.name for it in batch.items] == ["reviews.csv#2", "reviews.csv#3", "reviews.csv#4", "reviews.csv#6"]
    assert batch.items[0].meta["encoding"] == "utf-8"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030"])
def test_csv_encodings_are_tried_in_order(tmp_path: Path, fmtgen, encoding: str) -> None:
    path = fmtgen.text_csv(tmp_path / "r.csv", ROWS, encoding=encoding)
    batch = CsvFormat.read(tmp_path)
    assert {it.meta["encoding"] for it in batch.items} == {encoding}
    assert batch.items[0].content.decode() == ROWS[0][1]
    assert path.read_bytes() != b""


def test_csv_gz_and_splits_from_file_names(tmp_path: Path, fmtgen) -> None:
    raw = fmtgen.text_csv(tmp_path / "x" / "train.csv", ROWS).read_bytes()
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(raw))
    fmtgen.text_csv(tmp_path / "val.csv", ROWS[:1])
    batch = CsvFormat.read(tmp_path)
    assert sorted({(it.split, it.meta["source"]) for it in batch.items}) == [
        ("train", "train.csv.gz"),
        ("val", "val.csv"),
    ]
    assert len(batch.items) == 5


def test_csv_bad_rows_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("text,category,extra\nfine,a,1\n,b,2\nno label,,3\ntoo,many,fields,here\nshort\n")
    batch = CsvFormat.read(tmp_path / "d.csv")
    assert [it.name for it in batch.items] == ["d.csv#2"]
    reasons = {s.source: s.reason for s in batch.skipped}
    assert reasons["d.csv:3"] == "line 3: empty text"
    assert "missing label" in reasons["d.csv:4"]
    assert reasons["d.csv:5"] == "line 5: expected 3 fields, got 4"
    assert reasons["d.csv:6"] == "line 6: expected 3 fields, got 1"


def test_csv_options_and_source_errors(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("body,tags\nhello world,a|b\nbye,b\n")
    with pytest.raises(InputError, match="no text column"):
        CsvFormat.read(tmp_path)
    batch = CsvFormat.read(tmp_path, text_column="body", label_column="tags", label_sep="|")
    assert [[a.label for a in it.annotations] for it in batch.items] == [["a", "b"], ["b"]]
    with pytest.raises(InputError, match="label column 'nope' not found"):
        CsvFormat.read(tmp_path, text_column="body", label_column="nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .csv"):
        CsvFormat.read(tmp_path / "empty")
    (tmp_path / "bin.csv").write_bytes(b"text,label\n\xff\xfe\x00\xd8bad,1\n")
    with pytest.raises(InputError, match="bin.csv: not text in utf-8"):
        CsvFormat.read(tmp_path / "bin.csv")


def test_tabular_rows_with_target(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame["species"] = frame.pop("target").map(dict(enumerate(load_iris().target_names)))
    frame.to_csv(tmp_path / "iris.csv", index=False)
    batch = CsvFormat.read(tmp_path, task="tabular", target="species")
    assert batch.task == "tabular" and batch.classes == ["setosa", "versicolor", "virginica"]
    assert len(batch.items) == 150 and all(it.media_type == "row" for it in batch.items)
    first = json.loads(batch.items[0].content)
    assert first == {k: float(v) for k, v in frame.iloc[0].items() if k != "species"}
    assert batch.items[0].content == canonical_json(first)
    assert batch.items[0].annotations[0].label == "setosa"
    assert batch.items[0].meta["columns"] == [c for c in frame.columns if c != "species"]


def test_jsonl_multilabel_lists_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": "a b c", "labels": ["x", "y"]}),
        "{broken",
        json.dumps(["not", "an", "object"]),
        json.dumps({"text": "line\u2028sep", "labels": "z"}),
        json.dumps({"text": "  ", "labels": "z"}),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    batch = JsonlFormat.read(tmp_path)
    assert [[a.label for a in it.annotations] for it in batch.items] == [["x", "y"], ["z"]]
    assert batch.items[1].content.decode() == "line\u2028sep" and batch.items[1].name == "d.jsonl#4"
    reasons = {s.source: s.reason for s in batch.skipped}
    assert reasons["d.jsonl:2"].startswith("line 2: malformed JSON")
    assert reasons["d.jsonl:3"] == "line 3: not a JSON object"
    assert reasons["d.jsonl:5"] == "line 5: empty text"


@pytest.mark.parametrize("fmt", [CsvFormat, JsonlFormat])
def test_roundtrip_text_multilabel_splits(fmt, fmtgen) -> None:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data) -> None:
        samples = data.draw(fmtgen.text_samples())
        with tempfile.TemporaryDirectory() as tmp:
            recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
            summary = fmt.write(recs, fmtgen.classes, Path(tmp) / "out", label_sep="|")
            assert summary["items"] == len(recs) and not summary["dropped"]
            assert fmt.detect(Path(tmp) / "out")
            batch = fmt.read(Path(tmp) / "out", label_sep="|")
            assert not batch.skipped
            got = sorted((it.split or "", it.content, tuple(a.label for a in it.annotations)) for it in batch.items)
            want = sorted((r.split or "", r.path.read_bytes(), tuple(r.labels())) for r in recs)
            assert got == want

    check()


ROW = st.fixed_dictionaries(
    {
        "a": st.one_of(st.none(), st.integers(-(10**12), 10**12)),
        "b": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        # a text column whose values cannot be read as numbers
        "c": st.one_of(st.none(), st.text(st.characters(categories=["L"]), max_size=8).map(lambda s: "s" + s)),
    }
)


@pytest.mark.parametrize("fmt", [CsvFormat, JsonlFormat])
def test_roundtrip_tabular(fmt, fmtgen) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data) -> None:
        rows = data.draw(st.lists(ROW, min_size=1, max_size=6))
        rows[0]["b"] = 0.5  # a float column must hold one real fraction, or a CSV reader sees integers
        with tempfile.TemporaryDirectory() as tmp:
            recs = []
            for i, row in enumerate(rows):
                path = Path(tmp) / f"r{i}.json"
                path.write_bytes(canonical_json(row))
                label = data.draw(st.sampled_from(fmtgen.classes))
                recs.append(
                    SampleRecord(
                        i,
                        f"{i:064x}",
                        "row",
                        f"t.csv#{i}",
                        path,
                        meta={"columns": ["a", "b", "c"], "target": "y"},
                        annotations=[Annotation("class", label)],
                    )
                )
            fmt.write(recs, fmtgen.classes, Path(tmp) / "out")
            batch = fmt.read(Path(tmp) / "out", task="tabular", target="y")
            assert not batch.skipped
            assert [json.loads(it.content) for it in batch.items] == rows
            assert [it.annotations[0].label for it in batch.items] == [r.labels()[0] for r in recs]

    check()
