"""Load test of `dlforge serve` against a naive torch-per-request FastAPI baseline, same run.

Both servers run as their own processes on 127.0.0.1 and serve the same model
(dlforge's registered ``resnet18``, 10 classes, 64x64 RGB input): dlforge through a
bundle (ONNX Runtime, dynamic micro-batching), the baseline as a FastAPI endpoint
that decodes the upload and calls the torch model eagerly for each request. A
light asyncio HTTP/1.1 keep-alive load generator posts PNG digits (multipart) at concurrency 1, 16 and
64, each level bounded by time and by request count.

Targets at concurrency 16: >= 3x the baseline's throughput, zero errors, p99 <= 3x p50.

    python benchmarks/serve_load.py [--duration 8] [--max-requests 3000]

Prints one JSON line. (``--baseline-server`` is the internal entry of the baseline process.)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi import UploadFile  # module level: the endpoint annotation must resolve (postponed annotations)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build_model():  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    try:
        from dlforge.models import create_model

        model = create_model("resnet18", 10)
    except Exception:  # noqa: BLE001 - fall back to torchvision's identical architecture
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
    return model.eval()


def digit_pngs(n: int) -> list[bytes]:
    from PIL import Image
    from sklearn.datasets import load_digits

    out = []
    for im in load_digits().images[:n]:
        img = Image.fromarray((im * (255.0 / 16.0)).astype(np.uint8)).convert("RGB").resize((SIZE, SIZE))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


# -- the naive baseline server ---------------------------------------------------------------
def baseline_server(port: int, weights: str) -> None:
    import torch
    import uvicorn
    from fastapi import FastAPI
    from PIL import Image

    model = build_model()
    model.load_state_dict(torch.load(weights))
    model.eval()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    app = FastAPI()

    @app.post("/predict")
    def predict(file: UploadFile) -> dict:
        img = Image.open(io.BytesIO(file.file.read())).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = ((x - mean) / std)[None]  # (1, 3, H, W)
        with torch.no_grad():
            prob = torch.softmax(model(x), 1)[0]
        i = int(prob.argmax())
        return {"label": str(i), "score": float(prob[i])}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- load generation -----------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client on asyncio streams: the generator shares the CPU with
# the server under test, so it must cost far less per request than the server (httpx costs
# about as much as the server's own request handling and would cap the numbers it reports).
BOUNDARY = "dlforgebenchboundary"


def multipart_request(url_path: str, host: str, png: bytes) -> bytes:
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST {url_path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    await reader.readexactly(length)
    return status


async def load(url: str, payloads: list[bytes], concurrency: int, duration: float, max_requests: int) -> dict:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    requests = [multipart_request(parts.path, parts.netloc, p) for p in payloads]
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors, issued
        conn = None
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(parts.hostname, parts.port)
                ok = await _exchange(*conn, requests[issued % len(requests)]) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                ok, conn = False, None
            latencies.append(time.perf_counter() - t)
            errors += 0 if ok else 1
        if conn is not None:
            conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    lat_ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
        "mean_ms": round(float(statistics.fmean(lat_ms)), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(health, timeout=2).status_code in (200, 404, 405):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_levels(url: str, payloads: list[bytes], levels: list[int], duration: float, max_requests: int) -> dict:
    asyncio.run(load(url, payloads, 4, 2.0, 100))  # warm-up: sessions, allocators, connections
    return {str(c): asyncio.run(load(url, payloads, c, duration, max_requests)) for c in levels}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per concurrency level")
    ap.add_argument("--max-requests", type=int, default=3000, help="request cap per level")
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--weights", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.baseline_server:
        baseline_server(args.port, args.weights)
        return 0

    import torch

    from dlforge.deploy.bundle import build_bundle
    from dlforge.deploy.spec import ExportSpec, ImageInput

    levels = [int(c) for c in args.levels.split(",")]
    payloads = digit_pngs(256)
    model = build_model()  # untrained weights: throughput does not depend on them
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(model.state_dict(), weights)
        from PIL import Image

        examples = []
        for b in payloads[:16]:
            arr = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32) / 255.0
            examples.append(((arr - MEAN) / STD).transpose(2, 0, 1))
        spec = ExportSpec(
            model=model, task="image_classification", labels=[str(i) for i in range(10)],
            input=ImageInput(size=(SIZE, SIZE), mean=MEAN, std=STD),
            example_inputs=torch.from_numpy(np.stack(examples).astype(np.float32)), name="digits",
        )
        bundle = Path(tmp) / "bundle"
        build_bundle(spec, bundle)
        env_py = [sys.executable]
        results = {}
        port = free_port()
        proc = start([*env_py, "-m", "dlforge.cli.main", "serve", str(bundle), "--port", str(port),
                      "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
                     f"http://127.0.0.1:{port}/v2/health/live")
        try:
            results["dlforge"] = run_levels(f"http://127.0.0.1:{port}/v1/models/digits/predict", payloads, levels,
                                            args.duration, args.max_requests)
        finally:
            stop(proc)
        port = free_port()
        proc = start([*env_py, str(Path(__file__).resolve()), "--baseline-server", "--port", str(port),
                      "--weights", str(weights)], f"http://127.0.0.1:{port}/docs")
        try:
            results["baseline_torch_eager"] = run_levels(f"http://127.0.0.1:{port}/predict", payloads, levels,
                                                         args.duration, args.max_requests)
        finally:
            stop(proc)
    d16, b16 = results["dlforge"].get("16"), results["baseline_torch_eager"].get("16")
    out = {
        "benchmark": "serve_load",
        "model": f"resnet18 (11M params) @ {SIZE}x{SIZE}, 10 classes, multipart PNG uploads",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "settings": {"duration_s": args.duration, "max_requests": args.max_requests,
                     "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms},
        "results": results,
    }
    if d16 and b16:
        speedup = d16["rps"] / max(b16["rps"], 1e-9)
        out["speedup_c16"] = round(speedup, 2)
        out["targets"] = {
            "c16_throughput>=3x_baseline": speedup >= 3.0,
            "c16_zero_errors": d16["errors"] == 0,
            "c16_p99<=3x_p50": d16["p99_ms"] <= 3 * d16["p50_ms"],
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
