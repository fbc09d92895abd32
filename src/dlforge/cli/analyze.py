"""``dlforge analyze ...`` (tabular analysis) and ``dlforge data report|issues`` (dataset reports, label issues).

Thin shells: each command resolves its source, calls one library function and
prints its result (one JSON object with ``--json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dlforge.cli.common import JSON_HELP, emit, err, workspace
from dlforge.errors import InputError

app = typer.Typer(
    help="Analyse a table (CSV/Parquet file or tabular dataset): profile, sample, "
    "group, correlate, mine rules, relate features to a target.",
    no_args_is_help=True,
)

SRC_HELP = "A CSV/TSV/JSONL/Parquet file, or a tabular dataset NAME[@VERSION]."
OUT_HELP = "Folder for the result table (CSV + JSON) and plot (PNG)."


def load_source(src: str) -> tuple[Any, dict[str, Any]]:
    """The table behind ``src`` (a file path, else a dataset reference) and how it was read."""
    from dlforge.analyze import read_table

    p = Path(src)
    if p.exists():
        t = read_table(p)
        info = t.to_dict()
        info.pop("columns", None)
        for s in t.skipped[:20]:
            err.print(f"[yellow]skipped[/] {s.source}: {s.reason}")
        return t.df, info
    from dlforge.tasks.tabular import records_frame

    v = workspace().version(src)
    records = v.records()
    # The class annotation (the column chosen as target at import) is analysed as column "label".
    df = records_frame(records, target="label" if any(r.labels() for r in records[:100]) else None)
    return df, {"dataset": v.ref, "rows": len(df)}


def _finish(res: Any, source: dict[str, Any], as_json: bool) -> None:
    d = res.to_dict(max_rows=20)
    d["source"] = source

    def human(x: dict[str, Any]) -> None:
        err.print(f"{x['analysis']}: {x['rows']} rows -> {', '.join(x['files'].values())}")

    emit(d, as_json, human)


@app.command("profile")
def profile_cmd(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Column types, missing values, distributions and outliers."""
    from dlforge.analyze import profile

    df, source = load_source(src)
    _finish(profile(df, out=str(out)), source, as_json)


