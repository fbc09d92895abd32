"""Edge package: int8 quantization, accuracy in the manifest, and the standalone run.py."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from deploy_helpers import image_spec

from dlforge.deploy import Predictor
from dlforge.deploy.edge import build_edge_package

# Runs run.py with torch, torchvision and dlforge made unimportable: it must need none of them.
BLOCKED_RUN = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "dlforge"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def edge_dir(digits: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("edge")
    summary = build_edge_package(image_spec(digits), root / "digits-edge")
    zpath = Path(summary["path"])
    assert zpath.name == "digits-edge.zip" and zpath.is_file()
    unpacked = root / "unpacked"
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(unpacked)
    return unpacked, summary


def test_edge_zip_holds_both_models_and_accuracy(edge_dir: tuple[Path, dict], digits: dict) -> None:
    unpacked, summary = edge_dir
    names = sorted(p.name for p in unpacked.iterdir())
    assert names == ["README.md", "manifest.json", "model.int8.onnx", "model.onnx", "run.py"]
    manifest = json.loads((unpacked / "manifest.json").read_text())
    edge = manifest["edge"]
    assert manifest["files"]["model_int8"] == "model.int8.onnx"
    assert edge["validation_samples"] == len(digits["val_idx"])
    assert abs(edge["fp32_accuracy"] - digits["val_acc"]) < 1e-6  # the same model, the same samples
    assert edge["int8_accuracy"] >= edge["fp32_accuracy"] - 0.03
    assert edge["int8_agreement"] > 0.95
    assert summary["accuracy"] == {k: edge[k] for k in summary["accuracy"]}
    assert "fp32" in (unpacked / "README.md").read_text()


def test_run_py_matches_predictor_without_torch_or_dlforge(edge_dir: tuple[Path, dict], digit_pngs) -> None:
    unpacked, _ = edge_dir
    args = [sys.executable, "-c", BLOCKED_RUN, str(unpacked / "run.py"), *map(str, digit_pngs[:4]), "--json"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=unpacked)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["predictions"]
    sdk = Predictor(unpacked).predict([str(p) for p in digit_pngs[:4]])
    assert [o["label"] for o in out] == [r.label for r in sdk]
    assert all(abs(o["score"] - r.score) < 1e-5 for o, r in zip(out, sdk))
    # The int8 model runs the same way and mostly agrees with the SDK's int8 predictor.
    proc = subprocess.run([*args, "--int8"], capture_output=True, text=True, timeout=60, cwd=unpacked)
    assert proc.returncode == 0, proc.stderr
    int8 = json.loads(proc.stdout)
    assert int8["model"] == "model.int8.onnx"
    sdk8 = Predictor(unpacked, int8=True).predict([str(p) for p in digit_pngs[:4]])
    assert [o["label"] for o in int8["predictions"]] == [r.label for r in sdk8]
