"""REST serving of bundles: Open Inference Protocol v2, a /v1 predict route, API keys, /metrics.

Routes (``{name}`` is the model name from its manifest, or its directory name):

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (open, no key)
- ``GET /v2``, ``GET /v2/models/{name}``, ``GET /v2/models/{name}/ready``
- ``POST /v2/models/{name}/infer``: v2 JSON tensors. Numeric inputs named like the
  model's inputs are fed as they are and the raw outputs are returned; one
  ``BYTES`` input carries raw images (base64 strings) or texts and gets the
  postprocessed result (``label``/``score`` for classifiers, ``result`` JSON for all).
- ``POST /v1/models/{name}/predict``: a multipart image upload (any file fields)
  or JSON ``{"text": ...}`` / ``{"inputs": [...]}``; returns the SDK's results.
- ``GET /metrics`` (Prometheus), ``GET /docs`` (OpenAPI).

Errors are JSON ``{"error": "..."}`` with a 4xx status; one bad request never
stops the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

import dlforge
from dlforge.deploy.batching import MicroBatcher
from dlforge.deploy.handlers import Prepared
from dlforge.deploy.manifest import BundleError
from dlforge.deploy.predictor import Predictor
from dlforge.deploy.results import Classification, result_to_json
from dlforge.errors import DlforgeError, InputError, NotFoundError

V2_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
NP_TO_V2 = {np.dtype(v).str: k for k, v in V2_DTYPES.items()}
ORT_TO_V2 = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
             "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


@dataclass
class ServerConfig:
    """Serving settings.

    Attributes:
        max_batch: Most items per ONNX Runtime call (micro-batch).
        max_wait_ms: Longest wait for a micro-batch to fill.
        max_body_bytes: Largest request body (413 above it).
        max_items: Most inputs in one request (422 above it; default: each model's max_batch).
        threads: ONNX Runtime intra-op threads per model.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_items: int | None = None
    threads: int | None = None


class HTTPError(DlforgeError):
    """An HTTP-level refusal (415 content type, 401 key) with its status code."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def read_keys_file(path: str | os.PathLike[str]) -> list[str]:
    """API keys from a file, one per line (blank lines and ``#`` comments ignored)."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: keys file not found")
    keys = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    keys = [k for k in keys if k and not k.startswith("#")]
    if not keys:
        raise InputError(f"{p}: keys file holds no keys")
    return keys


class KeyChecker:
    """Holds sha256 hashes of the accepted keys; never the keys themselves."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._hashes = [hash_key(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._hashes)

    def check(self, presented: str | None) -> bool:
        if not self.enabled:
            return True
        if not presented:
            return False
        digest = hash_key(presented)
        ok = False
        for h in self._hashes:  # no early exit: the time taken does not depend on which key matched
            ok |= hmac.compare_digest(digest, h)
        return ok


class Metrics:
    """Prometheus metrics in a registry of their own (one per app, so tests can run many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dlforge_requests", "Requests by model, route and status code.", ["model", "route", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "dlforge_request_errors", "Requests answered with an error status.", ["model", "route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dlforge_request_latency_seconds", "Request latency.", ["model", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.batch_size = Histogram(
            "dlforge_batch_size", "Items per ONNX Runtime call.", ["model"], registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )

    def observe(self, model: str, route: str, code: int, seconds: float) -> None:
        self.requests.labels(model, route, str(code)).inc()
        self.latency.labels(model, route).observe(seconds)
        if code >= 400:
            self.errors.labels(model, route, str(code)).inc()


@dataclass
class ServedModel:
    name: str
    predictor: Predictor
    batcher: MicroBatcher


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with 413 before the app reads them."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = _error(413, f"request body is larger than the limit of {self.limit} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await too_big(scope, receive, send)
            return
        # Chunked or lying clients: read (at most limit + 1 bytes) before the app does.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _unique_name(predictor: Predictor, taken: set[str]) -> str:
    for candidate in (predictor.manifest.name, predictor.bundle_dir.name):
        if candidate and candidate not in taken:
            return candidate
    raise InputError(f"{predictor.bundle_dir}: model name {predictor.manifest.name!r} is served twice")


def _decode_bytes_element(value: Any, kind: str) -> Any:
    """One element of a v2 BYTES tensor: text as is; images as base64 (or {"b64": ...})."""
    if isinstance(value, dict) and "b64" in value:
        value = value["b64"]
        kind = "image"
    if not isinstance(value, str):
        raise InputError("BYTES input elements must be strings")
    if kind == "text":
        return value
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("BYTES image input must be base64-encoded image bytes") from None


def _v2_tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    dtype = NP_TO_V2.get(arr.dtype.str, "FP32")
    if dtype == "FP32" and arr.dtype.str not in NP_TO_V2:
        arr = arr.astype(np.float32)
    return {"name": name, "datatype": dtype, "shape": list(arr.shape), "data": arr.reshape(-1).tolist()}


def create_app(
    bundles: Sequence[str | os.PathLike[str] | Predictor],
    *,
    api_keys: Sequence[str] = (),
    config: ServerConfig | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``bundles`` (directories or loaded Predictors).

    Raises:
        BundleError: when a bundle cannot be loaded.
        InputError: when no bundle is given or two share a name.
    """
    cfg = config or ServerConfig()
    if not bundles:
        raise InputError("serve: give at least one bundle directory")
    metrics = Metrics()
    keys = KeyChecker(api_keys)
    models: dict[str, ServedModel] = {}
    for b in bundles:
        predictor = b if isinstance(b, Predictor) else Predictor(b, threads=cfg.threads, spinning=False)
        name = _unique_name(predictor, set(models))
        batcher = MicroBatcher(
            predictor.run,
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.max_wait_ms,
            on_batch=lambda n, _name=name: metrics.batch_size.labels(_name).observe(n),
        )
        models[name] = ServedModel(name, predictor, batcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        for m in models.values():
            await m.batcher.start()
        yield
        # uvicorn has already waited for in-flight requests; finish anything still queued.
        await asyncio.gather(*(m.batcher.stop() for m in models.values()))

    app = FastAPI(
        title="dlforge model server",
        version=dlforge.__version__,
        description="Open Inference Protocol v2 and /v1 predict for dlforge bundles.",
        lifespan=lifespan,
    )
    app.state.models = models
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, limit=cfg.max_body_bytes)

    @app.exception_handler(DlforgeError)
    async def _dlforge_error(request: Request, exc: DlforgeError) -> JSONResponse:
        return _error(getattr(exc, "status_code", 400), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(422, f"invalid request: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    def require_key(request: Request) -> None:
        auth = request.headers.get("authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not keys.check(presented):
            metrics.observe(request.path_params.get("name", "-"), "auth", 401, 0.0)
            raise HTTPError(401, "missing or invalid API key (send 'Authorization: Bearer KEY' or 'X-API-Key')")

    def model_of(name: str) -> ServedModel:
        if name not in models:
            raise NotFoundError(f"model {name!r} is not served here; models: {', '.join(models)}")
        return models[name]

    async def tracked(name: str, route: str, work: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        code = 200
        try:
            return await work()
        except DlforgeError as exc:
            code = getattr(exc, "status_code", 400)
            raise
        except Exception:
            code = 500
            raise
        finally:
            metrics.observe(name, route, code, time.perf_counter() - start)

    def check_items(m: ServedModel, n: int) -> None:
        limit = cfg.max_items or m.predictor.max_batch
        if n == 0:
            raise InputError("request holds no inputs")
        if n > limit:
            raise BundleError(f"batch of {n} inputs is larger than allowed ({limit})")

    # -- health and metadata (open) ----------------------------------------------------------
    @app.get("/v2/health/live", tags=["health"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        ok = all(m.batcher.running for m in models.values())
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2", tags=["metadata"], dependencies=[Depends(require_key)])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "dlforge", "version": dlforge.__version__, "extensions": [], "models": list(models)}

    @app.get("/v2/models/{name}", tags=["metadata"], dependencies=[Depends(require_key)])
    async def model_metadata(name: str) -> dict[str, Any]:
        man = model_of(name).predictor.manifest

        def tensors(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {"name": t["name"], "datatype": ORT_TO_V2.get(str(t.get("dtype")), "FP32"),
                 "shape": [s if isinstance(s, int) else -1 for s in t.get("shape", [])]}
                for t in items
            ]

        return {
            "name": name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": tensors(man.inputs),
            "outputs": tensors(man.outputs),
            "parameters": {"task": man.task, "labels": man.labels, "input": man.input},
        }

    @app.get("/v2/models/{name}/ready", tags=["health"], dependencies=[Depends(require_key)])
    async def model_ready(name: str) -> dict[str, Any]:
        return {"name": name, "ready": model_of(name).batcher.running}

    # -- inference ---------------------------------------------------------------------------
    @app.post("/v2/models/{name}/infer", tags=["inference"], dependencies=[Depends(require_key)])
    async def infer_v2(name: str, request: Request) -> dict[str, Any]:
        m = model_of(name)

        async def work() -> dict[str, Any]:
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise HTTPError(415, "v2 infer takes application/json (binary tensor extension not supported)")
            with m.batcher.announce() as ticket:
                body = await _json_body(request)
                return await _infer_v2(m, body, ticket)

        return await tracked(name, "v2_infer", work)

    async def _infer_v2(m: ServedModel, body: Any, ticket: Any) -> dict[str, Any]:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise InputError("body: 'inputs' must be a non-empty list of tensors")
        man = m.predictor.manifest
        by_name: dict[str, dict[str, Any]] = {}
        for t in inputs:
            if not isinstance(t, dict) or not {"name", "datatype", "shape", "data"} <= set(t):
                raise InputError("body: every input needs name, datatype, shape and data")
            by_name[str(t["name"])] = t
        out_id = {"id": body["id"]} if "id" in body else {}
        if len(inputs) == 1 and inputs[0]["datatype"] == "BYTES":
            t = inputs[0]
            data = t["data"] if isinstance(t["data"], list) else [t["data"]]
            items = [_decode_bytes_element(v, man.input_kind) for v in _flatten(data)]
            check_items(m, len(items))
            prepared, outputs = await m.batcher.infer(lambda: m.predictor.prepare(items), ticket)
            results = m.predictor.finish(outputs, prepared.meta, top_k=int(_param(body, "top_k", 5)))
            outs = [{"name": "result", "datatype": "BYTES", "shape": [len(results)],
                     "data": [json.dumps(result_to_json(r)) for r in results]}]
            if results and isinstance(results[0], Classification):
                outs.append({"name": "label", "datatype": "BYTES", "shape": [len(results)],
                             "data": [r.label for r in results]})
                outs.append({"name": "score", "datatype": "FP32", "shape": [len(results)],
                             "data": [r.score for r in results]})
            return {"model_name": m.name, "model_version": "1", **out_id, "outputs": outs}
        missing = [n for n in man.input_names if n not in by_name]
        if missing:
            raise InputError(f"body: missing input tensor(s) {missing}; the model takes {man.input_names}")
        feeds = {n: _to_array(by_name[n]) for n in man.input_names}
        batch = {a.shape[0] if a.ndim else 0 for a in feeds.values()}
        if len(batch) != 1 or 0 in batch:
            raise InputError("body: input tensors must share a non-empty batch axis")
        n = batch.pop()
        check_items(m, n)
        _check_shapes(man.inputs, feeds)
        _, outputs = await m.batcher.infer(lambda: Prepared(feeds, [{} for _ in range(n)]), ticket)
        wanted = [o.get("name") for o in body.get("outputs", []) if isinstance(o, dict)] or list(outputs)
        return {"model_name": m.name, "model_version": "1", **out_id,
                "outputs": [_v2_tensor(k, outputs[k]) for k in wanted if k in outputs]}

    @app.post("/v1/models/{name}/predict", tags=["inference"], dependencies=[Depends(require_key)])
    async def predict_v1(name: str, request: Request, top_k: int = 5) -> dict[str, Any]:
        m = model_of(name)

        async def work() -> dict[str, Any]:
            with m.batcher.announce() as ticket:
                items = await _v1_items(m, request)
                check_items(m, len(items))
                prepared, outputs = await m.batcher.infer(lambda: m.predictor.prepare(items), ticket)
                results = m.predictor.finish(outputs, prepared.meta, top_k=top_k)
            return {"model": m.name, "task": m.predictor.task, "predictions": result_to_json(results)}

        return await tracked(name, "v1_predict", work)

    async def _v1_items(m: ServedModel, request: Request) -> list[Any]:
        ctype = request.headers.get("content-type", "")
        kind = m.predictor.manifest.input_kind
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            files = [v for _, v in form.multi_items() if hasattr(v, "read")]
            if files:
                return [await f.read() for f in files]
            texts = [v for k, v in form.multi_items() if k in ("text", "texts") and isinstance(v, str)]
            if texts and kind == "text":
                return texts
            raise InputError("multipart body holds no file (send the image as a file field)")
        if ctype.startswith("application/json"):
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise InputError("body: expected a JSON object with 'text', 'texts' or 'inputs'")
            if kind == "text" and isinstance(body.get("text"), str):
                return [body["text"]]
            raw = body.get("inputs", body.get("texts"))
            if not isinstance(raw, list):
                raise InputError("body: expected 'text' (a string) or 'inputs' (a list)")
            if kind == "image":
                return [_decode_bytes_element(v, "image") for v in raw]
            if kind == "text":
                if not all(isinstance(v, str) for v in raw):
                    raise InputError("body: 'inputs' must be a list of strings")
                return raw
            return raw
        raise HTTPError(415, f"unsupported content type {ctype or '(none)'!r}: send multipart/form-data or JSON")

    @app.get("/metrics", tags=["metrics"], dependencies=[Depends(require_key)])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"body: not valid JSON ({exc})") from None


def _param(body: dict[str, Any], key: str, default: Any) -> Any:
    params = body.get("parameters")
    return params.get(key, default) if isinstance(params, dict) else default


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else [v])
    return out


def _to_array(t: dict[str, Any]) -> np.ndarray:
    dtype = V2_DTYPES.get(str(t["datatype"]))
    if dtype is None:
        raise InputError(f"input {t['name']}: unsupported datatype {t['datatype']!r}")
    shape = t["shape"]
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise InputError(f"input {t['name']}: shape must be a list of non-negative integers")
    try:
        arr = np.asarray(t["data"], dtype=dtype)
        return arr.reshape(shape)
    except (ValueError, TypeError) as exc:
        raise InputError(f"input {t['name']}: data does not fit shape {shape} as {t['datatype']} ({exc})") from None


def _check_shapes(specs: list[dict[str, Any]], feeds: dict[str, np.ndarray]) -> None:
    for s in specs:
        arr = feeds[s["name"]]
        want = s.get("shape", [])
        if arr.ndim != len(want):
            raise InputError(f"input {s['name']}: expected {len(want)} dimensions {want}, got {list(arr.shape)}")
        for i, (w, g) in enumerate(zip(want, arr.shape)):
            if i > 0 and isinstance(w, int) and w != g:
                raise InputError(f"input {s['name']}: expected shape {want}, got {list(arr.shape)}")
        dtype = {"float32": np.float32, "int64": np.int64}.get(str(s.get("dtype")))
        if dtype is not None and arr.dtype != dtype:
            feeds[s["name"]] = arr.astype(dtype)


def serve(
    bundles: Sequence[str | os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_keys: Sequence[str] = (),
    config: ServerConfig | None = None,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
) -> None:
    """Serve ``bundles`` with uvicorn until interrupted (SIGINT/SIGTERM finish in-flight requests)."""
    import uvicorn

    app = create_app(bundles, api_keys=api_keys, config=config)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_timeout,
        access_log=False,
    )
