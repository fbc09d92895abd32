"""Tokenizers: training on Chinese and English, fixed-length batches, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlforge.data.tokenize import (
    SPECIAL_TOKENS,
    TOKENIZER_KINDS,
    configure_length,
    encode_batch,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from dlforge.errors import InputError, NotFoundError

ZH = ["我很喜欢这部电影", "这家餐厅的服务太差了", "质量很好，物流也快", "完全不值这个价钱", "电影很好看"]
EN = ["I really loved this movie!", "The service was terrible.", "Great quality, fast", "Not worth it"]


def test_char_tokenizer_splits_every_character_and_reserves_specials() -> None:
    tok = train_tokenizer(ZH + EN, kind="char", vocab_size=500)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    enc = tok.encode("我喜欢 LOVED ")
    # NFKC + lowercase, CJK and latin both split per character, a whitespace run is one
    # token (ends stripped), [CLS] first.
    assert enc.tokens == ["[CLS]", "我", "喜", "欢", " ", "l", "o", "v", "e", "d"]
    assert tok.decode(tok.encode("loved this").ids) == "loved this"
    # A character never seen in training maps to [UNK].
    assert tok.encode("鑫").ids == [2, 1]
    # NFKC folds full-width latin to ASCII.
    assert tok.encode("ＬＯ").tokens == ["[CLS]", "l", "o"]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_encode_batch_shapes_padding_and_round_trip(kind: str, tmp_path) -> None:
    tok = train_tokenizer(ZH + EN, kind=kind, vocab_size=300)
    texts = ["我喜欢这个电影 loved it", "x", "the service was terrible and the food was cold too"]
    ids, mask = encode_batch(tok, texts, max_len=10)
    assert ids.shape == mask.shape == (3, 10)
    assert ids.dtype == mask.dtype == np.int64
    assert (ids[:, 0] == 2).all()  # [CLS]
    assert (ids[mask == 0] == 0).all()  # [PAD] where masked
    assert mask[1].sum() == 2  # [CLS] + one token
    assert mask[2].sum() == 10  # truncated
    path = save_tokenizer(tok, tmp_path / "sub" / "tokenizer.json")
    loaded = load_tokenizer(path)
    # Padding and truncation travel in the file: no max_len needed after loading.
    ids2, mask2 = encode_batch(loaded, texts)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(mask, mask2)
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp files left


def test_subword_tokenizers_keep_frequent_english_words_whole() -> None:
    corpus = ["the movie was good"] * 20 + ["the food was bad"] * 20 + ["我很喜欢"] * 5
    for kind in ("wordpiece", "bpe"):
        tok = train_tokenizer(corpus, kind=kind, vocab_size=200, min_freq=2)
        assert tok.encode("The movie was bad").tokens == ["[CLS]", "the", "movie", "was", "bad"]
        assert tok.encode("很喜欢").tokens == ["[CLS]", "很", "喜", "欢"]


def test_min_freq_and_vocab_size_limit_the_vocabulary() -> None:
    corpus = ["aaaaa bbbb cc d"]
    tok = train_tokenizer(corpus, kind="char", vocab_size=100, min_freq=2)
    assert tok.token_to_id("a") is not None and tok.token_to_id("d") is None
    tok = train_tokenizer(corpus, kind="char", vocab_size=5)
    assert tok.get_vocab_size() == 5  # 3 specials + the two most frequent: a, b
    assert tok.token_to_id("a") is not None and tok.token_to_id("b") is not None


def test_errors_are_one_line_input_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="kind"):
        train_tokenizer(EN, kind="sentencepiece", vocab_size=100)
    with pytest.raises(InputError, match="texts"):
        train_tokenizer(["", "  "], kind="char", vocab_size=100)
    with pytest.raises(InputError, match="vocab_size"):
        train_tokenizer(EN, kind="char", vocab_size=2)
    tok = train_tokenizer(EN, kind="char", vocab_size=100)
    with pytest.raises(InputError, match="max_len"):
        encode_batch(tok, ["hi"])
    with pytest.raises(NotFoundError):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_tokenizer(bad)


_TOK = configure_length(train_tokenizer(ZH + EN, kind="char", vocab_size=300), 16)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_any_text_encodes_to_fixed_length_in_vocab_ids(texts: list[str]) -> None:
    ids, mask = encode_batch(_TOK, texts)
    assert ids.shape == (len(texts), 16)
    assert ids.min() >= 0 and ids.max() < _TOK.get_vocab_size()
    assert (mask[:, 0] == 1).all()  # at least [CLS]
    # mask is 1...1 0...0 per row
    assert (np.diff(mask, axis=1) <= 0).all()


# -- hashed n-grams (computed inside the ngram-bilstm model from these token ids) ------------

_ids = st.lists(st.lists(st.integers(1, 5000), min_size=0, max_size=12), min_size=1, max_size=4)


def _padded(rows: list[list[int]], length: int = 12):
    import torch

    out = torch.zeros(len(rows), length, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


@settings(max_examples=60, deadline=None)
@given(_ids, st.integers(1, 4), st.sampled_from([2, 7, 1000, 262_144]))
def test_hashed_ngrams_are_in_range_zero_on_padding_and_position_free(rows, n, buckets) -> None:
    from dlforge.models.text_classifiers import hash_ngrams

    ids = _padded(rows)
    h = hash_ngrams(ids, n, buckets)
    assert h.shape == ids.shape and h.dtype == ids.dtype
    assert int(h.min()) >= 0 and int(h.max()) < buckets
    seen: dict[tuple[int, ...], int] = {}
    for i, r in enumerate(rows):
        for j in range(12):
            gram = tuple(r[j : j + n])
            if len(gram) < n:  # runs into padding or past the end
                assert h[i, j] == 0
                continue
            assert h[i, j] >= 1
            # the same n-gram gets the same id wherever it occurs (row and position free)
            assert seen.setdefault(gram, int(h[i, j])) == int(h[i, j])


def test_hashed_ngrams_separate_distinct_ngrams() -> None:
    import torch

    from dlforge.models.text_classifiers import hash_ngrams

    ids = torch.arange(3, 3003, dtype=torch.int64).unsqueeze(0)  # 2,999 distinct bigrams
    h = hash_ngrams(ids, 2, 262_144)[0, :-1]
    assert len(set(h.tolist())) >= 2990  # few collisions in a large table
