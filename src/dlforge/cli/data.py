"""``dlforge data ...``: import, inspect, clean, split, export and edit datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dlforge.cli.common import JSON_HELP, emit, err, out, parse_kv, progress_bar, workspace

app = typer.Typer(help="Import, inspect, clean, split, version and export datasets.", no_args_is_help=True)


@app.command("import")
def import_(
    src: Path = typer.Argument(..., help="Folder, .zip, .tar or .tar.gz to import."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name (an existing name gets a new version)."),
    format: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="imagefolder|coco|voc|yolo|labelstudio|csv|jsonl|unlabelled; detected when omitted.",
    ),
    task: str | None = typer.Option(
        None, "--task", help="Task of the data (e.g. tabular for CSV rows); inferred when omitted."
    ),
    strict: bool = typer.Option(False, "--strict", help="Import nothing if any item is bad."),
    message: str | None = typer.Option(None, "--message", "-m", help="Version message."),
    option: list[str] = typer.Option(
        None, "--option", "-o", help="Format option KEY=VALUE, e.g. label_sep='|', text_column=review."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Import data as a new dataset version; bad items are skipped and listed."""
    ws = workspace()
    with progress_bar(f"import {src.name}", enabled=not as_json) as update:
        res = ws.import_data(
            src,
            name,
            format=format,
            task=task,
            strict=strict,
            message=message,
            progress=update,
            **parse_kv(option, "--option"),
        )

    def human(d: dict[str, Any]) -> None:
        how = "detected" if d["detected"] else "given"
        err.print(f"format: [bold]{d['format']}[/] ({how}); task: {d['task']}")
        err.print(
            f"imported {d['imported']} items into [bold]{d['version']}[/] ({len(d['classes'])} classes, "
            f"{d['new_blobs']} new files stored)"
        )
        for s in d["skipped"][:20]:
            err.print(f"  [yellow]skipped[/] {s['source']}: {s['reason']}")
        if len(d["skipped"]) > 20:
            err.print(f"  ... and {len(d['skipped']) - 20} more skipped")

    emit(res.to_dict(), as_json, human)


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List datasets with their latest version."""
    ws = workspace()
    rows = []
    for ds in ws.datasets():
        v = ds.latest()
        d = v.describe()
        rows.append(
            {
                "name": ds.name,
                "latest": v.ref,
                "task": d["task"],
                "classes": len(d["classes"]),
                "active": d["counts"]["active"],
                "versions": v.number,
            }
        )

    def human(d: dict[str, Any]) -> None:
        t = Table("dataset", "latest", "task", "classes", "samples")
        for r in d["datasets"]:
            t.add_row(r["name"], r["latest"], str(r["task"]), str(r["classes"]), str(r["active"]))
        out.print(t)

    emit({"datasets": rows}, as_json, human)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Show a dataset version: task, classes, counts per split and class."""
    ws = workspace()
    v = ws.version(ref)
    d = v.describe()
    per_class: dict[str, dict[str, int]] = {}
    for r in v.records(with_annotations=True):
        for lab in {a.label for a in r.annotations if a.label}:
            per_class.setdefault(lab, {}).setdefault(r.split or "unassigned", 0)
            per_class[lab][r.split or "unassigned"] += 1
    d["per_class"] = per_class

    def human(x: dict[str, Any]) -> None:
        c = x["counts"]
        out.print(
            f"[bold]{x['version']}[/]  task={x['task']}  op={x['operation']}  by {x['author']} at {x['created_at']}"
        )
        out.print(f"  {x['message']}")
        out.print(f"  samples: {c['active']} active, {c['excluded']} excluded; splits: {c['splits']}")
        t = Table("class", *sorted({s for v in per_class.values() for s in v}))
        for lab in x["classes"]:
            row = per_class.get(lab, {})
            t.add_row(lab, *(str(row.get(s, 0)) for s in sorted({s for v in per_class.values() for s in v})))
        out.print(t)

    emit(d, as_json, human)


