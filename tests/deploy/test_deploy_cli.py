"""`dlforge export / predict / serve` as subprocesses: JSON on stdout, one-line errors, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

DLFORGE = [sys.executable, "-m", "dlforge.cli.main"]


def cli(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*DLFORGE, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str, Path]:
    from dlforge.quickstart import quickstart
    from dlforge.workspace import Workspace

    home = tmp_path_factory.mktemp("ws")
    ws = Workspace.open(home=home)
    result = quickstart(ws, epochs=1, export=False, log=lambda s: None)
    env = {**os.environ, "DLFORGE_HOME": str(home)}
    return env, result["run"], home


@pytest.mark.slow
def test_export_run_from_task_recipe(trained, tmp_path: Path) -> None:
    env, run, _ = trained
    proc = cli(["export", run, "--format", "bundle", "--out", str(tmp_path / "b"), "--json"], env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run"] == run and out["parity"]["passed"] and "model.onnx" in out["files"]
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["run_id"] == run and manifest["data_version"].startswith("digits@")
    proc = cli(["export", run, "--format", "bundle", "--out", str(tmp_path / "b")], env)
    assert proc.returncode != 0 and proc.stdout == "" and "already exists" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_predict_cli_json_skips_bad_inputs(image_bundle: Path, digit_pngs, tmp_path: Path) -> None:
    env = dict(os.environ)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    args = ["predict", str(image_bundle), str(digit_pngs[0]), str(bad), "--json", "--draw", str(tmp_path / "drawn")]
    proc = cli(args, env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    from dlforge.deploy import Predictor

    assert [p["label"] for p in res["predictions"]] == [Predictor(image_bundle).predict(digit_pngs[0]).label]
    assert res["skipped"][0]["input"] == str(bad) and "cannot decode" in res["skipped"][0]["error"]
    assert Path(res["predictions"][0]["drawn"]).is_file()
    proc = cli(["predict", str(tmp_path / "missing"), str(digit_pngs[0]), "--json"], env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "does not exist" in proc.stderr


def test_serve_cli_with_keys_file_and_sigterm(image_bundle: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key per line\nk-file\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*DLFORGE, "serve", str(image_bundle), "--port", str(port), "--keys-file", str(keys), "--api-key", "k-arg"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.2)
        png = tmp_path / "x.png"
        Image.new("RGB", (8, 8), (255, 255, 255)).save(png)
        files = {"file": ("x.png", png.read_bytes(), "image/png")}
        assert httpx.post(f"{url}/v1/models/digits/predict", files=files).status_code == 401
        for key in ("k-file", "k-arg"):
            r = httpx.post(f"{url}/v1/models/digits/predict", files=files, headers={"X-API-Key": key})
            assert r.status_code == 200 and r.json()["predictions"][0]["label"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in proc.stderr.read()
