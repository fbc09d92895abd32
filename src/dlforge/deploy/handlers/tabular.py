"""Tabular bundles: row dicts -> one ONNX input per column; probabilities or values -> results.

The manifest's ``input`` holds ``schema`` (``[{"name", "type": "number"|"string"}]``, the
model's columns in order) and ``input_names`` (the ONNX input of each column, since
skl2onnx sanitises names such as ``sepal length (cm)``). Missing values: ``None``/NaN for
numbers (imputed inside the model), ``None``/empty for categories (unknown categories
are ignored by the one-hot encoder). Needs numpy and onnxruntime only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Prepared, register_handler
from dlforge.deploy.handlers.classify import classify
from dlforge.deploy.manifest import BundleError, Manifest


def _row(item: Any, i: int) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    if hasattr(item, "to_dict"):  # a pandas Series
        return item.to_dict()
    if isinstance(item, (str, os.PathLike)):
        # From the command line: a JSON object, or @file.json holding one.
        text = str(item)
        if text.startswith("@"):
            path = Path(text[1:])
            if not path.is_file():
                raise BundleError(f"input {i}: {path}: file not found")
            text = path.read_text(encoding="utf-8")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise BundleError(f"input {i}: not a JSON object of column -> value: {text[:60]!r}") from None
        if isinstance(obj, dict):
            return obj
    raise BundleError(f"input {i}: a tabular model takes a row as a dict of column -> value, got {type(item).__name__}")


def _number(value: Any, column: str, i: int) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BundleError(f"input {i}: column {column!r} must be a number, got {value!r}") from None


def _string(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def preprocess(inputs: Sequence[Any], manifest: Manifest) -> Prepared:
    schema = manifest.input.get("schema") or [{"name": c, "type": "number"} for c in manifest.input["columns"]]
    names = manifest.input.get("input_names") or [f["name"] for f in schema]
    rows = [_row(x, i) for i, x in enumerate(inputs)]
    feeds: dict[str, np.ndarray] = {}
    for f, name in zip(schema, names):
        col = f["name"]
        for i, r in enumerate(rows):
            if col not in r:
                raise BundleError(f"input {i}: column {col!r} is missing")
        if f["type"] == "number":
            feeds[name] = np.array([[_number(r[col], col, i)] for i, r in enumerate(rows)], dtype=np.float32)
        else:
            feeds[name] = np.array([[_string(r[col])] for r in rows], dtype=object)  # (B, 1) strings
    extra = [sorted(set(r) - {f["name"] for f in schema}) for r in rows]
    return Prepared(feeds=feeds, meta=[{"ignored_columns": e} for e in extra])


def postprocess(
    outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict[str, Any]], *, top_k: int = 5, **_: Any
) -> list[Any]:
    problem = manifest.input.get("problem") or manifest.postprocess.get("problem", "classification")
    if problem == "classification":
        probs = outputs.get("probabilities")
        if probs is None:
            probs = list(outputs.values())[1]
        return classify(np.asarray(probs, dtype=np.float64), manifest, top_k)
    values = np.asarray(outputs.get("variable", next(iter(outputs.values())))).reshape(-1)
    return [{"value": float(v)} for v in values]


register_handler("tabular", preprocess=preprocess, postprocess=postprocess)
