"""The web platform's JSON API and page, over a real workspace."""

from __future__ import annotations

from fastapi.testclient import TestClient

from dlforge.web.app import create_app
from dlforge.workspace import Workspace


def test_api_lists_datasets_versions_runs_and_reports_errors(ws: Workspace, small_imagefolder) -> None:
    ws.import_data(small_imagefolder, "animals")
    run = ws.create_run("image_classification", {"lr": 0.1})
    run.log_metrics(5, {"train/loss": 0.7})
    client = TestClient(create_app(ws))
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    ds = client.get("/api/datasets").json()["datasets"]
    assert ds[0]["name"] == "animals" and ds[0]["counts"]["active"] == 36
    split = client.post("/api/datasets/animals/split", json={"val": 0.25, "test": 0.25, "seed": 0}).json()
    assert split["version"] == "animals@2" and sum(split["counts"].values()) == 36
    assert [v["operation"] for v in client.get("/api/datasets/animals").json()["versions"]] == ["import", "split"]
    samples = client.get("/api/datasets/animals/versions/2/samples", params={"limit": 5}).json()
    assert samples["total"] == 36 and len(samples["samples"]) == 5
    blob = client.get(f"/api/blobs/{samples['samples'][0]['sha256']}")
    assert blob.status_code == 200 and blob.content[:4] == b"\x89PNG"
    detail = client.get(f"/api/runs/{run.id}").json()
    assert detail["history"]["train/loss"] == [[5, 0.7]]
    missing = client.get("/api/datasets/ghost")
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]
    bad = client.post("/api/datasets/animals/split", json={"val": 2})
    assert bad.status_code == 422
    assert client.get("/static/..%2Fapp.py").status_code in (400, 404)
