"""ONNX export of registered models and a parity check against onnxruntime.

Why the TorchScript exporter first: in torch 2.14 ``torch.onnx.export`` defaults to
the dynamo (``torch.export``) exporter, which is 3-10x slower on these models, emits
opset 18 and fails to down-convert some graphs to 17 (it then keeps 18 and logs a
traceback). The legacy TorchScript exporter (``dynamo=False``, deprecated but present)
exports every classification model here at the requested opset with matching outputs,
so ``method="auto"`` uses it and falls back to dynamo only when it fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlforge.errors import InputError

__all__ = ["export_onnx", "onnx_max_abs_diff", "flatten_outputs"]


def _dynamic_axes(
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool,
    extra: Mapping[str, Mapping[int, str]] | None,
) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch:
        for n in (*input_names, *output_names):
            axes[n] = {0: "batch"}
    for n, spec in (extra or {}).items():
        axes.setdefault(n, {}).update(spec)
    return axes


def _export_torchscript(model, inputs, path, input_names, output_names, axes, opset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation + tracer warnings
        torch.onnx.export(
            model,
            inputs,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes or None,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _export_dynamo(model, inputs, path, input_names, output_names, axes, opset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamic_axes is translated to dynamic shapes by the dynamo exporter's compat layer.
        program = torch.onnx.export(
            model,
            inputs,
            None,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=axes or None,
            opset_version=max(opset, 18),  # its lowest implemented opset
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)


def export_onnx(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_batch: bool = True,
    opset: int = 17,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    method: str = "auto",
) -> Path:
    """Export ``model`` (in eval mode) to one self-contained ONNX file, atomically.

    Args:
        model: the module; it is put in eval mode (and left there).
        example_inputs: positional forward inputs used for tracing.
        path: destination ``.onnx`` file; written under a temporary name then renamed,
            so a failed export leaves nothing behind.
        input_names: ONNX names of the positional inputs (``("image",)``,
            ``("input_ids", "attention_mask")``).
        output_names: ONNX names of the outputs.
        dynamic_batch: make axis 0 of every input and output a symbolic ``batch``.
        opset: ONNX opset for the TorchScript exporter (dynamo uses at least 18).
        dynamic_axes: more symbolic axes, e.g. ``{"input_ids": {1: "seq"}}``.
        method: ``"auto"`` (TorchScript, then dynamo on failure), ``"torchscript"`` or
            ``"dynamo"``.

    Returns:
        The path written.

    Raises:
        InputError: when ``input_names`` does not match ``example_inputs`` or ``method``
            is unknown.
        RuntimeError: when every export method failed (message carries each reason).
    """
    if not isinstance(example_inputs, tuple):
        example_inputs = (example_inputs,)
    if len(input_names) != len(example_inputs):
        raise InputError(
            f"input_names: {len(input_names)} names for {len(example_inputs)} example inputs"
        )
    methods = {"auto": ("torchscript", "dynamo"), "torchscript": ("torchscript",), "dynamo": ("dynamo",)}
    if method not in methods:
        raise InputError(f"method: unknown ONNX export method {method!r}; choose auto, torchscript or dynamo")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = _dynamic_axes(input_names, output_names, dynamic_batch, dynamic_axes)
    model.eval()
    errors: list[str] = []
    for how in methods[method]:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            exporter = _export_torchscript if how == "torchscript" else _export_dynamo
            with torch.no_grad():
                exporter(model, example_inputs, tmp, input_names, output_names, axes, opset)
            # mkstemp creates 0600; give the file the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
            return path
        except Exception as exc:  # noqa: BLE001 - try the next exporter, report all
            errors.append(f"{how}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    raise RuntimeError(f"ONNX export of {type(model).__name__} to {path} failed: " + "; ".join(errors))


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """Tensors of a forward output in ONNX output order (tensors, tuples, lists, dicts)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in flatten_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in flatten_outputs(v)]
    return []


def onnx_max_abs_diff(
    model: nn.Module,
    onnx_path: str | os.PathLike[str],
    inputs: tuple[torch.Tensor, ...] | list[tuple[torch.Tensor, ...]],
) -> float:
    """Largest absolute difference between ``model(*inputs)`` and the ONNX file's outputs.

    The model runs in eval mode without gradients; onnxruntime runs on CPU. Inputs are
    matched to the ONNX graph's inputs by position.

    Args:
        model: the torch model the file was exported from.
        onnx_path: the ``.onnx`` file.
        inputs: one tuple of forward inputs, or a list of such tuples (e.g. several
            batch sizes) checked against one onnxruntime session.

    Raises:
        InputError: when the number of inputs or outputs, or an output shape, differs.
    """
    import onnxruntime as ort

    cases = inputs if isinstance(inputs, list) else [inputs]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    model.eval()
    worst = 0.0
    for case in cases:
        if not isinstance(case, tuple):
            case = (case,)
        if len(graph_inputs) != len(case):
            raise InputError(
                f"{onnx_path}: ONNX graph takes {len(graph_inputs)} inputs {graph_inputs}, got {len(case)}"
            )
        with torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in flatten_outputs(model(*case))]
        got = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(graph_inputs, case)})
        if len(got) != len(expected):
            raise InputError(f"{onnx_path}: ONNX graph has {len(got)} outputs, torch model {len(expected)}")
        for i, (a, b) in enumerate(zip(got, expected)):
            if a.shape != b.shape:
                raise InputError(f"{onnx_path}: output {i} shape {a.shape} != torch {b.shape}")
            if a.size:
                worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst
