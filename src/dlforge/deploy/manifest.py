"""The bundle manifest: what a deployed model needs to be used without its training code.

A bundle is a directory holding ``manifest.json`` and ``model.onnx`` (plus
``model.int8.onnx`` and ``tokenizer.json`` where they apply). The manifest is
plain JSON so that any runtime (the Predictor, the edge ``run.py``, the browser
app) can read it; this module parses and validates it without importing torch.

Manifest layout (format version 1)::

    {
      "format": "dlforge.bundle", "format_version": 1,
      "name": "digits", "task": "image_classification", "labels": ["0", "1", ...],
      "input": {"kind": "image", "size": [32, 32], "resize": "stretch",
                "mean": [...], "std": [...], "channels": 3},
      "inputs":  [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 32, 32]}],
      "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}],
      "postprocess": {...}, "multi_label": false, "max_batch": 64,
      "files": {"model": "model.onnx", "model_int8": null, "tokenizer": null},
      "metrics": {...}, "parity": {...}, "data_version": "digits@2", "run_id": "...",
      "versions": {"dlforge": "0.1.0", "torch": "...", "onnx": "...", "onnxruntime": "..."},
      "created": "2026-11-23T00:00:00+00:00"
    }
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlforge.errors import DlforgeError

FORMAT_NAME = "dlforge.bundle"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
MODEL_INT8_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
RESIZE_MODES = ("stretch", "letterbox", "center_crop")
INPUT_KINDS = ("image", "text", "tabular")


class BundleError(DlforgeError):
    """A bundle or an input to it cannot be used.

    Raised for a corrupt or foreign bundle directory, a manifest of an unknown
    format version, an undecodable image, a text that is too long and a batch
    larger than the bundle allows.
    """

    status_code = 422


@dataclass
class Manifest:
    """Parsed ``manifest.json`` of a bundle.

    Attributes:
        task: Task name (``image_classification``, ``object_detection``, ...).
        labels: Class names, index order of the model's outputs.
        input: Input spec: ``kind`` plus kind-specific keys (image: ``size``,
            ``resize``, ``mean``, ``std``, ``channels``; text: ``max_len``,
            ``max_chars``, ``tokenizer``; tabular: ``columns``).
        inputs: ONNX inputs (``name``, ``dtype``, ``shape``).
        outputs: ONNX outputs (``name``, ``dtype``, ``shape``).
        postprocess: Task settings (thresholds, NMS IoU, max detections).
        name: Model name used by the server's routes.
        raw: The whole JSON object, including keys this class does not model.
    """

    task: str
    labels: list[str]
    input: dict[str, Any]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    postprocess: dict[str, Any] = field(default_factory=dict)
    name: str = "model"
    multi_label: bool = False
    max_batch: int = 64
    files: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    # Set when read from disk; handlers load side files (tokenizer.json) from here
    # and keep what they loaded in ``cache`` so it is built once per bundle.
    bundle_dir: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.outputs]

    @property
    def input_kind(self) -> str:
        return str(self.input.get("kind", ""))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = MANIFEST_FILE) -> Manifest:
        """Validate a manifest object and build a :class:`Manifest`.

        Raises:
            BundleError: for a foreign format, an unknown version or a missing field.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise BundleError(f"{source}: not a dlforge bundle manifest (format != {FORMAT_NAME!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{source}: unknown bundle format_version {version!r} (this dlforge reads {FORMAT_VERSION})"
            )
        for key in ("task", "labels", "input", "inputs", "outputs"):
            if key not in data:
                raise BundleError(f"{source}: missing field {key!r}")
        inp = data["input"]
        if not isinstance(inp, dict) or inp.get("kind") not in INPUT_KINDS:
            raise BundleError(f"{source}: field 'input.kind' must be one of {', '.join(INPUT_KINDS)}")
        if inp["kind"] == "image":
            size = inp.get("size")
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) for s in size)):
                raise BundleError(f"{source}: field 'input.size' must be [height, width]")
            if inp.get("resize", "stretch") not in RESIZE_MODES:
                raise BundleError(f"{source}: field 'input.resize' must be one of {', '.join(RESIZE_MODES)}")
        if not data["inputs"] or not all(isinstance(i, dict) and "name" in i for i in data["inputs"]):
            raise BundleError(f"{source}: field 'inputs' must list the ONNX inputs with their names")
        if not data["outputs"] or not all(isinstance(o, dict) and "name" in o for o in data["outputs"]):
            raise BundleError(f"{source}: field 'outputs' must list the ONNX outputs with their names")
        return cls(
            task=str(data["task"]),
            labels=[str(x) for x in data["labels"]],
            input=dict(inp),
            inputs=list(data["inputs"]),
            outputs=list(data["outputs"]),
            postprocess=dict(data.get("postprocess") or {}),
            name=str(data.get("name") or "model"),
            multi_label=bool(data.get("multi_label", False)),
            max_batch=int(data.get("max_batch", 64)),
            files=dict(data.get("files") or {"model": MODEL_FILE}),
            raw=data,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.raw)
        out.update(
            format=FORMAT_NAME,
            format_version=FORMAT_VERSION,
            name=self.name,
            task=self.task,
            labels=self.labels,
            input=self.input,
            inputs=self.inputs,
            outputs=self.outputs,
            postprocess=self.postprocess,
            multi_label=self.multi_label,
            max_batch=self.max_batch,
            files=self.files,
        )
        return out


def read_manifest(bundle_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` of a bundle directory.

    Raises:
        BundleError: when the directory, the manifest or the model file is missing or malformed.
    """
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory does not exist")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{root}: no {MANIFEST_FILE} (not a dlforge bundle)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: manifest is not valid JSON ({exc})") from None
    manifest = Manifest.from_dict(data, source=str(path))
    manifest.bundle_dir = root
    model = root / manifest.files.get("model", MODEL_FILE)
    if not model.is_file():
        raise BundleError(f"{root}: model file {model.name} is missing")
    return manifest


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
