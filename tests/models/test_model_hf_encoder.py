"""``hf-encoder``: fine-tuning a local Hugging Face encoder directory, offline, end to end.

A tiny BERT (2 layers, 32 wide) with a WordPiece vocabulary is written to a directory the
way ``save_pretrained`` does; the tests check that its weights are what the model starts
from, that a run trains on it to a held-out threshold, and that the run no longer needs
the directory once trained (evaluation and ONNX export rebuild it from the recorded config).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from dlforge.errors import InputError, NotFoundError  # noqa: E402
from dlforge.models import create_model  # noqa: E402
from dlforge.models.text_classifiers import encoder_tokenizer  # noqa: E402
from dlforge.workspace import Workspace  # noqa: E402

POS = ["好吃", "很快", "满意", "推荐", "新鲜", "热情"]
NEG = ["难吃", "太慢", "失望", "差评", "冷了", "态度差"]
FILLER = ["这家", "外卖", "今天", "味道", "送餐", "老板", "米饭", "真的"]


def _reviews(n: int, seed: int) -> list[tuple[int, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        words = [*rng.choice(FILLER, 3), rng.choice(POS if label else NEG)]
        rng.shuffle(words)
        out.append((label, "".join(words)))
    return out


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT checkpoint directory: config.json, model.safetensors, vocab.txt (Chinese chars)."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-bert")
    chars = sorted({c for _, t in _reviews(200, 0) for c in t})
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
    config = BertConfig(
        vocab_size=5 + len(chars),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root)
    return root


def test_the_model_starts_from_the_directory_weights(encoder_dir: Path) -> None:
    from transformers import BertModel

    saved = BertModel.from_pretrained(encoder_dir).state_dict()
    model = create_model("hf-encoder", 2, path=str(encoder_dir))
    mine = model.encoder.state_dict()
    assert mine.keys() <= saved.keys() and len(mine) > 20
    assert all(torch.equal(mine[k], saved[k]) for k in mine)
    with pytest.raises(InputError, match="max_len"):
        create_model("hf-encoder", 2, path=str(encoder_dir), max_len=100)


def test_vocab_txt_gives_bert_wordpiece_ids(encoder_dir: Path) -> None:
    tok = encoder_tokenizer(encoder_dir)
    vocab = (encoder_dir / "vocab.txt").read_text().split("\n")
    enc = tok.encode("好吃 推荐")
    assert enc.tokens == ["[CLS]", "好", "吃", "推", "荐", "[SEP]"]  # BERT splits CJK per character
    assert enc.ids == [vocab.index(t) for t in enc.tokens]
    with pytest.raises(NotFoundError, match="tokenizer.json or vocab.txt"):
        encoder_tokenizer(encoder_dir.parent)


def test_a_run_fine_tunes_it_and_no_longer_needs_the_directory(
    ws: Workspace, encoder_dir: Path, tmp_path: Path
) -> None:
    from dlforge.deploy.export import export_run
    from dlforge.tasks import text_classification as tc

    rows = ["label,review"] + [f"{label},{text}" for label, text in _reviews(300, 1)]
    (tmp_path / "r.csv").write_text("\n".join(rows), encoding="utf-8")
    v = ws.import_data(tmp_path / "r.csv", "r").version.split(val=0.2, test=0.2, seed=0)
    with pytest.raises(InputError, match="encoder_path"):
        tc.train(ws, v.ref, model="hf-encoder")
    assert ws.runs() == []

    own = tmp_path / "encoder"  # a copy we can delete after training
    shutil.copytree(encoder_dir, own)
    torch.set_num_threads(1)
    run = tc.train(
        ws, v.ref, model="hf-encoder", encoder_path=str(own), epochs=8, lr=3e-3, batch_size=16, seed=0, max_len=16
    )
    accuracy = tc.evaluate_run(run, "test")["accuracy"]
    assert accuracy >= 0.9, accuracy

    shutil.rmtree(own)
    assert tc.evaluate_run(run, "test")["accuracy"] == accuracy
    info = export_run(ws, run.id, "bundle", tmp_path / "bundle")
    assert info["parity"]["max_abs_diff"] < 1e-3


def test_an_interrupted_run_resumes_without_the_directory(ws: Workspace, encoder_dir: Path, tmp_path: Path) -> None:
    from dlforge.tasks import text_classification as tc

    rows = ["label,review"] + [f"{label},{text}" for label, text in _reviews(60, 2)]
    (tmp_path / "r.csv").write_text("\n".join(rows), encoding="utf-8")
    v = ws.import_data(tmp_path / "r.csv", "r").version.split(val=0.2, test=0.2, seed=0)
    own = tmp_path / "encoder"
    shutil.copytree(encoder_dir, own)

    def killed_in_second_epoch(epoch: int, *_: object) -> None:
        if epoch == 2:  # progress of a step of epoch 2: last.pt of epoch 1 is on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tc.train(
            ws, v.ref, model="hf-encoder", encoder_path=str(own), epochs=2, seed=0, max_len=16,
            progress=killed_in_second_epoch,
        )
    (run,) = ws.runs()
    assert run.info().status == "stopped"
    shutil.rmtree(own)
    resumed = tc.resume(ws, run)
    assert resumed.info().status == "completed" and resumed.info().summary["epochs_done"] == 2
