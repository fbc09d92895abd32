"""The wide & deep ``ngram-bilstm`` text model: it learns what only n-grams tell, and deploys.

Labels below depend on a bigram (negation "不好" vs "好"), so a model that ignores character
order and pairs cannot separate them; the bundle test checks that the ONNX model, fed by
the unchanged saved tokenizer, reproduces the in-model n-gram hashing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlforge.errors import InputError
from dlforge.models import create_model
from dlforge.workspace import Workspace

FILLER = ["这家", "外卖", "今天", "味道", "送餐", "老板", "米饭", "真的", "感觉", "菜品"]
ASPECT = ["吃", "看", "用", "闻"]


def _negation_rows(n: int, seed: int) -> list[str]:
    """CSV rows whose label is 1 for "...好X..." and 0 for "...不好X...": the same characters
    (a filler text always contains a "不" elsewhere), only the bigram "不好" differs."""
    rng = np.random.default_rng(seed)
    rows = ["label,review"]
    for i in range(n):
        label = i % 2
        core = ("好" if label else "不好") + str(rng.choice(ASPECT))
        words = [*rng.choice(FILLER, 3), core, "不错" if rng.random() < 0.5 else "不多"]
        rng.shuffle(words)
        rows.append(f"{label},{''.join(words)}")
    return rows


@pytest.fixture
def negation_version(ws: Workspace, tmp_path):
    (tmp_path / "neg.csv").write_text("\n".join(_negation_rows(360, 0)), encoding="utf-8")
    return ws.import_data(tmp_path / "neg.csv", "neg").version.split(val=0.2, test=0.2, seed=0)


def test_ngram_bilstm_learns_negation_and_deploys_with_the_same_ngrams(ws, negation_version, tmp_path) -> None:
    from dlforge.deploy import Predictor
    from dlforge.deploy.export import export_run
    from dlforge.tasks import text_classification as tc

    torch.set_num_threads(1)
    run = tc.train(ws, negation_version.ref, model="ngram-bilstm", epochs=6, seed=0, max_len=24, lr=3e-3)
    kwargs = run.manifest()["model_kwargs"]
    assert "dropout" not in kwargs  # no dropout given: the model's own default is used
    assert tc.evaluate_run(run, "test")["accuracy"] >= 0.9

    info = export_run(ws, run.id, "bundle", tmp_path / "bundle")
    assert info["parity"]["max_abs_diff"] < 1e-3
    texts = [r.read_text() for r in negation_version.records(split="test")][:48]  # SDK batch limit 64
    torch_probs = tc.run_probs(run, texts)
    sdk = Predictor(tmp_path / "bundle").predict(texts)
    assert [p.label for p in sdk] == [run.manifest()["classes"][i] for i in torch_probs.argmax(1)]


def test_wide_part_alone_is_a_linear_ngram_model_and_logits_ignore_padding() -> None:
    torch.manual_seed(0)
    model = create_model(
        "ngram-bilstm", 2, vocab_size=50, wide_buckets=1024, buckets=512, conv_widths=[2, 3]
    ).eval()
    ids = torch.tensor([[2, 7, 8, 9, 0, 0, 0, 0]])
    with torch.no_grad():
        short, padded = model(ids[:, :4]), model(ids)
        # explicit attention_mask and id-0 padding mean the same thing
        masked = model(torch.tensor([[2, 7, 8, 9, 5, 5, 5, 5]]), (ids != 0).long())
    torch.testing.assert_close(short, padded)
    torch.testing.assert_close(masked, padded)
    # with zero deep weights removed, wide logits are a sum over the 4+3+2 real 1/2/3-grams
    wide = create_model("ngram-bilstm", 2, vocab_size=50, wide_buckets=1024, ngrams=[], wide_scale=1.0).eval()
    with torch.no_grad():
        wide.wide.weight.fill_(1.0)
        assert float(wide._wide_logits(ids)[0, 0]) == pytest.approx(9 / 3.0)


def test_bad_ngram_arguments_are_one_line_input_errors() -> None:
    with pytest.raises(InputError, match="wide_ngrams"):
        create_model("ngram-bilstm", 2, vocab_size=50, wide_ngrams=[0])
    with pytest.raises(InputError, match="buckets"):
        create_model("ngram-bilstm", 2, vocab_size=50, buckets=1)
    with pytest.raises(InputError, match="gram_dropout"):
        create_model("ngram-bilstm", 2, vocab_size=50, gram_dropout=1.0)


def test_fine_tuning_from_a_text_run_keeps_its_vocabulary(ws, negation_version, tmp_path) -> None:
    """A run started from another text run's weights tokenizes with that run's vocabulary.

    The second data set leads with characters the first never saw, so a vocabulary learned
    afresh would give every character another id and scramble the loaded embeddings and
    n-gram hashes. With an almost-zero learning rate the second run is the first model
    unchanged, so it must classify the first run's test texts as well as the first did.
    """
    from dlforge.tasks import text_classification as tc

    torch.set_num_threads(1)
    source = tc.train(ws, negation_version.ref, model="ngram-bilstm", epochs=6, seed=0, max_len=24, lr=3e-3)
    rows = _negation_rows(200, 1)
    shifted = [rows[0], *(f"{r[:2]}哈哈嘿嘿呵呵{r[2:]}" for r in rows[1:])]
    (tmp_path / "shifted.csv").write_text("\n".join(shifted), encoding="utf-8")
    other = ws.import_data(tmp_path / "shifted.csv", "shifted").version.split(val=0.2, test=0.2, seed=0)
    tuned = tc.train(ws, other.ref, model="ngram-bilstm", epochs=1, seed=0, weights=source.id, lr=1e-9)

    assert (tuned.dir / "tokenizer.json").read_text() == (source.dir / "tokenizer.json").read_text()
    texts = [r.read_text() for r in negation_version.records(split="test")]
    truth = [r.labels()[0] for r in negation_version.records(split="test")]
    classes = tuned.manifest()["classes"]
    predicted = [classes[i] for i in tc.run_probs(tuned, texts).argmax(1)]
    assert np.mean([p == t for p, t in zip(predicted, truth)]) >= 0.9