@app.command("log")
def log(
    name: str = typer.Argument(..., help="Dataset name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List every version of a dataset: number, parent, operation, message, author, time."""
    ws = workspace()
    entries = ws.dataset(name.partition("@")[0]).log()

    def human(d: dict[str, Any]) -> None:
        t = Table("version", "parent", "operation", "samples", "author", "created", "message")
        for e in d["versions"]:
            t.add_row(
                str(e["number"]),
                str(e["parent"] or "-"),
                e["operation"],
                str(e["counts"]["active"]),
                e["author"],
                e["created_at"][:19],
                e["message"],
            )
        out.print(t)

    emit({"dataset": name, "versions": entries}, as_json, human)


@app.command("clean")
def clean(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION to clean."),
    disable: list[str] = typer.Option(
        None, "--disable", help="Turn a check off (repeatable); see `dlforge data checks`."
    ),
    set_: list[str] = typer.Option(None, "--set", help="Set a check's threshold FIELD=VALUE (repeatable)."),
    report: Path | None = typer.Option(None, "--report", help="Write the full JSON report here."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Find unreadable, duplicate, near-duplicate, tiny, empty, conflicting and invalid items.

    Makes a new version where they are excluded (never deleted).
    """
    ws = workspace()
    v = ws.version(ref)
    cfg = clean_config(disable or [], parse_kv(set_, "--set"))
    res = v.clean(cfg)
    full = res.report.to_dict()
    if report:
        _write_json(report, full)
    result = {
        "version": res.version.ref,
        "parent": v.ref,
        "excluded": len(res.report.excluded),
        "counts": full.get("counts", {}),
        "report": str(report) if report else None,
    }

    def human(d: dict[str, Any]) -> None:
        err.print(f"cleaned {d['parent']} -> [bold]{d['version']}[/]: excluded {d['excluded']} items")
        for k, n in d["counts"].items():
            err.print(f"  {k}: {n}")

    emit(result, as_json, human)


@app.command("checks")
def checks(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the clean checks, whether they are on by default, and their thresholds."""
    from dlforge.data.clean import CleanConfig

    cfg = CleanConfig()
    emit({"checks": cfg.model_dump() if hasattr(cfg, "model_dump") else vars(cfg)}, as_json)


@app.command("split")
def split(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION to split."),
    val: float = typer.Option(0.1, "--val", help="Validation fraction."),
    test: float = typer.Option(0.1, "--test", help="Test fraction."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same split)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Stratified train/val/test split in a new version; near-duplicates never straddle splits."""
    ws = workspace()
    v = ws.version(ref)
    nv = v.split(val=val, test=test, seed=seed)
    d = {"version": nv.ref, "parent": v.ref, "counts": nv.counts()["splits"]}
    emit(d, as_json, lambda x: err.print(f"split {x['parent']} -> [bold]{x['version']}[/]: {x['counts']}"))


@app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    format: str = typer.Option(..., "--format", "-f", help="imagefolder|coco|voc|yolo|labelstudio|csv|jsonl."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    split_: str | None = typer.Option(None, "--split", help="Export only this split."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Export a version (or one split) to a dataset format."""
    ws = workspace()
    res = ws.version(ref).export(format, out_dir, split=split_)
    emit(res, as_json, lambda d: err.print(f"exported {d.get('items')} items of {d['version']} to {d['out']}"))


@app.command("rename-classes")
def rename_classes(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    mapping: list[str] = typer.Argument(..., help="OLD=NEW pairs; two OLDs to one NEW merges them."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Rename or merge classes in a new version."""
    ws = workspace()
    v = ws.version(ref)
    nv = v.rename_classes(parse_kv(mapping, "mapping"))
    emit({"version": nv.ref, "parent": v.ref, "classes": nv.classes}, as_json)


@app.command("relabel")
def relabel(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    labels: Path = typer.Option(
        ..., "--labels", help="CSV with columns uid,label (label may hold several, '|'-separated)."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Set class labels of samples by uid (from a CSV) in a new version."""
    import csv

    from dlforge.errors import InputError

    ws = workspace()
    v = ws.version(ref)
    changes: dict[int, list[str]] = {}
    with labels.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                changes[int(row["uid"])] = [x for x in row["label"].split("|") if x]
            except (KeyError, ValueError, AttributeError):
                raise InputError(f"{labels}:{i}: expected columns uid,label with an integer uid") from None
    nv = v.relabel(changes)
    emit({"version": nv.ref, "parent": v.ref, "relabelled": len(changes)}, as_json)


@app.command("merge")
def merge(
    ref: str = typer.Argument(..., help="The dataset version to merge into (NAME or NAME@VERSION)."),
    other: str = typer.Argument(..., help="The version whose samples are added."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Add another version's samples to a dataset, as a new version."""
    ws = workspace()
    v = ws.version(ref)
    nv = v.merge(ws.version(other))
    emit({"version": nv.ref, "parent": v.ref, "counts": nv.counts()}, as_json)


@app.command("sample")
def sample(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    n: int | None = typer.Option(None, "--n", help="Number of samples to keep."),
    frac: float | None = typer.Option(None, "--frac", help="Fraction of samples to keep."),
    seed: int = typer.Option(0, "--seed"),
    stratified: bool = typer.Option(True, "--stratified/--random", help="Keep class proportions."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Keep a (stratified) random subset in a new version; the rest is excluded."""
    ws = workspace()
    v = ws.version(ref)
    nv = v.sample(n, frac=frac, seed=seed, stratified=stratified)
    emit({"version": nv.ref, "parent": v.ref, "counts": nv.counts()}, as_json)


def clean_config(disable: list[str], values: dict[str, str]) -> Any:
    """A CleanConfig from ``--disable CHECK`` and ``--set FIELD=VALUE`` options."""
    from pydantic import ValidationError

    from dlforge.data.clean import CleanConfig
    from dlforge.errors import InputError

    fields = CleanConfig.model_fields
    bool_fields = [k for k, f in fields.items() if f.annotation is bool]
    settings: dict[str, Any] = {}
    for check in disable:
        if check not in bool_fields:
            raise InputError(f"--disable {check!r}: not a check; checks: {', '.join(bool_fields)}")
        settings[check] = False
    for k, v in values.items():
        if k not in fields:
            raise InputError(f"--set {k!r}: unknown setting; settings: {', '.join(fields)}")
        settings[k] = v
    try:
        return CleanConfig(**settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"--set {first['loc'][0]}: {first['msg']}") from None


def _write_json(path: Path, data: Any) -> None:
    from dlforge.runs import write_json_atomic

    write_json_atomic(path, data)
