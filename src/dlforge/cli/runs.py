"""``dlforge runs ...``: list, inspect and compare training runs."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from dlforge.cli.common import JSON_HELP, emit, out, workspace

app = typer.Typer(help="List, show and compare training runs.", no_args_is_help=True)


def run_summary(run: Any) -> dict[str, Any]:
    d = run.info().to_dict()
    d["events"] = run.events()
    return d


@app.command("list")
def list_(
    task: str | None = typer.Option(None, "--task", help="Only runs of this task."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List runs: id, task, status, data version, model and best metric."""
    ws = workspace()
    rows = [r.info().to_dict() for r in ws.runs(task)]

    def human(d: dict[str, Any]) -> None:
        t = Table("run", "task", "status", "data", "model", "best")
        for r in d["runs"]:
            best = r["summary"].get("best_metric")
            best_s = (
                f"{r['summary'].get('monitor', '')}={best:.4f}" if isinstance(best, (int, float)) else "-"
            )
            t.add_row(
                r["run"], r["task"], r["status"], str(r["data"]), str(r["params"].get("model", "")), best_s
            )
        out.print(t)

    emit({"runs": rows}, as_json, human)


@app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a run: hyperparameters, data version, status, best metrics, events."""
    ws = workspace()
    d = run_summary(ws.run(run_id))

    def human(x: dict[str, Any]) -> None:
        out.print(f"[bold]{x['run']}[/]  {x['task']}  status={x['status']}  data={x['data']}")
        t = Table("parameter", "value")
        for k, v in sorted(x["params"].items()):
            t.add_row(k, str(v))
        out.print(t)
        t = Table("summary", "value")
        for k, v in x["summary"].items():
            t.add_row(k, str(v))
        out.print(t)
        for e in x["events"]:
            out.print(f"  [{e['level']}] step {e['step']}: {e['kind']}: {e['message']}")

    emit(d, as_json, human)


@app.command("compare")
def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Compare runs side by side: parameters that differ and their best metrics."""
    from dlforge.runs import compare_runs

    ws = workspace()
    result = compare_runs([ws.run(r) for r in run_ids])

    def human(d: dict[str, Any]) -> None:
        t = Table("", *d["runs"])
        t.add_row("data", *(str(d["data"][r]) for r in d["runs"]))
        for k, vals in d["params"].items():
            t.add_row(k, *(str(vals[r]) for r in d["runs"]))
        for k, vals in d["metrics"].items():
            t.add_row(
                f"[bold]{k}",
                *(f"{vals[r]:.4f}" if isinstance(vals[r], float) else str(vals[r]) for r in d["runs"]),
            )
        out.print(t)

    emit(result, as_json, human)
