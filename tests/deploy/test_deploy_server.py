"""The REST server on 127.0.0.1: v2 and v1 round trips, keys, limits, batching, metrics, shutdown."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from dlforge.deploy import Predictor
from dlforge.deploy.server import ServerConfig, create_app

KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn in a background thread, stopped the way SIGTERM stops it (should_exit)."""

    def __init__(self, app, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=10)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="module")
def server(image_bundle: Path, text_bundle: Path) -> Iterator[ServerThread]:
    config = ServerConfig(max_batch=16, max_wait_ms=20, max_body_bytes=200_000)
    app = create_app([image_bundle, text_bundle], api_keys=[KEY], config=config)
    with ServerThread(app, free_port()) as srv:
        yield srv


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_health_is_open_and_models_need_a_key(server: ServerThread) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    r = httpx.get(f"{server.url}/v2/models/digits")
    assert r.status_code == 401 and "API key" in r.json()["error"]
    r = httpx.get(f"{server.url}/v2/models/digits", headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    meta = httpx.get(f"{server.url}/v2/models/digits", headers={"X-API-Key": KEY}).json()
    assert meta["inputs"][0]["shape"] == [-1, 3, 32, 32] and meta["parameters"]["task"] == "image_classification"
    assert httpx.get(f"{server.url}/v2/models/nope", headers=auth()).status_code == 404
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert "/v2/models/{name}/infer" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_v1_multipart_image_and_json_text(server: ServerThread, image_bundle, text_bundle, digit_pngs) -> None:
    sdk = Predictor(image_bundle)
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in digit_pngs[:3]]
    r = httpx.post(f"{server.url}/v1/models/digits/predict?top_k=2", files=files, headers=auth())
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    expected = sdk.predict([str(p) for p in digit_pngs[:3]])
    assert [p["label"] for p in preds] == [e.label for e in expected]
    assert abs(preds[0]["score"] - expected[0].score) < 1e-5 and len(preds[0]["top_k"]) == 2
    r = httpx.post(f"{server.url}/v1/models/sentiment/predict", json={"text": "a great and happy film"}, headers=auth())
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "positive"
    r = httpx.post(
        f"{server.url}/v1/models/sentiment/predict", json={"inputs": ["awful", "so good"]}, headers=auth()
    )
    assert [p["label"] for p in r.json()["predictions"]] == [x.label for x in Predictor(text_bundle).predict(
        ["awful", "so good"])]


def test_v2_bytes_and_raw_tensor_round_trips(server: ServerThread, image_bundle, digit_pngs) -> None:
    sdk = Predictor(image_bundle)
    b64 = [base64.b64encode(p.read_bytes()).decode() for p in digit_pngs[:2]]
    body = {"id": "req-1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": b64}]}
    r = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, headers=auth())
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "req-1"
    assert out["label"]["data"] == [x.label for x in sdk.predict([str(p) for p in digit_pngs[:2]])]
    # Raw tensor: the preprocessed batch in, logits out, equal to the SDK's ONNX call.
    prepared = sdk.prepare([str(p) for p in digit_pngs[:2]])
    x = prepared.feeds["input"]
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    r = httpx.post(f"{server.url}/v2/models/digits/infer", json=body, headers=auth())
    assert r.status_code == 200, r.text
    logits = r.json()["outputs"][0]
    assert logits["name"] == "logits" and logits["shape"] == [2, 10]
    np.testing.assert_allclose(np.array(logits["data"]).reshape(2, 10), sdk.run(prepared.feeds)["logits"], atol=1e-5)


def test_bad_requests_get_json_4xx_and_server_keeps_serving(server: ServerThread, digit_pngs) -> None:
    url = f"{server.url}/v1/models/digits/predict"
    big = b"\x00" * 300_000
    r = httpx.post(url, files={"file": ("big.png", big, "image/png")}, headers=auth())
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]
    r = httpx.post(url, content=b"hello", headers={**auth(), "Content-Type": "text/plain"})
    assert r.status_code == 415 and "content type" in r.json()["error"]
    r = httpx.post(url, files={"file": ("x.png", b"not an image", "image/png")}, headers=auth())
    assert r.status_code == 422 and "cannot decode image" in r.json()["error"]
    r = httpx.post(url, content=b"{broken", headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]
    infer = f"{server.url}/v2/models/digits/infer"
    bad_shape = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}]}
    r = httpx.post(infer, json=bad_shape, headers=auth())
    assert r.status_code == 422 and "expected shape" in r.json()["error"]
    r = httpx.post(infer, content=b"x", headers={**auth(), "Content-Type": "application/octet-stream"})
    assert r.status_code == 415
    r = httpx.post(f"{server.url}/v1/models/sentiment/predict", json={"text": "x" * 600}, headers=auth())
    assert r.status_code == 422 and "too long" in r.json()["error"]
    files = [("file", (f"{i}.png", digit_pngs[0].read_bytes(), "image/png")) for i in range(65)]
    r = httpx.post(url, files=files, headers=auth())
    assert r.status_code == 422 and "larger than allowed" in r.json()["error"]
    ok = httpx.post(url, files={"file": ("a.png", digit_pngs[0].read_bytes(), "image/png")}, headers=auth())
    assert ok.status_code == 200


def test_concurrent_requests_are_batched_and_metrics_exposed(server: ServerThread, digit_pngs) -> None:
    url = f"{server.url}/v1/models/digits/predict"
    payloads = [p.read_bytes() for p in digit_pngs]

    def one(i: int) -> int:
        with httpx.Client() as c:
            r = c.post(url, files={"file": ("a.png", payloads[i % len(payloads)], "image/png")}, headers=auth())
            return r.status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(64)))
    assert codes == [200] * 64
    text = httpx.get(f"{server.url}/metrics", headers=auth()).text
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    count = _metric(text, 'dlforge_batch_size_count{model="digits"}')
    total = _metric(text, 'dlforge_batch_size_sum{model="digits"}')
    assert total / count > 1.0  # some ONNX Runtime calls served several requests
    assert _metric(text, 'dlforge_batch_size_bucket{le="1.0",model="digits"}') < count
    assert 'dlforge_requests_total{code="200",model="digits",route="v1_predict"}' in text
    assert "dlforge_request_latency_seconds_bucket" in text
    assert 'dlforge_request_errors_total{code="413"' in text or "dlforge_request_errors_total" in text


def _metric(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {prefix} not found")


class SlowPredictor(Predictor):
    """A predictor whose preprocessing takes a while: a request that is surely in flight."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()

    def prepare(self, inputs):
        self.entered.set()
        time.sleep(0.8)
        return super().prepare(inputs)


def test_graceful_shutdown_finishes_in_flight_requests(image_bundle: Path, digit_pngs) -> None:
    slow = SlowPredictor(image_bundle)
    srv = ServerThread(create_app([slow]), free_port()).__enter__()
    results: list[httpx.Response] = []

    def client() -> None:
        files = {"file": ("a.png", digit_pngs[0].read_bytes(), "image/png")}
        results.append(httpx.post(f"{srv.url}/v1/models/digits/predict", files=files, timeout=30))

    t = threading.Thread(target=client)
    t.start()
    assert slow.entered.wait(20)
    srv.__exit__(None, None, None)  # what SIGTERM does: stop accepting, finish in-flight work
    t.join(timeout=30)
    assert [r.status_code for r in results] == [200]
    assert results[0].json()["predictions"][0]["label"] == Predictor(image_bundle).predict(digit_pngs[0]).label
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/v2/health/live")
