"""Image and text classification recipes end to end: train -> held-out accuracy -> resume/errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlforge.errors import ConflictError, InputError
from dlforge.workspace import Workspace


@pytest.fixture
def digits_version(ws: Workspace, tmp_path):
    """A 600-image stratified subset of sklearn digits, split 70/15/15."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(d.target))[:600]
    root = tmp_path / "digits"
    for i in idx:
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    v = ws.import_data(root, "digits").version
    return v.split(val=0.15, test=0.15, seed=0)


def test_image_classifier_beats_threshold_on_held_out_digits(ws: Workspace, digits_version, tmp_path) -> None:
    from dlforge.tasks import image_classification as ic

    run = ic.train(ws, digits_version.ref, model="cnn-small", epochs=6, image_size=16, hflip=False, lr=3e-3,
                   batch_size=32, seed=0)
    info = run.info()
    assert info.status == "completed" and info.summary["best_epoch"] >= 1
    metrics = ic.evaluate_run(run, "test", tmp_path / "report.html")
    assert metrics["accuracy"] >= 0.85, metrics["accuracy"]
    assert len(metrics["confusion_matrix"]) == 10
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "Worst mistakes" in html or metrics["accuracy"] == 1.0
    assert {"train/loss", "val/accuracy"} <= set(run.history())
    with pytest.raises(ConflictError, match="already finished"):
        ic.resume(ws, run)


def test_bad_training_requests_fail_before_any_work(ws: Workspace, digits_version) -> None:
    from dlforge.tasks import image_classification as ic

    with pytest.raises(InputError, match="unknown model"):
        ic.train(ws, digits_version.ref, model="no-such-net")
    with pytest.raises(InputError, match="unknown parameter 'lrr'"):
        ic.train(ws, digits_version.ref, lrr=0.1)
    unsplit = ws.version("digits@1")
    with pytest.raises(InputError, match="no train split"):
        ic.train(ws, unsplit.ref)
    with pytest.raises(InputError, match="text_classification"):
        from dlforge.tasks import text_classification as tc

        tc.train(ws, digits_version.ref)
    assert ws.runs() == []  # nothing was started


def test_text_classifier_learns_chinese_sentiment(ws: Workspace, tmp_path) -> None:
    from dlforge.tasks import text_classification as tc

    rng = np.random.default_rng(0)
    pos = ["好吃", "很快", "满意", "推荐", "新鲜", "热情"]
    neg = ["难吃", "太慢", "失望", "差评", "冷了", "态度差"]
    filler = ["这家", "外卖", "今天", "味道", "送餐", "老板", "米饭", "真的"]
    rows = ["label,review"]
    for i in range(400):
        label = i % 2
        words = list(rng.choice(filler, 3)) + [rng.choice(pos if label else neg)]
        rng.shuffle(words)
        rows.append(f"{label},{''.join(words)}{i}")
    (tmp_path / "reviews.csv").write_text("\n".join(rows), encoding="utf-8")
    v = ws.import_data(tmp_path / "reviews.csv", "reviews").version
    assert v.task == "text_classification"
    v = v.split(val=0.2, test=0.2, seed=0)
    run = tc.train(ws, v.ref, model="textcnn", epochs=4, seed=0, max_len=24)
    metrics = tc.evaluate_run(run, "test")
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]
    base = tc.train(ws, v.ref, model="tfidf-linear")
    assert tc.evaluate_run(base, "test")["accuracy"] >= 0.9


def test_text_run_exports_a_bundle_the_sdk_agrees_with(ws: Workspace, tmp_path) -> None:
    from dlforge.deploy import Predictor
    from dlforge.deploy.export import export_run
    from dlforge.tasks import text_classification as tc

    rows = ["label,review"] + [f"{i % 2},{'好吃推荐' if i % 2 else '难吃差评'}第{i}次" for i in range(120)]
    (tmp_path / "r.csv").write_text("\n".join(rows), encoding="utf-8")
    v = ws.import_data(tmp_path / "r.csv", "r").version.split(val=0.2, test=0.2, seed=0)
    run = tc.train(ws, v.ref, model="bilstm", epochs=2, seed=0, max_len=16)
    info = export_run(ws, run.id, "bundle", tmp_path / "bundle")
    assert info["parity"]["max_abs_diff"] < 1e-3
    texts = [r.read_text() for r in v.records(split="test")]
    torch_labels = [run.manifest()["classes"][i] for i in tc.run_probs(run, texts).argmax(1)]
    sdk_labels = [p.label for p in Predictor(tmp_path / "bundle").predict(texts)]
    assert sdk_labels == torch_labels
