"""The web platform's routes: JSON API plus one page that renders it live.

Every route is one call into the library (datasets, versions, runs); errors the
library raises become 4xx JSON answers with the one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

import dlforge
from dlforge.errors import DlforgeError, NotFoundError
from dlforge.runs import compare_runs
from dlforge.web.views import sample_page, version_overview
from dlforge.workspace import Workspace

STATIC = Path(__file__).parent / "static"


class SplitRequest(BaseModel):
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


def create_app(ws: Workspace) -> FastAPI:
    """The web platform over one workspace: ``uvicorn.run(create_app(Workspace.open()))``."""
    app = FastAPI(title="dlforge", version=dlforge.__version__)

    @app.exception_handler(DlforgeError)
    async def _user_error(_: Request, exc: DlforgeError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file():
            raise DlforgeError(f"no static file {name!r}")
        return FileResponse(path)

    @app.get("/api/datasets")
    def datasets() -> dict[str, Any]:
        out = []
        for ds in ws.datasets():
            d = ds.latest().describe()
            out.append({"name": ds.name, "latest": d["version"], "task": d["task"], "classes": d["classes"],
                        "counts": d["counts"]})
        return {"datasets": out}

    @app.get("/api/datasets/{name}")
    def dataset_log(name: str) -> dict[str, Any]:
        return {"dataset": name, "versions": ws.dataset(name).log()}

    @app.get("/api/datasets/{name}/versions/{number}")
    def version(name: str, number: int) -> dict[str, Any]:
        return version_overview(ws.version(f"{name}@{number}"))

    @app.get("/api/datasets/{name}/versions/{number}/samples")
    def samples(
        name: str,
        number: int,
        split: str | None = None,
        label: str | None = None,
        review: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        return sample_page(
            ws.version(f"{name}@{number}"), split=split, label=label, review=review, offset=offset, limit=limit
        )

    @app.post("/api/datasets/{name}/clean")
    def clean(name: str) -> dict[str, Any]:
        res = ws.version(name).clean()
        return {"version": res.version.ref, "excluded": len(res.report.excluded), "checked": res.report.checked,
                "counts": res.report.counts}

    @app.post("/api/datasets/{name}/split")
    def split(name: str, body: SplitRequest) -> dict[str, Any]:
        v = ws.version(name).split(val=body.val, test=body.test, seed=body.seed)
        return {"version": v.ref, "counts": v.counts()["splits"]}

    @app.get("/api/blobs/{sha256}", include_in_schema=False)
    def blob(sha256: str) -> FileResponse:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256) or not ws.blobs.exists(sha256):
            raise DlforgeError(f"no blob {sha256!r}")
        return FileResponse(ws.blobs.path(sha256))

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"runs": [r.info().to_dict() for r in ws.runs()]}

    @app.get("/api/runs/{run_id}")
    def run(run_id: str) -> dict[str, Any]:
        r = ws.run(run_id)
        has_report = (r.dir / "report.html").is_file()
        return {**r.info().to_dict(), "events": r.events(), "history": r.history(),
                "report": f"/runs/{r.id}/report.html" if has_report else None}

    @app.get("/runs/{run_id}/report.html", response_class=FileResponse, include_in_schema=False)
    def run_report(run_id: str) -> FileResponse:
        path = ws.run(run_id).dir / "report.html"
        if not path.is_file():
            raise NotFoundError(f"run {run_id!r} has no report.html (run: dlforge eval {run_id} --report ...)")
        return FileResponse(path, media_type="text/html")

    @app.get("/api/compare")
    def compare(runs: list[str] = Query(..., description="Two or more run ids.")) -> dict[str, Any]:
        return compare_runs([ws.run(r) for r in runs])

    return app
