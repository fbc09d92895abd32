"""``dlforge data synth``: generate a synthetic shapes dataset (boxes + masks) to smoke-test a pipeline."""

from __future__ import annotations

from pathlib import Path

import typer

from dlforge.cli.common import JSON_HELP, emit, err


def synth(
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write (COCO layout + VOC-style class maps)."),
    n: int = typer.Option(200, "--n", help="Number of images."),
    size: int = typer.Option(256, "--size", help="Image side in pixels."),
    classes: str = typer.Option("circle,square,triangle", "--classes", help="Comma-separated shape classes."),
    max_objects: int = typer.Option(4, "--max-objects", help="Most objects per image."),
    empty_fraction: float = typer.Option(0.0, "--empty-fraction", help="Share of images without objects."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Write shapes of several classes on textured backgrounds with exact boxes and masks.

    Import the result with `dlforge data import OUT --name shapes` (detected as COCO).
    """
    from dlforge.data.synthetic import make_shapes

    res = make_shapes(out_dir, n, size=(size, size), classes=[c.strip() for c in classes.split(",") if c.strip()],
                      max_objects=max_objects, empty_fraction=empty_fraction, seed=seed)
    emit({k: (str(v) if isinstance(v, Path) else v) for k, v in res.items()}, as_json,
         lambda d: err.print(f"wrote {d['images']} images with {d['objects']} objects to {d['root']}"))


def register(data_app: typer.Typer) -> None:
    data_app.command("synth")(synth)
