"""``dlforge export``, ``dlforge predict`` and ``dlforge serve``: thin shells over dlforge.deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dlforge.cli.common import JSON_HELP, emit, err
from dlforge.errors import DlforgeError, InputError, NotFoundError


def export(
    run_id: str = typer.Argument(..., help="Run id (from `dlforge train`)."),
    format: str = typer.Option("bundle", "--format", "-f", help="bundle | onnx | edge | web."),
    out: Path = typer.Option(..., "--out", "-o", help="Destination directory (onnx: file, edge: .zip)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing destination."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a trained run as a bundle, a bare ONNX model, an edge zip or a web page.

    The ONNX model is checked against torch on real samples of the run's data and
    refused when they disagree. Example:

      dlforge export RUN --format bundle --out bundles/digits
    """
    from dlforge.cli.common import workspace
    from dlforge.deploy.export import export_run

    result = export_run(workspace(), run_id, format, out, overwrite=overwrite)

    def human(d: dict[str, Any]) -> None:
        p = d.get("parity", {})
        err.print(
            f"{d['format']} written to [bold]{d['path']}[/] ({d.get('size_bytes', 0) / 1e6:.2f} MB); "
            f"parity max abs diff {p.get('max_abs_diff', 0):.2g}, label agreement {p.get('label_agreement', 0):.3f}"
        )
        if d["format"] == "bundle":
            err.print(f"next: dlforge serve {d['path']} --port 8000")

    emit(result, as_json, human)


def _cli_input(arg: str, kind: str) -> Any:
    """A CLI argument as a Predictor input: image tasks take paths; text tasks take text or @file."""
    if kind == "text":
        if arg.startswith("@"):
            path = Path(arg[1:])
            if not path.is_file():
                raise InputError(f"{path}: text file not found")
            return path.read_text(encoding="utf-8", errors="replace")
        return arg
    if kind == "image":
        return Path(arg)
    return arg


def _predict_with_run(run_id: str, inputs: list[str], draw: Path | None) -> dict[str, Any]:
    """Predict image files with a run's best checkpoint (torch) through its task recipe."""
    from PIL import Image

    from dlforge.cli.common import workspace
    from dlforge.tasks import get_task

    try:
        run = workspace().run(run_id)
    except NotFoundError:
        raise NotFoundError(f"{run_id}: does not exist (not a bundle directory, not a run id)") from None
    recipe = get_task(run.task)
    predict_images = getattr(recipe, "predict_images", None)
    if predict_images is None:
        raise InputError(
            f"run {run.id}: predicting from a run works for detection and segmentation runs; for "
            f"{run.task} export a bundle first (dlforge export {run.id} --out bundle/) and predict with it"
        )
    good: list[str] = []
    skipped: list[dict[str, str]] = []
    for arg in inputs:  # check every file first: one bad image must not stop the batch
        try:
            with Image.open(arg) as im:
                im.verify()
            good.append(arg)
        except (OSError, SyntaxError, ValueError) as exc:
            skipped.append({"input": arg, "error": f"{arg}: not a readable image ({exc})"})
    if not good:
        raise InputError(f"no input could be predicted; first problem: {skipped[0]['error']}")
    rows = predict_images(run, good, draw_dir=draw)
    predictions = [{"input": arg, **{k: v for k, v in row.items() if k != "path"}} for arg, row in zip(good, rows)]
    return {"run": run.id, "task": run.task, "predictions": predictions, "skipped": skipped}


