"""Bundle export with parity checks, and the Predictor SDK against torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import IMAGE_SIZE, encode, image_spec
from PIL import Image

from dlforge.deploy import BundleError, Classification, Predictor
from dlforge.deploy.bundle import build_bundle, export_onnx_file
from dlforge.errors import ConflictError, InputError


def test_bundle_manifest_records_parity_and_spec(image_bundle: Path, digits: dict) -> None:
    manifest = json.loads((image_bundle / "manifest.json").read_text())
    assert manifest["format"] == "dlforge.bundle" and manifest["format_version"] == 1
    assert manifest["task"] == "image_classification"
    assert manifest["labels"] == digits["classes"]
    assert manifest["input"]["size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["max_abs_diff"] < 1e-3
    assert manifest["parity"]["label_agreement"] == 1.0
    assert manifest["parity"]["samples"] == 32
    assert manifest["inputs"][0]["shape"][0] not in (1, 32)  # dynamic batch axis
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["data_version"] == "digits@1" and manifest["run_id"] == "test-run"
    assert sorted(os.listdir(image_bundle)) == ["manifest.json", "model.onnx"]
    assert digits["val_acc"] > 0.8  # the tiny model really learned


def test_predictor_equals_torch_on_files_bytes_arrays_and_pil(image_bundle: Path, digits: dict, digit_pngs) -> None:
    pred = Predictor(image_bundle, threads=1)
    results = pred.predict([str(p) for p in digit_pngs], top_k=3)
    idx = digits["val_idx"][:8]
    with torch.no_grad():
        probs = torch.softmax(digits["model"](digits["x"][idx]), 1).numpy()
    assert [r.label for r in results] == [str(i) for i in probs.argmax(1)]
    np.testing.assert_allclose([r.score for r in results], probs.max(1), atol=1e-4)
    assert all(len(r.top_k) == 3 and r.top_k[0][0] == r.label for r in results)
    # Every input kind gives the same answer for the same picture.
    one = digit_pngs[0]
    as_bytes = pred.predict(one.read_bytes())
    as_pil = pred.predict(Image.open(one))
    as_array = pred.predict(np.asarray(Image.open(one)))
    as_path = pred.predict(one)
    assert isinstance(as_path, Classification)
    assert as_bytes.label == as_pil.label == as_array.label == as_path.label == results[0].label
    stack = pred.predict(np.stack([np.asarray(Image.open(p)) for p in digit_pngs[:3]]))
    assert [r.label for r in stack] == [r.label for r in results[:3]]


def test_predictor_resizes_other_sizes(image_bundle: Path, digit_pngs) -> None:
    pred = Predictor(image_bundle)
    img = Image.open(digit_pngs[1])
    big = img.resize((96, 96), Image.NEAREST)
    assert pred.predict(big).label == pred.predict(img).label


def test_text_bundle_predictor_equals_torch(text_bundle: Path, text_model: dict) -> None:
    assert (text_bundle / "tokenizer.json").is_file()
    pred = Predictor(text_bundle)
    texts = text_model["val_texts"]
    results = pred.predict(texts)
    ids, mask = encode(text_model["tok"], texts)
    with torch.no_grad():
        ref = torch.softmax(text_model["model"](ids, mask), 1).numpy()
    assert [r.label for r in results] == [["negative", "positive"][i] for i in ref.argmax(1)]
    np.testing.assert_allclose([r.score for r in results], ref.max(1), atol=1e-4)
    acc = np.mean([r.label == ["negative", "positive"][y] for r, y in zip(results, text_model["val_labels"])])
    assert acc > 0.8
    assert pred.predict("what a great and nice film").label == "positive"
    with pytest.raises(BundleError, match="too long"):
        pred.predict("x" * 501)


def test_bad_inputs_raise_bundle_error(image_bundle: Path, tmp_path: Path) -> None:
    pred = Predictor(image_bundle, max_batch=4)
    with pytest.raises(BundleError, match="cannot decode image"):
        pred.predict(b"definitely not a png")
    with pytest.raises(BundleError, match="not found"):
        pred.predict(tmp_path / "missing.png")
    with pytest.raises(BundleError, match="larger than allowed"):
        pred.predict([np.zeros((8, 8), np.uint8)] * 5)
    assert issubclass(BundleError, InputError.__mro__[1])  # a DlforgeError


def test_corrupt_and_foreign_bundles(image_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Predictor(tmp_path / "nope")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(BundleError, match="not a dlforge bundle"):
        Predictor(foreign)
    future = tmp_path / "future"
    future.mkdir()
    data = json.loads((image_bundle / "manifest.json").read_text())
    data["format_version"] = 99
    (future / "manifest.json").write_text(json.dumps(data))
    (future / "model.onnx").write_bytes((image_bundle / "model.onnx").read_bytes())
    with pytest.raises(BundleError, match="unknown bundle format_version 99"):
        Predictor(future)
    broken = tmp_path / "broken"
    broken.mkdir()
    data["format_version"] = 1
    (broken / "manifest.json").write_text(json.dumps(data))
    (broken / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(BundleError, match="cannot load ONNX model"):
        Predictor(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Predictor(broken)


class Noisy(torch.nn.Module):
    """Adds fresh random noise at every call: ONNX cannot reproduce torch's numbers."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out + 50.0 * torch.rand_like(out)


