"""``dlforge ui``: start the web platform."""

from __future__ import annotations

import typer

from dlforge.cli.common import err, workspace


def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
) -> None:
    """Start the web platform: datasets, versions and runs with live training curves."""
    import uvicorn

    from dlforge.web.app import create_app

    ws = workspace()
    err.print(f"dlforge web platform on http://{host}:{port}  (workspace {ws.home})")
    uvicorn.run(create_app(ws), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
