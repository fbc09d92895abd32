"""What every CLI command shares: the workspace, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Progress and human-readable output go to stderr; stdout is reserved for --json.
err = Console(stderr=True)
out = Console()

JSON_HELP = "Print exactly one JSON object on stdout (logs and progress go to stderr)."


def workspace():  # type: ignore[no-untyped-def]
    from dlforge.workspace import Workspace

    return Workspace.open()


def emit(
    result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Print a command's result: one JSON object with ``--json``, else a readable form."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    elif human is not None:
        human(result)
    else:
        out.print_json(json.dumps(result, default=str, ensure_ascii=False))


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    if not enabled or not err.is_terminal and not _force_progress():
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as prog:
        task = prog.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        yield update


def _force_progress() -> bool:
    import os

    return os.environ.get("DLFORGE_PROGRESS") == "1"


def parse_kv(pairs: list[str] | None, what: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` -> ``{"a": "b", "c": "d"}``."""
    from dlforge.errors import InputError

    outd: dict[str, str] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise InputError(f"{what} {p!r}: expected KEY=VALUE")
        outd[k] = v
    return outd
