"""The server-side SDK: load a bundle with ONNX Runtime and predict (no torch).

Example::

    from dlforge.deploy import Predictor
    p = Predictor("bundles/digits")
    p.predict("seven.png").label          # one input -> one result
    p.predict(["a.png", "b.png"])          # a list -> a list of results (one ORT call)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Handler, Prepared, get_handler, split_batch
from dlforge.deploy.manifest import BundleError, Manifest, read_manifest


def _is_batch(inputs: Any) -> bool:
    """Whether ``inputs`` is a list of inputs rather than one input."""
    if isinstance(inputs, (list, tuple)):
        return True
    # A 4-D array is a stack of images (N, H, W, C).
    return isinstance(inputs, np.ndarray) and inputs.ndim == 4


class Predictor:
    """Runs a bundle's model on raw inputs and returns typed results.

    Args:
        bundle_dir: Directory holding ``manifest.json`` and ``model.onnx``.
        threads: ONNX Runtime intra-op threads (None: ONNX Runtime's default).
        providers: ONNX Runtime execution providers (default CPU).
        int8: Load ``model.int8.onnx`` instead of the fp32 model (edge bundles).
        max_batch: Largest batch accepted in one call (default: the manifest's).
        spinning: Let ONNX Runtime's threads busy-wait between calls (its default; fastest
            for back-to-back calls, but it burns CPU a server needs for decoding requests).

    Raises:
        BundleError: for a missing, corrupt or foreign bundle, or an unknown format version.
    """

    def __init__(
        self,
        bundle_dir: str | os.PathLike[str],
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        int8: bool = False,
        max_batch: int | None = None,
        spinning: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.bundle_dir = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle_dir)
        self.handler: Handler = get_handler(self.manifest.task)
        model_name = self.manifest.files.get("model_int8") if int8 else self.manifest.files.get("model")
        if not model_name or not (self.bundle_dir / model_name).is_file():
            raise BundleError(f"{self.bundle_dir}: bundle has no {'int8 ' if int8 else ''}model file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(self.bundle_dir / model_name),
                sess_options=opts,
                providers=list(providers) if providers else ["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise BundleError(f"{self.bundle_dir / model_name}: cannot load ONNX model ({exc})") from None
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(self.manifest.input_names):
            raise BundleError(f"{self.bundle_dir}: model inputs {names} do not match the manifest")
        self.max_batch = int(max_batch or self.manifest.max_batch)
        self._output_names = [o.name for o in self.session.get_outputs()]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    def prepare(self, inputs: Sequence[Any]) -> Prepared:
        """Preprocess a list of raw inputs into model feeds (no size limit)."""
        return self.handler.preprocess(list(inputs), self.manifest)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ONNX Runtime call on prepared feeds; returns output name -> array."""
        try:
            outs = self.session.run(None, feeds)
        except Exception as exc:  # wrong shapes/dtypes from raw tensor inputs
            raise BundleError(f"model {self.name}: ONNX Runtime rejected the input ({exc})") from None
        return dict(zip(self._output_names, outs))

    def finish(self, outputs: dict[str, np.ndarray], meta: list[dict[str, Any]], *, top_k: int = 5) -> list[Any]:
        """Postprocess model outputs into one typed result per input."""
        return self.handler.postprocess(outputs, self.manifest, meta, top_k=top_k)

    def predict(self, inputs: Any, top_k: int = 5) -> Any:
        """Predict for one input or a list of inputs.

        Args:
            inputs: A path, encoded bytes, a PIL image, a numpy pixel array or a
                string (text tasks), or a list of them.
            top_k: How many labels classification results list.

        Returns:
            One result for one input, a list of results for a list: ``Classification``,
            ``MultiLabel``, ``list[Detection]`` or ``Segmentation``.

        Raises:
            BundleError: for an input that cannot be used or a batch over ``max_batch``.
        """
        single = not _is_batch(inputs)
        items = [inputs] if single else list(inputs)
        if not items:
            return []
        if len(items) > self.max_batch:
            raise BundleError(f"batch of {len(items)} inputs is larger than allowed ({self.max_batch})")
        prepared = self.prepare(items)
        results: list[Any] = []
        for chunk in split_batch(prepared, self.max_batch):
            results.extend(self.finish(self.run(chunk.feeds), chunk.meta, top_k=top_k))
        return results[0] if single else results

    def __repr__(self) -> str:
        return f"Predictor({str(self.bundle_dir)!r}, task={self.task!r}, labels={len(self.labels)})"
