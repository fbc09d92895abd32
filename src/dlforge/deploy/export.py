"""Export a trained run: look up its task recipe's ExportSpec and write the chosen package."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from dlforge.errors import InputError

FORMATS = ("bundle", "onnx", "edge", "web")


def recipe_for_run(ws: Any, run_id: str) -> tuple[Any, Any]:
    """The run and its task recipe module."""
    run = ws.run(run_id)
    try:
        from dlforge.tasks import get_task
    except ImportError:  # pragma: no cover - only while the tasks package is being built
        raise InputError("export: the task recipes (dlforge.tasks) are not available") from None
    return run, get_task(run.task)


def spec_for_run(ws: Any, run_id: str) -> Any:
    """The run and the :class:`~dlforge.deploy.spec.ExportSpec` its task recipe builds for it."""
    run, recipe = recipe_for_run(ws, run_id)
    if not hasattr(recipe, "export_spec"):
        raise InputError(f"run {run.id}: task {run.task!r} cannot be exported yet (no export_spec)")
    return run, recipe.export_spec(run)


def export_run(
    ws: Any,
    run_id: str,
    format: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export run ``run_id`` as ``format`` (bundle, onnx, edge, web) to ``out``.

    Returns:
        A JSON-ready summary: run, format, path, parity figures, files and size
        (edge packages add the fp32/int8 accuracy).

    Raises:
        InputError: for an unknown format or an export that fails its parity check.
        NotFoundError: for an unknown run.
    """
    if format not in FORMATS:
        raise InputError(f"--format: unknown export format {format!r}; choose {', '.join(FORMATS)}")
    out = Path(out)
    run, recipe = recipe_for_run(ws, run_id)
    if hasattr(recipe, "export_package"):
        # Recipes whose models are not torch modules (tabular: scikit-learn + skl2onnx)
        # write their packages themselves, in the same bundle format.
        result = recipe.export_package(run, format, out, overwrite=overwrite)
        return _finish(run, format, out, result)
    if not hasattr(recipe, "export_spec"):
        raise InputError(f"run {run.id}: task {run.task!r} cannot be exported yet (no export_spec)")
    spec = recipe.export_spec(run)
    if format == "bundle":
        from dlforge.deploy.bundle import build_bundle

        result = build_bundle(spec, out, overwrite=overwrite).to_dict()
    elif format == "onnx":
        from dlforge.deploy.bundle import export_onnx_file

        result = export_onnx_file(spec, out, overwrite=overwrite).to_dict()
    elif format == "edge":
        from dlforge.deploy.edge import build_edge_package

        result = build_edge_package(spec, out, overwrite=overwrite)
    else:
        from dlforge.deploy.web import build_web_package

        result = build_web_package(spec, out, overwrite=overwrite)
    return _finish(run, format, out, result)


def _finish(run: Any, format: str, out: Path, result: dict[str, Any]) -> dict[str, Any]:
    result = {"run": run.id, "format": format, **result}
    # Recording the event must not fail an export that is already written.
    with contextlib.suppress(Exception):
        run.log_event("export", f"exported as {format} to {out}", level="info")
    return result
