"""Build a bundle (manifest + ONNX model) from an :class:`~dlforge.deploy.spec.ExportSpec`.

The export is checked before anything is published: the ONNX model runs on the
spec's real example inputs and its outputs are compared with torch's (max
absolute difference, label agreement). A model that fails the check is refused
with the figures; a model that passes is written to a temporary directory next
to the destination and renamed into place, so no half-written bundle is left.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.deploy.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    write_json_atomic,
)
from dlforge.deploy.spec import ExportSpec, TextInput
from dlforge.errors import ConflictError, InputError

DEFAULT_MIN_AGREEMENT = 0.99


@dataclass
class BundleInfo:
    """What :func:`build_bundle` wrote.

    Attributes:
        path: The bundle directory (or the ``.onnx`` file for ``format="onnx"``).
        manifest: The manifest as written.
        parity: ``max_abs_diff``, ``rel_diff``, ``label_agreement``, ``samples``, ``atol``.
        files: Names of the files in the bundle.
        size_bytes: Total size of those files.
    """

    path: Path
    manifest: dict[str, Any]
    parity: dict[str, Any]
    files: list[str] = field(default_factory=list)
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "task": self.manifest.get("task"),
            "name": self.manifest.get("name"),
            "parity": self.parity,
            "files": self.files,
            "size_bytes": self.size_bytes,
        }


def as_tuple(inputs: Any) -> tuple[Any, ...]:
    """Example inputs as a tuple of tensors (a single tensor becomes a 1-tuple)."""
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    return (inputs,)


def export_onnx_model(
    model: Any,
    example_inputs: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    opset: int = 17,
) -> None:
    """Export ``model`` to ONNX with a dynamic batch axis on every input and output.

    Goes through :func:`dlforge.models.onnx_export.export_onnx` so that every
    registered model is exported (and tested) by one exporter.
    """
    from dlforge.models.onnx_export import export_onnx

    export_onnx(
        model,
        example_inputs,
        path,
        input_names=input_names,
        output_names=output_names,
        dynamic_batch=True,
        opset=opset,
    )


def _torch_outputs(model: Any, example_inputs: tuple[Any, ...], output_names: list[str]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = model(*example_inputs)
    if isinstance(out, dict) and all(name in out for name in output_names):
        out = [out[name] for name in output_names]
    else:
        from dlforge.models.onnx_export import flatten_outputs

        out = flatten_outputs(out)
    return [o.detach().cpu().numpy() for o in out]


def _onnx_outputs(path: Path, example_inputs: tuple[Any, ...], input_names: list[str]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(input_names, example_inputs)}
    return list(sess.run(None, feeds))


def label_agreement(task: str, ref: list[np.ndarray], got: list[np.ndarray], spec: ExportSpec) -> float:
    """Fraction of predicted labels that ONNX and torch agree on, per task."""
    if task == "semantic_segmentation":
        return float(np.mean(ref[0].argmax(1) == got[0].argmax(1)))
    if task == "object_detection":
        # Outputs: boxes (B,N,4), scores (B,N), labels (B,N). Compare the labels of
        # the detections torch keeps above the score threshold.
        thr = float(spec.postprocess.get("score_threshold", 0.5))
        keep = ref[1] >= thr
        if ref[2].shape != got[2].shape:
            return 0.0
        return float(np.mean(ref[2][keep] == got[2][keep])) if keep.any() else 1.0
    if spec.multi_label:
        thr = spec.postprocess.get("thresholds") or spec.postprocess.get("threshold", 0.5)
        thr_arr = np.asarray(thr, dtype=np.float64)  # scalar or (C,)
        sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
        return float(np.mean((sig(ref[0]) >= thr_arr) == (sig(got[0]) >= thr_arr)))
    return float(np.mean(ref[0].argmax(-1) == got[0].argmax(-1)))


def check_parity(
    spec: ExportSpec,
    onnx_path: Path,
    *,
    parity_atol: float = 1e-3,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
) -> dict[str, Any]:
    """Compare torch and ONNX Runtime outputs on the spec's example inputs.

    The tolerance is relative to the output scale (``max|diff| <= atol * max(1, max|torch|)``)
    so that pixel-coordinate boxes and logits are judged alike.

    Returns:
        The parity figures, with ``passed``.
    """
    examples = as_tuple(spec.example_inputs)
    ref = _torch_outputs(spec.model, examples, spec.output_names)
    got = _onnx_outputs(onnx_path, examples, spec.input_names)
    if len(ref) != len(got):
        raise InputError(f"{onnx_path.name}: ONNX has {len(got)} outputs, torch model has {len(ref)}")
    max_abs = 0.0
    rel = 0.0
    for r, g in zip(ref, got):
        if r.shape != g.shape:
            raise InputError(f"{onnx_path.name}: ONNX output shape {g.shape} != torch output shape {r.shape}")
        if r.size == 0:
            continue
        d = float(np.max(np.abs(r.astype(np.float64) - g.astype(np.float64))))
        max_abs = max(max_abs, d)
        rel = max(rel, d / max(1.0, float(np.max(np.abs(r)))))
    agreement = label_agreement(spec.task, ref, got, spec)
    return {
        "max_abs_diff": max_abs,
        "rel_diff": rel,
        "label_agreement": agreement,
        "samples": int(examples[0].shape[0]),
        "atol": parity_atol,
        "min_agreement": min_agreement,
        "passed": bool(rel <= parity_atol and agreement >= min_agreement),
    }


def _library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import dlforge

    return {
        "dlforge": dlforge.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _io_spec(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(arg: Any) -> dict[str, Any]:
        dtype = arg.type.replace("tensor(", "").rstrip(")")
        dtype = {"float": "float32", "double": "float64"}.get(dtype, dtype)
        return {"name": arg.name, "dtype": dtype, "shape": list(arg.shape)}

    return [describe(a) for a in sess.get_inputs()], [describe(a) for a in sess.get_outputs()]


def manifest_for(spec: ExportSpec, onnx_path: Path, parity: dict[str, Any]) -> dict[str, Any]:
    """The manifest object of a bundle built from ``spec``."""
    inputs, outputs = _io_spec(onnx_path)
    is_text = isinstance(spec.input, TextInput)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "task": spec.task,
        "labels": [str(x) for x in spec.labels],
        "input": spec.input.to_dict(),
        "inputs": inputs,
        "outputs": outputs,
        "postprocess": dict(spec.postprocess),
        "multi_label": bool(spec.multi_label),
        "max_batch": int(spec.max_batch),
        "files": {"model": MODEL_FILE, "model_int8": None, "tokenizer": TOKENIZER_FILE if is_text else None},
        "metrics": _jsonable(spec.metrics),
        "parity": parity,
        "data_version": spec.data_version,
        "run_id": spec.run_id,
        "versions": _library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _validate_spec(spec: ExportSpec) -> None:
    examples = as_tuple(spec.example_inputs)
    if not examples or getattr(examples[0], "ndim", 0) < 1 or examples[0].shape[0] < 1:
        raise InputError("export spec: example_inputs must hold at least one real sample (a batch tensor)")
    if len(examples) != len(spec.input_names):
        raise InputError(
            f"export spec: {len(examples)} example tensors but {len(spec.input_names)} input_names"
        )
    if not spec.labels:
        raise InputError("export spec: labels is empty")


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished temp directory to ``out`` (replacing an old bundle if allowed)."""
    if out.exists():
        if not overwrite:
            raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, out)