def test_export_refused_when_parity_fails(digits: dict, tmp_path: Path) -> None:
    spec = image_spec(digits)
    spec.model = Noisy(digits["model"])
    out = tmp_path / "refused"
    with pytest.raises(InputError, match=r"parity check failed .*max abs diff .*label agreement"):
        build_bundle(spec, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp dirs left behind


def test_onnx_format_and_existing_destination(digits: dict, image_bundle: Path, tmp_path: Path) -> None:
    info = export_onnx_file(image_spec(digits), tmp_path / "m.onnx")
    assert info.path.is_file() and info.parity["passed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    with pytest.raises(ConflictError):
        build_bundle(image_spec(digits), image_bundle)


def test_predictor_does_not_import_torch(image_bundle: Path, text_bundle: Path, digit_pngs) -> None:
    code = textwrap.dedent(
        """
        import sys, json
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
                    raise ImportError(f"blocked: {name}")
                return None
        sys.meta_path.insert(0, Block())
        from dlforge.deploy import Predictor
        img = Predictor(sys.argv[1]).predict(sys.argv[3])
        txt = Predictor(sys.argv[2]).predict("a great and happy film")
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print(json.dumps({"image": img.label, "text": txt.label}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(image_bundle), str(text_bundle), str(digit_pngs[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["image"] == Predictor(image_bundle).predict(digit_pngs[0]).label
    assert out["text"] == "positive"


def test_overwrite_replaces_bundle_atomically(digits: dict, tmp_path: Path) -> None:
    first = build_bundle(image_spec(digits), tmp_path / "b")
    (tmp_path / "b" / "stale.txt").write_text("old")
    second = build_bundle(image_spec(digits), tmp_path / "b", overwrite=True)
    assert second.files == first.files == ["manifest.json", "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp or old directories left
    assert not (tmp_path / "b" / "stale.txt").exists()


def test_tokenizers_the_page_cannot_read_are_refused_before_export(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from dlforge.data.tokenize import train_tokenizer
    from dlforge.deploy.web import check_browser_tokenizer
    from dlforge.errors import InputError

    texts = ["送餐很快，味道不错", "the food was cold"]
    for kind in ("char", "wordpiece"):  # what dlforge trains: the page reads these
        check_browser_tokenizer(train_tokenizer(texts, kind=kind, vocab_size=200, min_freq=1))
    unigram = Tokenizer(models.Unigram([("[PAD]", 0.0), ("<unk>", 0.0), ("▁好", -1.0)], unk_id=1))
    unigram.normalizer = normalizers.Sequence([normalizers.NFKC()])
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(InputError, match="model Unigram"):
        check_browser_tokenizer(unigram)
    wordpiece = train_tokenizer(texts, kind="wordpiece", vocab_size=200, min_freq=1)
    wordpiece.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Prepend("query: ")])
    with pytest.raises(InputError, match="normalizer Prepend"):
        check_browser_tokenizer(wordpiece)
