"""Training runs: their record in the store, their directory, their metrics and events.

A :class:`Run` is what the training engine logs into (it implements the
engine's ``RunLogger`` protocol) and what evaluation, export and the CLI read.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from dlforge.errors import InputError, NotFoundError
from dlforge.store.models import EventRow, MetricRow, RunRow, utcnow

if TYPE_CHECKING:
    from dlforge.workspace import Workspace

RUN_STATES = ("created", "running", "completed", "failed", "stopped")


def new_run_id(task: str) -> str:
    prefix = "".join(w[0] for w in task.split("_"))[:3]
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunInfo:
    id: str
    task: str
    status: str
    data_ref: str | None
    params: dict[str, Any]
    summary: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.id,
            "task": self.task,
            "status": self.status,
            "data": self.data_ref,
            "params": self.params,
            "summary": self.summary,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class Run:
    """One training run. Metrics and events go to the store as they happen."""

    def __init__(self, ws: Workspace, run_id: str) -> None:
        self.ws = ws
        self.id = run_id
        self.dir = ws.settings.runs_dir / run_id

    # -- reading -----------------------------------------------------------------
    def info(self) -> RunInfo:
        with self.ws.db.read() as s:
            row = s.get(RunRow, self.id)
            if row is None:
                raise NotFoundError(f"run {self.id!r} does not exist")
            return RunInfo(
                row.id,
                row.task,
                row.status,
                row.data_ref,
                dict(row.params),
                dict(row.summary),
                row.created_at,
                row.finished_at,
            )

    @property
    def task(self) -> str:
        return self.info().task

    @property
    def status(self) -> str:
        return self.info().status

    @property
    def params(self) -> dict[str, Any]:
        return self.info().params

    @property
    def data_ref(self) -> str | None:
        return self.info().data_ref

    @property
    def manifest_path(self) -> Path:
        return self.dir / "run.json"

    def manifest(self) -> dict[str, Any]:
        """The run's self-description (``run.json``), written by its task recipe."""
        if not self.manifest_path.exists():
            raise NotFoundError(f"{self.manifest_path}: run {self.id} has no run.json (did it start?)")
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, data)

    def metrics(self, name: str | None = None) -> list[dict[str, Any]]:
        with self.ws.db.read() as s:
            q = select(MetricRow).where(MetricRow.run_id == self.id)
            if name:
                q = q.where(MetricRow.name == name)
            rows = s.scalars(q.order_by(MetricRow.id)).all()
            return [{"step": r.step, "epoch": r.epoch, "name": r.name, "value": r.value} for r in rows]

    def history(self) -> dict[str, list[tuple[int, float]]]:
        """Metric name -> [(step, value), ...] in logging order."""
        out: dict[str, list[tuple[int, float]]] = {}
        for m in self.metrics():
            out.setdefault(m["name"], []).append((m["step"], m["value"]))
        return out

    def events(self) -> list[dict[str, Any]]:
        with self.ws.db.read() as s:
            rows = s.scalars(select(EventRow).where(EventRow.run_id == self.id).order_by(EventRow.id)).all()
            return [
                {
                    "step": r.step,
                    "kind": r.kind,
                    "level": r.level,
                    "message": r.message,
                    "time": r.time.isoformat(),
                }
                for r in rows
            ]

    # -- writing (the engine's RunLogger protocol) -------------------------------
    def log_metrics(self, step: int, metrics: dict[str, float], *, epoch: int | None = None) -> None:
        rows = [
            MetricRow(run_id=self.id, step=int(step), epoch=epoch, name=k, value=float(v))
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if rows:
            with self.ws.db.write() as s:
                s.add_all(rows)

    def log_event(self, kind: str, message: str, *, step: int | None = None, level: str = "warning") -> None:
        with self.ws.db.write() as s:
            s.add(EventRow(run_id=self.id, step=step, kind=kind, level=level, message=message))

    def set_status(self, status: str) -> None:
        with self.ws.db.write() as s:
            row = s.get(RunRow, self.id)
            assert row is not None
            row.status = status

    def update_params(self, params: dict[str, Any]) -> None:
        with self.ws.db.write() as s:
            row = s.get(RunRow, self.id)
            assert row is not None
            row.params = {**row.params, **params}

    def finish(self, status: str = "completed", summary: dict[str, Any] | None = None) -> None:
        with self.ws.db.write() as s:
            row = s.get(RunRow, self.id)
            assert row is not None
            row.status = status
            row.finished_at = utcnow()
            if summary is not None:
                row.summary = {**row.summary, **summary}

    def __repr__(self) -> str:
        return f"Run({self.id!r})"


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
