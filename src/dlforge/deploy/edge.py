"""Edge packages: a zip with the fp32 model, an int8 model, the manifest and a standalone runner.

The int8 model comes from ONNX Runtime static quantization (QDQ format,
per-channel weights) calibrated on samples of the run's training split, after
ONNX Runtime's recommended pre-processing (graph optimisation + shape
inference). Both models are scored on the validation samples and the figures
go into the manifest, so the user can choose the int8 model knowing its cost.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.deploy.bundle import as_tuple, build_bundle
from dlforge.deploy.manifest import MANIFEST_FILE, MODEL_FILE, MODEL_INT8_FILE, write_json_atomic
from dlforge.deploy.spec import ExportSpec
from dlforge.errors import ConflictError, InputError

RUNNER = Path(__file__).with_name("edge_run.py")

README = """# {name}: dlforge edge package

Task: {task}. Labels: {labels}.

Files: `model.onnx` (fp32), `model.int8.onnx` (int8, static quantization, QDQ, per-channel),
`manifest.json` (preprocessing, labels, accuracy of both models), `run.py` (runner).

Validation accuracy on {n} samples: fp32 {fp32}, int8 {int8}.
Model size: fp32 {fp32_mb:.2f} MB, int8 {int8_mb:.2f} MB.

## Run

    pip install onnxruntime numpy pillow      # text models also need: pip install tokenizers
    python run.py photo.jpg                   # fp32
    python run.py photo.jpg --int8 --json     # int8, one JSON object on stdout

`run.py --threads N` sets ONNX Runtime's thread count (use the device's core count).
"""


class _Reader:
    """CalibrationDataReader over the spec's calibration samples, one small batch at a time."""

    def __init__(self, inputs: tuple[Any, ...], names: list[str], batch: int = 8) -> None:
        arrays = [t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t) for t in inputs]
        n = arrays[0].shape[0]
        self._feeds = iter(
            [{name: a[i : i + batch] for name, a in zip(names, arrays)} for i in range(0, n, batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_int8(fp32: Path, out: Path, spec: ExportSpec) -> None:
    """Static int8 quantization of ``fp32`` calibrated on ``spec.calibration_inputs``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if spec.calibration_inputs is None:
        raise InputError("export spec: calibration_inputs are needed for the int8 model (training samples)")

    class Reader(_Reader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="dlforge-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
        quantize_static(
            str(pre),
            str(out),
            Reader(as_tuple(spec.calibration_inputs), spec.input_names),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _predict_labels(path: Path, inputs: tuple[Any, ...], names: list[str], task: str) -> np.ndarray:
    sess = _session(path)
    arrays = [t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t) for t in inputs]
    preds = []
    for i in range(0, arrays[0].shape[0], 64):
        out = sess.run(None, {n: a[i : i + 64] for n, a in zip(names, arrays)})
        if task == "object_detection":
            preds.append(out[2])  # labels (B, N)
        elif task == "semantic_segmentation":
            preds.append(out[0].argmax(1))  # (B, H, W)
        else:
            preds.append(out[0].argmax(-1))  # (B,)
    return np.concatenate(preds)


def compare_accuracy(fp32: Path, int8: Path, spec: ExportSpec) -> dict[str, Any]:
    """Accuracy of both models on the validation samples (and their label agreement)."""
    if spec.validation_inputs is None:
        return {"validation_samples": 0}
    inputs = as_tuple(spec.validation_inputs)
    a = _predict_labels(fp32, inputs, spec.input_names, spec.task)
    b = _predict_labels(int8, inputs, spec.input_names, spec.task)
    result: dict[str, Any] = {
        "validation_samples": int(inputs[0].shape[0]),
        "int8_agreement": float(np.mean(a == b)) if a.shape == b.shape else 0.0,
    }
    targets = spec.validation_targets
    if targets is not None and spec.task != "object_detection" and not spec.multi_label:
        y = targets.detach().cpu().numpy() if hasattr(targets, "detach") else np.asarray(targets)
        result["fp32_accuracy"] = float(np.mean(a == y))
        result["int8_accuracy"] = float(np.mean(b == y))
    return result


def build_edge_package(
    spec: ExportSpec,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    parity_atol: float = 1e-3,
) -> dict[str, Any]:
    """Write the edge zip for ``spec`` to ``out`` (``.zip`` is appended when missing).

    Returns:
        A JSON-ready summary: path, parity, accuracy figures, model sizes, files.

    Raises:
        InputError: when parity fails or calibration samples are missing.
        ConflictError: when ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.suffix != ".zip":
        out = out.with_name(out.name + ".zip")
    if out.exists() and not overwrite:
        raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edge-", dir=out.parent) as tmp:
        bundle = Path(tmp) / "bundle"
        info = build_bundle(spec, bundle, parity_atol=parity_atol)
        quantize_int8(bundle / MODEL_FILE, bundle / MODEL_INT8_FILE, spec)
        acc = compare_accuracy(bundle / MODEL_FILE, bundle / MODEL_INT8_FILE, spec)
        sizes = {"fp32": (bundle / MODEL_FILE).stat().st_size, "int8": (bundle / MODEL_INT8_FILE).stat().st_size}
        manifest = dict(info.manifest)
        manifest["files"] = {**manifest["files"], "model_int8": MODEL_INT8_FILE}
        quant = {
            "method": "onnxruntime.quantize_static",
            "format": "QDQ",
            "per_channel": True,
            "activations": "uint8",
            "weights": "int8",
            "calibration_samples": int(as_tuple(spec.calibration_inputs)[0].shape[0]),
        }
        manifest["edge"] = {**acc, "size_bytes": sizes, "quantization": quant}
        write_json_atomic(bundle / MANIFEST_FILE, manifest)
        shutil.copyfile(RUNNER, bundle / "run.py")
        fmt = lambda k: f"{acc[k]:.4f}" if k in acc else "n/a"  # noqa: E731
        (bundle / "README.md").write_text(
            README.format(
                name=spec.name, task=spec.task, labels=", ".join(spec.labels[:20]), n=acc.get("validation_samples", 0),
                fp32=fmt("fp32_accuracy"), int8=fmt("int8_accuracy"),
                fp32_mb=sizes["fp32"] / 1e6, int8_mb=sizes["int8"] / 1e6,
            ),
            encoding="utf-8",
        )
        tmp_zip = Path(tmp) / "package.zip"
        with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(bundle.iterdir()):
                zf.write(f, f.name)
        files = sorted(p.name for p in bundle.iterdir())
        os.replace(tmp_zip, out)
    return {
        "path": str(out),
        "task": spec.task,
        "name": spec.name,
        "parity": info.parity,
        "accuracy": acc,
        "model_bytes": sizes,
        "files": files,
        "size_bytes": out.stat().st_size,
    }