def predict(
    bundle: Path = typer.Argument(
        ..., help="Bundle directory, or a run id (detection/segmentation runs predict with torch)."
    ),
    inputs: list[str] = typer.Argument(..., help="Image files, or texts for text bundles (@FILE reads a file)."),
    top_k: int = typer.Option(5, "--top-k", help="Labels listed per classification."),
    draw: Path | None = typer.Option(None, "--draw", help="Write images with the predictions drawn here."),
    threads: int | None = typer.Option(None, "--threads", help="ONNX Runtime threads."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Predict with a bundle (ONNX Runtime, no torch) or a run; bad inputs are skipped and reported.

      dlforge predict bundles/digits seven.png three.png --json

      dlforge predict RUN_ID shelf.jpg --draw out/      # a detection/segmentation run, drawn
    """
    if not bundle.is_dir():
        result = _predict_with_run(str(bundle), inputs, draw)
    else:
        result = _predict_with_bundle(bundle, inputs, top_k, draw, threads)

    def human(d: dict[str, Any]) -> None:
        for p in d["predictions"]:
            if "label" in p:
                err.print(f"{p['input']}: [bold]{p['label']}[/] {p['score']:.3f}")
            elif "detections" in p or "instances" in p:
                found = p.get("detections", p.get("instances", []))
                dets = ", ".join(f"{x['label']} {x['score']:.2f}" for x in found)
                err.print(f"{p['input']}: {len(found)} objects {dets}")
            elif "labels" in p:
                err.print(f"{p['input']}: {', '.join(p['labels']) or '(none)'}")
            else:
                err.print(f"{p['input']}: mask {p.get('width')}x{p.get('height')} {p.get('pixel_counts')}")
            if p.get("drawn"):
                err.print(f"  drawn: {p['drawn']}")
        for s in d["skipped"]:
            err.print(f"[yellow]skipped[/] {s['input']}: {s['error']}")

    if not as_json:
        # Masks are large; the human form shows counts only.
        for p in result["predictions"]:
            p.pop("mask", None)
    emit(result, as_json, human)


def _predict_with_bundle(
    bundle: Path, inputs: list[str], top_k: int, draw: Path | None, threads: int | None
) -> dict[str, Any]:
    from dlforge.deploy import BundleError, Predictor
    from dlforge.deploy.results import result_to_json

    predictor = Predictor(bundle, threads=threads)
    kind = predictor.manifest.input_kind
    predictions: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for arg in inputs:
        try:
            item = _cli_input(arg, kind)
            result = predictor.predict(item, top_k=top_k)
        except DlforgeError as exc:
            skipped.append({"input": arg, "error": str(exc)})
            continue
        row: dict[str, Any] = {"input": arg}
        value = result_to_json(result)
        row.update(value if isinstance(value, dict) else {"detections": value})
        if draw is not None and kind == "image":
            from dlforge.deploy.draw import save_drawing

            row["drawn"] = str(save_drawing(item, result, draw, len(predictions)))
        predictions.append(row)
    if not predictions and skipped:
        raise BundleError(f"no input could be predicted; first problem: {skipped[0]['error']}")
    return {"bundle": str(bundle), "task": predictor.task, "predictions": predictions, "skipped": skipped}


def serve(
    bundles: list[Path] = typer.Argument(..., help="One or more bundle directories."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    api_key: list[str] = typer.Option(None, "--api-key", help="Accepted API key (repeatable)."),
    keys_file: Path | None = typer.Option(None, "--keys-file", help="File with one API key per line."),
    max_batch: int = typer.Option(32, "--max-batch", help="Largest micro-batch per ONNX Runtime call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Longest wait to fill a micro-batch."),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="Largest request body accepted."),
    threads: int | None = typer.Option(None, "--threads", help="ONNX Runtime threads per model."),
) -> None:
    """Serve bundles over REST (Open Inference Protocol v2 + /v1 predict), with /metrics and /docs.

      dlforge serve bundles/digits --port 8000 --api-key s3cret
    """
    from dlforge.deploy.server import ServerConfig, read_keys_file
    from dlforge.deploy.server import serve as run_server

    keys = list(api_key or [])
    if keys_file is not None:
        keys.extend(read_keys_file(keys_file))
    config = ServerConfig(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        threads=threads,
    )
    err.print(f"serving {len(bundles)} model(s) on http://{host}:{port} (docs: /docs, metrics: /metrics)")
    run_server(bundles, host=host, port=port, api_keys=keys, config=config)


def register(app: typer.Typer) -> None:
    """Add the deployment commands to the root app."""
    app.command("export")(export)
    app.command("predict")(predict)
    app.command("serve")(serve)
