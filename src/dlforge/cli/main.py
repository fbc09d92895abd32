"""The ``dlforge`` command: one Typer app, one module per command group."""

from __future__ import annotations

import os
import sys

import typer

import dlforge
from dlforge.cli import data as data_cli
from dlforge.cli import runs as runs_cli
from dlforge.cli import train as train_cli
from dlforge.cli.common import err

app = typer.Typer(
    name="dlforge",
    help="dlforge: import, clean, version, train, evaluate, export and serve deep-learning models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dlforge {dlforge.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """dlforge: the deep-learning engineering platform."""


app.add_typer(data_cli.app, name="data")
app.add_typer(runs_cli.app, name="runs")
train_cli.register(app)


def _register_groups() -> None:
    from dlforge.cli import analyze, deploy, quickstart, synth, ui

    deploy.register(app)
    analyze.register(app)
    data_cli.app.command("report")(analyze.report_command)
    data_cli.app.command("issues")(analyze.issues_command)
    synth.register(data_cli.app)
    quickstart.register(app)
    ui.register(app)


_register_groups()


def main() -> None:
    """Entry point: run the app, turning user errors into one line on stderr and exit code 1."""
    from dlforge.errors import DlforgeError

    try:
        app()
    except DlforgeError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        os._exit(1)


if __name__ == "__main__":
    main()
