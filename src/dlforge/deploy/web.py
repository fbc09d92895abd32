"""Web packages: a static folder that runs a bundle in the browser with onnxruntime-web (wasm).

The folder holds ``index.html``, ``app.js``, the bundle (``manifest.json``,
``model.onnx``, ``tokenizer.json`` for text) and the onnxruntime-web runtime
files. Nothing is fetched from the network at run time: the runtime comes from
``node_modules`` installed by ``npm ci`` from the pinned ``package.json`` +
``package-lock.json`` in ``web_app/`` at export time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from dlforge.deploy.bundle import build_bundle
from dlforge.deploy.spec import ExportSpec, TextInput
from dlforge.errors import ConflictError, DlforgeError, InputError

WEB_APP = Path(__file__).with_name("web_app")
ORT_DIST = WEB_APP / "node_modules" / "onnxruntime-web" / "dist"
# The wasm-only build and the single wasm binary (+ its loader) it loads; the page
# runs single-threaded, so no worker or SharedArrayBuffer is needed.
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
APP_FILES = ("index.html", "app.js")
# What app.js's tokenizer.json reader implements (keep in step with it).
BROWSER_TOKENIZER = {
    "model": {"WordLevel", "WordPiece"},
    "normalizer": {"Sequence", "NFKC", "NFC", "NFD", "NFKD", "Lowercase", "Strip"},
    "pre_tokenizer": {"Sequence", "WhitespaceSplit", "Whitespace", "BertPreTokenizer", "Split"},
}


def check_browser_tokenizer(tokenizer: Any) -> None:
    """Refuse, before any work, a tokenizer the page could not reproduce.

    Raises:
        InputError: naming the first unsupported part (e.g. e5-small's SentencePiece Unigram).
    """
    import json

    config = json.loads(tokenizer.to_str())
    for part, allowed in BROWSER_TOKENIZER.items():
        stack = [config.get(part)]
        while stack:
            node = stack.pop()
            if not node:
                continue
            if node.get("type") not in allowed:
                raise InputError(
                    f"tokenizer.json: {part} {node.get('type')} is not supported by the browser bundle's tokenizer "
                    "reader; export --format bundle or edge for this model"
                )
            stack += node.get("normalizers", []) + node.get("pretokenizers", [])


def ensure_runtime(app_dir: Path = WEB_APP) -> Path:
    """The onnxruntime-web ``dist`` folder, running ``npm ci`` first when it is missing.

    Raises:
        DlforgeError: when npm is not installed or ``npm ci`` fails.
    """
    dist = app_dir / "node_modules" / "onnxruntime-web" / "dist"
    if all((dist / f).is_file() for f in RUNTIME_FILES):
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise DlforgeError(
            "web export needs npm to install onnxruntime-web (apt-get install npm, or install Node.js)"
        )
    proc = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 or not all((dist / f).is_file() for f in RUNTIME_FILES):
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DlforgeError(f"{app_dir}: 'npm ci' failed to install onnxruntime-web: {last[0]}")
    return dist


def copy_app(bundle_dir: Path, dist: Path) -> None:
    """Copy the page and the runtime files into a bundle directory."""
    for name in APP_FILES:
        shutil.copyfile(WEB_APP / name, bundle_dir / name)
    for name in RUNTIME_FILES:
        shutil.copyfile(dist / name, bundle_dir / name)


def build_web_package(
    spec: ExportSpec,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    parity_atol: float = 1e-3,
) -> dict[str, Any]:
    """Write a static web folder for ``spec`` to ``out``.

    Serve it with any static server (``python -m http.server -d OUT``) and open
    ``index.html``; the model runs in the page with WebAssembly, offline.

    Returns:
        A JSON-ready summary: path, parity, files and total size.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConflictError(f"{out}: already exists (pass overwrite=True to replace it)")
    if isinstance(spec.input, TextInput):
        check_browser_tokenizer(spec.input.tokenizer)
    dist = ensure_runtime()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        staged = tmp / "web"
        info = build_bundle(spec, staged, parity_atol=parity_atol)
        copy_app(staged, dist)
        files = sorted(p.name for p in staged.iterdir())
        size = sum((staged / f).stat().st_size for f in files)
        if out.exists():
            old = tmp / "old"
            os.replace(out, old)
        os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "path": str(out),
        "task": spec.task,
        "name": spec.name,
        "parity": info.parity,
        "files": files,
        "size_bytes": size,
        "open": f"python -m http.server 8000 -d {out}  # then http://127.0.0.1:8000/",
    }
