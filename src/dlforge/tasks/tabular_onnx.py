"""ONNX export of tabular pipelines (skl2onnx) and the tabular bundle.

The ONNX graph takes one input per feature column, named after the column,
shape (N, 1): float32 for number columns, string for category columns (missing
= empty string). Classifiers output ``label`` and ``probabilities`` (no ZipMap,
so the outputs are plain tensors); regressors output ``variable``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.errors import ConflictError, InputError

__all__ = ["to_onnx", "write_bundle", "onnx_feeds"]


def _initial_types(schema: list[dict[str, str]]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (f["name"], FloatTensorType([None, 1]) if f["type"] == "number" else StringTensorType([None, 1]))
        for f in schema
    ]


def onnx_feeds(x: Any, schema: list[dict[str, str]], names: list[str] | None = None) -> dict[str, np.ndarray]:
    """ONNX feeds from a prepared frame (see :func:`dlforge.tasks.tabular.prepare_frame`).

    ``names`` are the ONNX input names in schema order (skl2onnx turns ``sepal length (cm)``
    into ``sepal_length__cm_``); by default the column names themselves.
    """
    names = names or [f["name"] for f in schema]
    feeds = {}
    for f, name in zip(schema, names):
        col = x[f["name"]].to_numpy()
        feeds[name] = (col.astype(np.float32) if f["type"] == "number" else col.astype(str).astype(object)).reshape(
            -1, 1
        )
    return feeds


def onnx_input_names(model_path: Path) -> list[str]:
    """The graph's input names in declaration order (= the schema order the model was converted with)."""
    import onnx

    return [i.name for i in onnx.load(str(model_path), load_external_data=False).graph.input]


def _patch_skl2onnx_hgb() -> None:
    """Make skl2onnx's HistGradientBoosting converter write ints where it writes ``False``.

    skl2onnx 1.20 passes the Python bool ``False`` as ``nodes_missing_value_tracks_true``
    for leaves; onnx >= 1.17 refuses bools in an ``ints`` attribute ("Expected an int,
    got a boolean"), so every HistGradientBoosting conversion fails. The wrapper casts
    the value to int; it is installed once and changes nothing else.
    """
    import skl2onnx.common.tree_ensemble as te

    if getattr(te.add_node, "_dlforge_int_missing", False):
        return
    original = te.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    add_node._dlforge_int_missing = True  # type: ignore[attr-defined]
    te.add_node = add_node


def _mlp_shape(operator: Any) -> None:
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    if operator.raw_operator.task == "classification":
        calculate_linear_classifier_output_shapes(operator)
    else:
        calculate_linear_regressor_output_shapes(operator)


def _mlp_convert(scope: Any, operator: Any, container: Any) -> None:
    """TorchMLP as ONNX ops: (MatMul + Add, Relu)* then Softmax/ArgMax or de-standardisation."""
    from skl2onnx.algebra.onnx_ops import (
        OnnxAdd,
        OnnxArgMax,
        OnnxGather,
        OnnxIdentity,
        OnnxMatMul,
        OnnxMul,
        OnnxRelu,
        OnnxSoftmax,
    )

    est = operator.raw_operator
    opv = container.target_opset
    layers = est.weights()
    h: Any = operator.inputs[0]
    for i, (w, b) in enumerate(layers):
        h = OnnxAdd(OnnxMatMul(h, w.T.copy(), op_version=opv), b, op_version=opv)  # (N, out)
        if i < len(layers) - 1:
            h = OnnxRelu(h, op_version=opv)
    if est.task == "classification":
        probs = OnnxSoftmax(h, axis=1, op_version=opv)
        idx = OnnxArgMax(probs, axis=1, keepdims=0, op_version=opv)  # (N,)
        classes = np.asarray(est.classes_)
        table = classes.astype(np.int64) if classes.dtype.kind in "iu" else classes.astype(str)
        label = OnnxGather(table, idx, axis=0, op_version=opv)
        OnnxIdentity(label, op_version=opv, output_names=[operator.outputs[0]]).add_to(scope, container)
        OnnxIdentity(probs, op_version=opv, output_names=[operator.outputs[1]]).add_to(scope, container)
    else:
        y = OnnxAdd(
            OnnxMul(h, np.array([est.y_std_], np.float32), op_version=opv),
            np.array([est.y_mean_], np.float32),
            op_version=opv,
        )
        OnnxIdentity(y, op_version=opv, output_names=[operator.outputs[0]]).add_to(scope, container)


