"""Text tokenizers for training and deployment.

Tokenizers are ``tokenizers.Tokenizer`` objects (the Hugging Face *tokenizers*
library, Rust, no torch), so one ``tokenizer.json`` carries the normalizer, the
vocabulary, the ``[CLS]`` template and the padding/truncation length, and a
deployed model tokenizes exactly as in training with ``tokenizers`` + numpy alone.

Kinds:

- ``"char"``: one token per character, each whitespace run one token. The
  default for Chinese, where a character is already a meaningful unit; also robust
  for tiny English data.
- ``"wordpiece"``: BERT-style subwords over words and punctuation.
- ``"bpe"``: byte-pair-encoding subwords.

All kinds normalize with NFKC + lowercase and split CJK (Chinese/Japanese/Korean)
characters into single tokens. Special tokens: ``[PAD]`` = 0, ``[UNK]`` = 1,
``[CLS]`` = 2; every encoding starts with ``[CLS]``.

Example::

    tok = train_tokenizer(["我很喜欢", "not good"], kind="char", vocab_size=5000)
    ids, mask = encode_batch(tok, ["很好"], max_len=16)   # (1, 16) int64 each
    save_tokenizer(tok, "out/tokenizer.json"); tok2 = load_tokenizer("out/tokenizer.json")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from dlforge.errors import InputError, NotFoundError

__all__ = [
    "CLS_TOKEN",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TOKENIZER_KINDS",
    "UNK_TOKEN",
    "configure_length",
    "encode_batch",
    "load_tokenizer",
    "save_tokenizer",
    "train_tokenizer",
]

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN = "[PAD]", "[UNK]", "[CLS]"
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN, CLS_TOKEN]  # ids 0, 1, 2 in this order
TOKENIZER_KINDS = ("char", "wordpiece", "bpe")

# CJK ideographs (incl. extension A and compatibility), kana and Hangul syllables.
_CJK = Regex(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")


def _normalizer(kind: str) -> normalizers.Normalizer:
    steps = [normalizers.NFKC(), normalizers.Lowercase()]
    if kind == "char":
        steps.append(normalizers.Strip())
    return normalizers.Sequence(steps)


def _pre_tokenizer(kind: str) -> pre_tokenizers.PreTokenizer:
    # Only normalizers/pre-tokenizers the browser bundle's tokenizer.json reader implements
    # (NFKC, Lowercase, Strip; regex Split "isolated", BertPreTokenizer) are used here.
    if kind == "char":
        # Every character is a token; a whitespace run stays one token (word boundaries
        # matter for latin text; Chinese rarely has spaces, so it costs nothing there).
        return pre_tokenizers.Split(Regex(r"\s+|."), "isolated")
    return pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Split(_CJK, "isolated")]
    )


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "char",
    vocab_size: int = 8000,
    min_freq: int = 1,
) -> Tokenizer:
    """Learn a tokenizer's vocabulary from ``texts``.

    Args:
        texts: training texts (an iterable is consumed once).
        kind: ``"char"``, ``"wordpiece"`` or ``"bpe"``.
        vocab_size: largest vocabulary, special tokens included; the most frequent
            tokens are kept.
        min_freq: tokens seen fewer times become ``[UNK]``.

    Returns:
        A ``tokenizers.Tokenizer`` that prepends ``[CLS]`` (no padding configured yet;
        see :func:`configure_length`).

    Raises:
        InputError: unknown ``kind``, ``vocab_size`` too small, ``min_freq`` < 1, or
            no non-empty text.
    """
    if kind not in TOKENIZER_KINDS:
        raise InputError(f"kind: unknown tokenizer kind {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise InputError(f"vocab_size: must be > {len(SPECIAL_TOKENS)}, got {vocab_size}")
    if min_freq < 1:
        raise InputError(f"min_freq: must be >= 1, got {min_freq}")
    corpus = [t for t in texts if isinstance(t, str) and t.strip()]
    if not corpus:
        raise InputError("texts: no non-empty text to train a tokenizer on")

    if kind == "char":
        tok = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        tok.decoder = decoders.Fuse()  # whitespace is kept as tokens, so plain concatenation
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, special_tokens=SPECIAL_TOKENS
        )
    elif kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, special_tokens=SPECIAL_TOKENS
        )
        tok.decoder = decoders.WordPiece()
    else:
        tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN, continuing_subword_prefix="##"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            special_tokens=SPECIAL_TOKENS,
            continuing_subword_prefix="##",
        )
        tok.decoder = decoders.WordPiece()
    tok.normalizer = _normalizer(kind)
    tok.pre_tokenizer = _pre_tokenizer(kind)
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    cls_id = tok.token_to_id(CLS_TOKEN)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS_TOKEN} $A", pair=f"{CLS_TOKEN} $A $B", special_tokens=[(CLS_TOKEN, cls_id)]
    )
    return tok


def configure_length(tokenizer: Tokenizer, max_len: int) -> Tokenizer:
    """Pad and truncate every encoding to exactly ``max_len`` tokens (kept in tokenizer.json).

    Padding uses ``[PAD]`` (its id from the vocabulary, 0 for dlforge tokenizers) on
    the right. Returns the same tokenizer, changed in place.
    """
    if max_len < 2:
        raise InputError(f"max_len: must be >= 2, got {max_len}")
    pad_id = tokenizer.token_to_id(PAD_TOKEN)
    if pad_id is None:
        raise InputError(f"tokenizer: has no {PAD_TOKEN} token")
    trunc = tokenizer.truncation
    if trunc is None or trunc.get("max_length") != max_len:
        tokenizer.enable_truncation(max_length=max_len)
    pad = tokenizer.padding
    if pad is None or pad.get("length") != max_len or pad.get("pad_id") != pad_id:
        tokenizer.enable_padding(pad_id=pad_id, pad_token=PAD_TOKEN, length=max_len)
    return tokenizer


def encode_batch(
    tokenizer: Tokenizer, texts: Sequence[str], max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask for ``texts``.

    Args:
        tokenizer: a trained tokenizer.
        texts: the texts.
        max_len: pad/truncate to this length (stored on the tokenizer via
            :func:`configure_length`); None uses the tokenizer's configured length.

    Returns:
        ``(ids, mask)``, both ``np.int64`` of shape (B, L); mask is 1 on real tokens.
    """
    if max_len is not None:
        configure_length(tokenizer, max_len)
    elif tokenizer.padding is None or tokenizer.padding.get("length") is None:
        raise InputError("max_len: the tokenizer has no fixed length configured; pass max_len")
    encodings = tokenizer.encode_batch([str(t) for t in texts])
    length = tokenizer.padding["length"]
    ids = np.zeros((len(encodings), length), dtype=np.int64)  # (B, L)
    mask = np.zeros((len(encodings), length), dtype=np.int64)  # (B, L)
    for i, enc in enumerate(encodings):
        ids[i] = enc.ids
        mask[i] = enc.attention_mask
    return ids, mask


def save_tokenizer(tokenizer: Tokenizer, path: str | os.PathLike[str]) -> Path:
    """Write ``tokenizer`` as one ``tokenizer.json`` (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a ``tokenizer.json``.

    Raises:
        NotFoundError: the file does not exist.
        InputError: the file is not a valid tokenizer.json.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"{path}: tokenizer file not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on parse errors
        raise InputError(f"{path}: not a valid tokenizer.json ({exc})") from exc
