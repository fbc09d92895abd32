"""``dlforge quickstart``: the sample workspace, built end to end."""

from __future__ import annotations

from typing import Any

import typer

from dlforge.cli.common import JSON_HELP, emit, err, workspace


def quickstart(
    epochs: int = typer.Option(12, "--epochs", help="Training epochs for the sample model."),
    no_train: bool = typer.Option(False, "--no-train", help="Only build the sample dataset."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Build a sample workspace from scikit-learn's digits: import, clean, split, train, evaluate, export.

    Running it again reuses what is already there.
    """
    from dlforge.quickstart import quickstart as run_quickstart

    ws = workspace()
    res = run_quickstart(ws, epochs=epochs, train=not no_train, log=lambda s: err.print(s))

    def human(d: dict[str, Any]) -> None:
        err.print("\n[bold]next steps[/]")
        err.print("  dlforge data log digits          # the versions: import -> clean -> split")
        if "run" in d:
            err.print(f"  dlforge runs show {d['run']}")
            err.print(f"  dlforge eval {d['run']} --report report.html")
        if "bundle" in d:
            err.print(f"  dlforge serve {d['bundle']} --port 8000")
        err.print("  dlforge ui                       # the web platform")

    emit(res, as_json, human)


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
