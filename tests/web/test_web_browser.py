"""The web platform in a real browser: Debian chromium driven by playwright over a live uvicorn server.

Set ``DLFORGE_WEB_SCREENSHOTS=/some/dir`` to keep screenshots of each view (for looking at the page
while developing it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed"),
]
sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from dlforge.web.app import create_app  # noqa: E402
from dlforge.workspace import Workspace  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(ws: Workspace) -> Iterator[str]:
    """uvicorn serving create_app(ws) on a free 127.0.0.1 port, in a background thread."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(ws), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(server: str) -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.set_default_timeout(15_000)
        pg.goto(server)
        yield pg
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def snap(pg: object, name: str) -> None:
    out = os.environ.get("DLFORGE_WEB_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(out) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def loaded_images(pg: object, selector: str) -> list[int]:
    return pg.eval_on_selector_all(selector, "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")  # type: ignore[attr-defined]


def test_browser_dataset_split_and_run_curves(ws: Workspace, small_imagefolder: Path, page, server: str) -> None:
    ws.import_data(small_imagefolder, "animals")
    ws.version("animals").split(val=0.2, test=0.2, seed=0)
    run = ws.create_run("image_classification", {"lr": 0.1, "epochs": 3, "model": "cnn-small"}, "animals@2")
    for step in range(1, 6):
        run.log_metrics(step * 10, {"train/loss": 1.5 / step, "lr": 0.1 * (1 - step / 6)})
        run.log_metrics(step * 10, {"val/accuracy": 0.4 + 0.1 * step, "val/loss": 1.2 / step}, epoch=step)
    run.log_event("loss_spike", "loss jumped 4x at step 30", step=30)
    run.finish("completed", {"monitor": "val/accuracy", "best_metric": 0.9, "best_epoch": 5, "steps": 50})
    (run.dir / "report.html").parent.mkdir(parents=True, exist_ok=True)
    (run.dir / "report.html").write_text("<html><body><h1>evaluation report</h1></body></html>", encoding="utf-8")
    other = ws.create_run("image_classification", {"lr": 0.01, "epochs": 3, "model": "cnn-small"}, "animals@2")
    other.finish("completed", {"monitor": "val/accuracy", "best_metric": 0.7, "best_epoch": 3, "steps": 50})

    pg = page
    pg.click("#datasets li[data-name='animals']")
    pg.wait_for_selector("#versions tr[data-version='2']")
    assert pg.locator("#versions tbody tr").count() == 2
    assert "split" in pg.locator("#versions tr[data-version='2']").inner_text()
    # Class distribution per split: three classes, train/val/test columns.
    assert pg.locator("#distribution tbody tr").count() == 3
    assert "train" in pg.locator("#distribution thead").inner_text()
    pg.wait_for_function("() => { const i = [...document.querySelectorAll('#samples img')];"
                         " return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0); }")
    widths = loaded_images(pg, "#samples img")
    assert len(widths) == 36 and all(w == 24 for w in widths)
    snap(pg, "dataset")

    # Filter by class and split: only that class's training samples remain.
    pg.select_option("#filter-label", "fox")
    pg.wait_for_function("() => document.querySelector('#pager').textContent.endsWith('of 12')")
    pg.select_option("#filter-split", "val")
    pg.wait_for_function("() => /of [1-5]$/.test(document.querySelector('#pager').textContent)")
    cards = pg.locator("#samples .sample")
    assert all("fox" in t and "val" in t for t in cards.all_inner_texts())

    # Split again from the page: a third version appears and is selected.
    pg.fill("#split-val", "0.25")
    pg.click("#split-btn")
    pg.wait_for_selector("#versions tr[data-version='3'].active")
    assert "created animals@3" in pg.locator("#action-result").inner_text()
    assert ws.dataset("animals").latest().number == 3

    # The run: charts with polylines, events, parameters, data link and report link.
    pg.click(f"#runs li[data-run='{run.id}'] .name")
    pg.wait_for_selector(f"h2[data-run='{run.id}']")
    titles = pg.eval_on_selector_all("#charts svg", "s => s.map(x => x.dataset.title)")
    assert titles[:3] == ["loss", "learning rate", "validation metrics"]
    points = pg.get_attribute("#charts svg[data-title='loss'] polyline", "points")
    assert points is not None and len(points.split()) == 5
    assert "loss_spike" in pg.locator("#events").inner_text()
    assert "cnn-small" in pg.locator("#params").inner_text()
    assert pg.get_attribute("#data-link", "href") == "#dataset/animals/2"
    report = pg.get_attribute("#report-link", "href")
    assert pg.request.get(server + report).text().count("evaluation report") == 1
    snap(pg, "run")

    # A run in progress: the page follows it as metrics arrive and notices when it ends.
    live = ws.create_run("image_classification", {"lr": 0.05}, "animals@2")
    live.set_status("running")
    live.log_metrics(1, {"train/loss": 2.0})
    live.log_metrics(2, {"train/loss": 1.8})
    pg.wait_for_selector(f"#runs li[data-run='{live.id}']")
    pg.click(f"#runs li[data-run='{live.id}'] .name")
    pg.wait_for_selector(f"h2[data-run='{live.id}']")
    assert pg.locator(".kv .badge").inner_text() == "running"
    live.log_metrics(3, {"train/loss": 1.1})
    live.log_event("nan_loss", "loss was NaN at step 3; skipped the batch", step=3)
    pg.wait_for_function("() => document.querySelector(\"#charts svg[data-title='loss'] polyline\")"
                         ".getAttribute('points').split(' ').length === 3")
    assert "nan_loss" in pg.locator("#events").inner_text()
    live.finish("completed", {"monitor": "train/loss", "best_metric": 1.1})
    pg.wait_for_function("() => document.querySelector('.kv .badge').textContent === 'completed'")
    assert "no evaluation report" in pg.locator("#view").inner_text()

    # Compare the two runs: lr differs, best metrics side by side.
    pg.check(f"#runs li[data-run='{run.id}'] input")
    pg.check(f"#runs li[data-run='{other.id}'] input")
    pg.click("#compare-btn")
    pg.wait_for_selector("#compare tr.param")
    text = pg.locator("#compare").inner_text()
    assert "lr" in text and "0.01" in text and "epochs" not in text
    assert pg.locator("#compare td.best").inner_text() == "0.9000"
    snap(pg, "compare")


def test_browser_detection_boxes_over_thumbnails(ws: Workspace, tmp_path: Path, page) -> None:
    from dlforge.data.synthetic import make_shapes

    make_shapes(tmp_path / "shapes", 4, size=(64, 96), min_objects=2, max_objects=2, semantic_masks=False)
    ws.import_data(tmp_path / "shapes", "shapes", format="coco")
    pg = page
    pg.click("#datasets li[data-name='shapes']")
    pg.wait_for_selector("#samples .thumb svg rect.bbox")
    # Every object's box is drawn (instance masks and polygons carry their box in data.bbox).
    assert pg.locator("#samples .thumb svg rect.bbox").count() == 8
    assert "objects per split" in pg.locator("#view").inner_text()
    # The overlay is the thumbnail's size and its viewBox the image's pixels, so boxes land on the objects.
    thumb = pg.locator("#samples .thumb").first.bounding_box()
    svg = pg.locator("#samples .thumb svg").first
    assert svg.get_attribute("viewBox") == "0 0 96 64"
    box = svg.bounding_box()
    assert abs(box["width"] - thumb["width"]) < 1 and abs(box["height"] - thumb["height"]) < 1
    assert abs(thumb["width"] / thumb["height"] - 1.5) < 0.05
    snap(pg, "detection")
