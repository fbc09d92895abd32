"""Side-by-side comparison of training runs (what ``dlforge runs compare`` and the web page show)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlforge.errors import InputError
from dlforge.runs import Run


def compare_runs(runs: Sequence[Run]) -> dict[str, Any]:
    """Compare runs: the parameters that differ between them and their numeric summary metrics.

    Args:
        runs: two or more runs.

    Returns:
        ``{"runs": [ids], "data": {id: data ref}, "status": {id: status}, "task": {id: task},
        "params": {name: {id: value}}`` (only parameters whose values differ)
        ``, "metrics": {name: {id: value}}}`` (every numeric summary entry: best metric, best
        epoch, steps, train seconds, ...).
    """
    if len(runs) < 2:
        raise InputError(f"compare: got {len(runs)} run(s); select two or more")
    infos = [r.info().to_dict() for r in runs]
    keys = sorted({k for i in infos for k in i["params"]})
    # repr() tells 1 from 1.0 and compares lists/dicts by value.
    differing = [k for k in keys if len({repr(i["params"].get(k)) for i in infos}) > 1]
    metric_keys = sorted(
        {
            k
            for i in infos
            for k, v in i["summary"].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    return {
        "runs": [i["run"] for i in infos],
        "data": {i["run"]: i["data"] for i in infos},
        "status": {i["run"]: i["status"] for i in infos},
        "task": {i["run"]: i["task"] for i in infos},
        "monitor": {i["run"]: i["summary"].get("monitor") for i in infos},
        "params": {k: {i["run"]: i["params"].get(k) for i in infos} for k in differing},
        "metrics": {k: {i["run"]: i["summary"].get(k) for i in infos} for k in metric_keys},
    }