def build_bundle(
    spec: ExportSpec,
    out_dir: str | os.PathLike[str],
    *,
    parity_atol: float = 1e-3,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    overwrite: bool = False,
    opset: int = 17,
) -> BundleInfo:
    """Export ``spec.model`` to ONNX, check parity and write a bundle directory.

    Args:
        spec: The run's export spec.
        out_dir: Destination directory; it must not exist unless ``overwrite``.
        parity_atol: Largest allowed output difference relative to the output scale.
        min_agreement: Smallest allowed fraction of agreeing labels.
        overwrite: Replace an existing directory at ``out_dir``.
        opset: ONNX opset.

    Returns:
        The written bundle's :class:`BundleInfo`.

    Raises:
        InputError: when the export fails the parity check (the message holds the figures).
        ConflictError: when ``out_dir`` exists and ``overwrite`` is false.
    """
    _validate_spec(spec)
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    spec.model.eval()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model_path = tmp / MODEL_FILE
        export_onnx_model(
            spec.model, as_tuple(spec.example_inputs), model_path, spec.input_names, spec.output_names, opset
        )
        parity = check_parity(spec, model_path, parity_atol=parity_atol, min_agreement=min_agreement)
        if not parity["passed"]:
            raise InputError(
                f"{out}: ONNX export refused, parity check failed on {parity['samples']} samples: "
                f"max abs diff {parity['max_abs_diff']:.3g} (relative {parity['rel_diff']:.3g}, "
                f"allowed {parity_atol:g}), label agreement {parity['label_agreement']:.4f} "
                f"(required {min_agreement:g})"
            )
        if isinstance(spec.input, TextInput):
            spec.input.tokenizer.save(str(tmp / TOKENIZER_FILE))
        manifest = manifest_for(spec, model_path, parity)
        write_json_atomic(tmp / MANIFEST_FILE, manifest)
        files = sorted(p.name for p in tmp.iterdir())
        size = sum((tmp / f).stat().st_size for f in files)
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BundleInfo(path=out, manifest=manifest, parity=parity, files=files, size_bytes=size)


def export_onnx_file(
    spec: ExportSpec,
    out_path: str | os.PathLike[str],
    *,
    parity_atol: float = 1e-3,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    overwrite: bool = False,
    opset: int = 17,
) -> BundleInfo:
    """Write just the ONNX model (``--format onnx``), parity-checked like a bundle."""
    _validate_spec(spec)
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    spec.model.eval()
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp = tmp_dir / MODEL_FILE
        export_onnx_model(spec.model, as_tuple(spec.example_inputs), tmp, spec.input_names, spec.output_names, opset)
        parity = check_parity(spec, tmp, parity_atol=parity_atol, min_agreement=min_agreement)
        if not parity["passed"]:
            raise InputError(
                f"{out}: ONNX export refused, parity check failed: max abs diff {parity['max_abs_diff']:.3g}, "
                f"label agreement {parity['label_agreement']:.4f}"
            )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return BundleInfo(
        path=out, manifest={"task": spec.task, "name": spec.name}, parity=parity,
        files=[out.name], size_bytes=out.stat().st_size,
    )