def _mlp_parser(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    """Declare the MLP's outputs: ``label`` + ``probabilities`` (classifier) or ``variable``."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    this = scope.declare_local_operator("DlforgeTorchMLP", model)
    this.inputs = inputs
    if model.task == "classification":
        kind = np.asarray(model.classes_).dtype.kind
        label_type = Int64TensorType() if kind in "iu" else StringTensorType()
        this.outputs.append(scope.declare_local_variable("label", label_type))
        this.outputs.append(scope.declare_local_variable("probabilities", FloatTensorType()))
    else:
        this.outputs.append(scope.declare_local_variable("variable", FloatTensorType()))
    return list(this.outputs)


def _register_mlp() -> None:
    from skl2onnx import update_registered_converter

    from dlforge.tasks.tabular import TorchMLP

    update_registered_converter(
        TorchMLP,
        "DlforgeTorchMLP",
        _mlp_shape,
        _mlp_convert,
        parser=_mlp_parser,
        options={"zipmap": [False, True], "nocl": [False, True]},
    )


def to_onnx(res: Any, path: Path) -> Path:
    """Convert ``res.pipeline`` with skl2onnx and write it atomically to ``path``."""
    from skl2onnx import convert_sklearn

    if res.model == "mlp":
        _register_mlp()
    _patch_skl2onnx_hgb()
    pipe = res.pipeline
    options = {id(pipe): {"zipmap": False}} if res.task == "classification" else None
    try:
        onx = convert_sklearn(
            res.pipeline,
            initial_types=_initial_types(res.schema),
            options=options,
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    except Exception as exc:  # skl2onnx raises many types (with pages of attributes); keep one line
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise InputError(f"ONNX export failed for model {res.model!r}: {first}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(onx.SerializeToString())
    os.replace(tmp, path)
    return path


def _parity(res: Any, model_path: Path, n: int = 256) -> dict[str, Any]:
    """Compare ONNX and scikit-learn outputs on the training rows' first ``n`` out-of-fold... rows."""
    import onnxruntime as ort

    from dlforge.tasks.tabular import prepare_frame

    x = res.parity_rows if getattr(res, "parity_rows", None) is not None else None
    if x is None:
        return {"samples": 0, "passed": True, "note": "no rows kept for a parity check"}
    x = prepare_frame(x.head(n), res.schema)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = sess.run(None, onnx_feeds(x, res.schema, onnx_input_names(model_path)))
    if res.task == "classification":
        ref = res.pipeline.predict_proba(x)
        got = out[1]
        agree = float((np.asarray(out[0]).astype(str) == res.pipeline.predict(x).astype(str)).mean())
        diff = np.abs(ref - got)
        # Trees compare float32 inputs with thresholds: a value sitting on a threshold may go the
        # other way in one tree (a 1/n_trees jump). Judge by labels and the mean difference.
        return {
            "samples": len(x),
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "label_agreement": agree,
            "passed": agree >= 0.99 and float(diff.mean()) < 1e-3,
        }
    ref = res.pipeline.predict(x)
    got = np.asarray(out[0]).reshape(-1)
    scale = float(np.abs(ref).max() or 1.0)
    diff = np.abs(ref - got)
    close = float((diff <= 1e-4 * scale + 1e-6).mean())
    # As for classifiers: a float32 input on a tree threshold can flip one tree; require 99%
    # of the rows to match to 1e-4 of the output scale.
    return {
        "samples": len(x),
        "max_abs_diff": float(diff.max()),
        "rel_diff": float(diff.max()) / scale,
        "close_share": close,
        "passed": close >= 0.99,
    }


def write_bundle(
    res: Any,
    out: Path,
    *,
    name: str = "model",
    data_version: str | None = None,
    run_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """A bundle directory: ``model.onnx`` + ``manifest.json`` (task ``tabular``)."""
    import onnxruntime as ort

    from dlforge.deploy.bundle import _library_versions
    from dlforge.deploy.manifest import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, write_json_atomic

    if out.exists() and not overwrite:
        raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model_path = to_onnx(res, tmp / MODEL_FILE)
        parity = _parity(res, model_path)
        if not parity["passed"]:
            raise InputError(f"{out}: ONNX export refused, parity check failed: {parity}")
        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])

        def describe(a: Any) -> dict[str, Any]:
            dtype = a.type.replace("tensor(", "").rstrip(")")
            return {"name": a.name, "dtype": {"float": "float32"}.get(dtype, dtype), "shape": list(a.shape)}

        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": name,
            "task": "tabular",
            "labels": list(res.classes),
            "input": {
                "kind": "tabular",
                "columns": [f["name"] for f in res.schema],
                "schema": res.schema,
                "input_names": onnx_input_names(model_path),
                "problem": res.task,
                "target": res.target,
            },
            "inputs": [describe(a) for a in sess.get_inputs()],
            "outputs": [describe(a) for a in sess.get_outputs()],
            "postprocess": {"problem": res.task, "activation": "none"},
            "multi_label": False,
            "max_batch": 4096,
            "files": {"model": MODEL_FILE, "model_int8": None, "tokenizer": None},
            "metrics": {f"cv/{k}": v for k, v in res.cv_metrics.items()},
            "parity": parity,
            "data_version": data_version,
            "run_id": run_id,
            "versions": _library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(tmp / MANIFEST_FILE, manifest)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
