"""Web package in Debian's Chromium (Playwright): the page gives the SDK's answer, offline."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_helpers import MAX_LEN, encode, image_spec
from PIL import Image

from dlforge.deploy import Predictor
from dlforge.deploy.spec import ExportSpec, TextInput
from dlforge.deploy.web import RUNTIME_FILES, build_web_package

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (/usr/bin/chromium)"),
    pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm for onnxruntime-web"),
]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(scope="module")
def web_dirs(digits: dict, text_model: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web")
    image = build_web_package(image_spec(digits), root / "digits")
    tok = text_model["tok"]
    ids, mask = encode(tok, text_model["val_texts"][:8])
    text_spec = ExportSpec(
        model=text_model["model"], task="text_classification", labels=["negative", "positive"],
        input=TextInput(tokenizer=tok, max_len=MAX_LEN), example_inputs=(ids, mask),
        input_names=["input_ids", "attention_mask"], name="sentiment",
    )
    text = build_web_package(text_spec, root / "sentiment")
    assert set(RUNTIME_FILES) <= set(image["files"]) and "index.html" in image["files"]
    return {"image": Path(image["path"]), "text": Path(text["path"]), "root": root}


@pytest.fixture(scope="module")
def site(web_dirs: dict[str, Path]) -> Iterator[str]:
    handler = functools.partial(Quiet, directory=str(web_dirs["root"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def page(site: str) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        context = browser.new_context()
        # Offline proof: any request that is not to the local static server fails the test.
        outside: list[str] = []
        context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(site)
                      else (outside.append(route.request.url), route.abort()))
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg, errors, outside
        browser.close()


def _wait(pg, state: str) -> None:
    pg.wait_for_function(
        f"document.body.dataset.state === '{state}' || document.body.dataset.state === 'error'", timeout=60_000
    )
    assert pg.evaluate("document.body.dataset.state") == state, pg.inner_text("#status")


def test_image_page_matches_sdk(page, site: str, web_dirs: dict[str, Path], digit_pngs, tmp_path: Path) -> None:
    pg, errors, outside = page
    pg.goto(f"{site}/digits/index.html")
    _wait(pg, "ready")
    sdk = Predictor(web_dirs["image"])
    # Model-size images and images the page must resize (as Pillow does) to 32x32.
    odd = tmp_path / "odd.png"
    Image.open(digit_pngs[2]).resize((57, 41), Image.BICUBIC).save(odd)
    big = tmp_path / "big.png"
    Image.open(digit_pngs[3]).resize((128, 128), Image.NEAREST).save(big)
    for path in [*digit_pngs[:3], odd, big]:
        pg.set_input_files("#file", str(path))
        _wait(pg, "done")
        got = pg.evaluate("window.dlforgeResult")
        want = sdk.predict(path)
        assert got["label"] == want.label, path.name
        assert pg.inner_text("[data-testid=top-label]") == want.label
        assert abs(got["score"] - want.score) < 2e-3, (path.name, got["score"], want.score)
        pg.evaluate("document.body.dataset.state = 'ready'")
    assert not errors and not outside


def test_text_page_matches_sdk(page, site: str, web_dirs: dict[str, Path]) -> None:
    pg, errors, outside = page
    pg.goto(f"{site}/sentiment/index.html")
    _wait(pg, "ready")
    sdk = Predictor(web_dirs["text"])
    for text in ["what a great and happy film", "awful and sad", "The film was REALLY dull!"]:
        pg.fill("#text", text)
        pg.click("#run-text")
        _wait(pg, "done")
        got = pg.evaluate("window.dlforgeResult")
        want = sdk.predict(text)
        assert got["label"] == want.label and abs(got["score"] - want.score) < 1e-4, text
        pg.evaluate("document.body.dataset.state = 'ready'")
    assert not errors and not outside
