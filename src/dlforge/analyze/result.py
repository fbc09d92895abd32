"""The common result of every analysis: a table, a summary and a plot, savable to a folder."""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["AnalysisResult", "jsonable", "write_atomic"]


def jsonable(value: Any) -> Any:
    """Plain-JSON form of numpy/pandas scalars and containers (NaN and inf become None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class AnalysisResult:
    """What an analysis found.

    Attributes:
        name: the analysis (``profile``, ``sample``, ``groupby``, ``corr``, ``rules``, ``target``);
            also the base name of the files written.
        table: the main result table.
        summary: JSON-able key figures.
        png: the plot as PNG bytes (None when there is nothing to draw).
        extra_tables: further tables (e.g. frequent itemsets next to the rules).
        files: paths written by :meth:`save`, by kind.
    """

    name: str
    table: pd.DataFrame
    summary: dict[str, Any]
    png: bytes | None = None
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def save(self, out: str | os.PathLike[str]) -> dict[str, str]:
        """Write ``<name>.csv``, ``<name>.json`` (summary + table records) and ``<name>.png``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        for key, table in {self.name: self.table, **self.extra_tables}.items():
            p = out / f"{key}.csv"
            write_atomic(p, _table_csv(table).encode("utf-8"))
            files[f"{key}_csv" if key != self.name else "csv"] = str(p)
        p = out / f"{self.name}.json"
        doc = {"summary": self.summary, "table": _records(self.table)}
        for key, table in self.extra_tables.items():
            doc[key] = _records(table)
        write_atomic(p, json.dumps(jsonable(doc), ensure_ascii=False, indent=1).encode("utf-8"))
        files["json"] = str(p)
        if self.png is not None:
            p = out / f"{self.name}.png"
            write_atomic(p, self.png)
            files["png"] = str(p)
        self.files = files
        return files

    def to_dict(self, max_rows: int = 50) -> dict[str, Any]:
        """JSON-able form: summary, the first ``max_rows`` table rows and the files written."""
        return jsonable(
            {
                "analysis": self.name,
                "summary": self.summary,
                "rows": len(self.table),
                "table": _records(self.table.head(max_rows)),
                "files": self.files,
            }
        )


def _cell(v: Any) -> Any:
    if isinstance(v, (frozenset, set, list, tuple)):
        return ", ".join(sorted(map(str, v)))
    return v


def _table_csv(df: pd.DataFrame) -> str:
    flat = df.copy()
    for c in flat.columns:
        if flat[c].dtype == object:
            flat[c] = flat[c].map(_cell)
    return flat.to_csv(index=not isinstance(df.index, pd.RangeIndex))


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    frame = df if isinstance(df.index, pd.RangeIndex) else df.reset_index()
    return [jsonable({str(k): v for k, v in row.items()}) for row in frame.to_dict(orient="records")]