@app.command("sample")
def sample_cmd(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    method: str = typer.Option("random", "--method", help="random | stratified | systematic."),
    n: int | None = typer.Option(None, "--n", help="Sample size."),
    frac: float | None = typer.Option(None, "--frac", help="Sample share (instead of --n)."),
    by: str | None = typer.Option(None, "--by", help="Stratification column."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Draw a random, stratified or systematic sample of rows."""
    from dlforge.analyze import sample

    df, source = load_source(src)
    _finish(sample(df, method, n=n, frac=frac, by=by, seed=seed, out=str(out)), source, as_json)


@app.command("groupby")
def groupby_cmd(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    by: list[str] = typer.Option(..., "--by", help="Grouping column (repeatable)."),
    agg: list[str] = typer.Option(None, "--agg", help="COLUMN:FUNC[,FUNC] e.g. price:mean,max (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Aggregate columns per group (default: group size and means)."""
    from dlforge.analyze import groupby_agg
    from dlforge.analyze.aggregate import parse_aggs

    df, source = load_source(src)
    _finish(groupby_agg(df, by, parse_aggs(agg) if agg else None, out=str(out)), source, as_json)


@app.command("corr")
def corr_cmd(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    method: str = typer.Option("pearson", "--method", help="pearson | spearman."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Correlation matrix of the numeric columns with a heat map."""
    from dlforge.analyze import correlation

    df, source = load_source(src)
    _finish(correlation(df, method, out=str(out)), source, as_json)


@app.command("rules")
def rules_cmd(
    src: str = typer.Argument(..., help=SRC_HELP + " With --basket: one transaction per line."),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    algorithm: str = typer.Option("apriori", "--algorithm", help="apriori | fpgrowth."),
    min_support: float = typer.Option(0.1, "--min-support", help="Minimum itemset support (share)."),
    min_confidence: float = typer.Option(0.5, "--min-confidence", help="Minimum rule confidence."),
    min_lift: float | None = typer.Option(None, "--min-lift", help="Minimum rule lift."),
    basket: bool = typer.Option(False, "--basket", help="SRC lists one transaction per line (items separated)."),
    tid: str | None = typer.Option(None, "--tid", help="Transaction-id column of a long table."),
    item: str | None = typer.Option(None, "--item", help="Item column of a long table."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Frequent itemsets and association rules (support, confidence, lift)."""
    from dlforge.analyze import association_rules, read_transactions

    if basket:
        data, enc = read_transactions(src)
        source: dict[str, Any] = {"path": src, "transactions": len(data), "encoding": enc}
    else:
        data, source = load_source(src)
    res = association_rules(
        data,
        algorithm=algorithm,
        min_support=min_support,
        min_confidence=min_confidence,
        min_lift=min_lift,
        tid=tid,
        item=item,
        out=str(out),
    )
    _finish(res, source, as_json)


@app.command("target")
def target_cmd(
    src: str = typer.Argument(..., help=SRC_HELP),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    target: str = typer.Option(..., "--target", help="Target column."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Per-feature statistics and mutual information against a target column."""
    from dlforge.analyze import feature_vs_target

    df, source = load_source(src)
    _finish(feature_vs_target(df, target, out=str(out)), source, as_json)


def report_command(
    ref: str = typer.Argument(..., help="Dataset NAME[@VERSION] (latest when no version)."),
    out: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
    max_images: int = typer.Option(2000, "--max-images", help="Most images decoded when meta lacks sizes."),
    phash_distance: int = typer.Option(4, "--phash-distance", help="Near-duplicate pHash distance (bits)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A self-contained HTML report of a dataset version, with the same figures as JSON."""
    from dlforge.data.report import report_version

    ws = workspace()
    rep = report_version(ws, ref, max_images=max_images, phash_distance=phash_distance)
    rep.save_html(out)
    d = {"report": str(out), "dataset": rep.figures.get("dataset"), "findings": rep.findings, "figures": rep.figures}

    def human(x: dict[str, Any]) -> None:
        for f in x["findings"]:
            err.print(f"- {f}")
        err.print(f"report: {x['report']}")

    emit(d, as_json, human)


def issues_command(
    ref: str = typer.Argument(..., help="Dataset NAME[@VERSION] (latest when no version)."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds."),
    seed: int = typer.Option(0, "--seed", help="Fold seed."),
    limit: int | None = typer.Option(None, "--limit", help="Flag at most this many samples (most suspicious)."),
    mark: bool = typer.Option(
        True,
        "--mark/--no-mark",
        help="Write a new version with flagged samples marked needs_review (suggested label + score).",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Rank likely label errors, outliers and duplicate conflicts; mark them for review."""
    from dlforge.data.quality import find_label_issues

    ws = workspace()
    v = ws.version(ref)
    records = [r for r in v.records() if r.labels()]
    if not records:
        raise InputError(f"{v.ref}: no labelled samples to check")
    target = records[0].meta.get("target") if records[0].media_type == "row" else None
    res = find_label_issues(records, v.classes, cv_folds=folds, seed=seed, label_column=target)
    issues = res.issues[:limit] if limit else res.issues
    d = res.to_dict()
    d["issues"] = [i.to_dict() for i in issues]
    d["dataset"] = v.ref
    d["new_version"] = None
    if mark and issues:
        flags: dict[int, dict[str, Any]] = {}
        for i in issues:
            prev = flags.get(i.sample_id)
            if prev is None or i.score > prev["score"]:
                flags[i.sample_id] = {"suggested": i.suggested, "issue": i.kind, "score": round(i.score, 6)}
        new = v.mark_for_review(flags, message=f"label issues: {len(flags)} samples need review")
        d["new_version"] = new.ref

    def human(x: dict[str, Any]) -> None:
        err.print(f"{x['dataset']}: out-of-fold accuracy {x['cv_accuracy']:.3f}; flagged {x['counts']}")
        for i in x["issues"][:20]:
            err.print(f"  {i['kind']:<18} {i['name']}: {i['given']} -> {i['suggested']} (score {i['score']:.3f})")
        if x["new_version"]:
            err.print(f"marked for review in {x['new_version']}")

    emit(d, as_json, human)


def register(root: typer.Typer) -> None:
    """Add the ``analyze`` group to the root app."""
    root.add_typer(app, name="analyze")
