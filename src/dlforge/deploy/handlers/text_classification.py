"""Text classification: strings -> padded token ids (tokenizers, no torch); logits -> Classification."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Prepared, register_handler
from dlforge.deploy.handlers.classify import classify
from dlforge.deploy.manifest import TOKENIZER_FILE, BundleError, Manifest


def load_tokenizer(manifest: Manifest) -> Any:
    """The bundle's tokenizer, set to truncate and pad to ``input.max_len`` (cached per bundle)."""
    tok = manifest.cache.get("tokenizer")
    if tok is not None:
        return tok
    from tokenizers import Tokenizer

    if manifest.bundle_dir is None:
        raise BundleError("manifest: text bundle has no directory to load its tokenizer from")
    path = Path(manifest.bundle_dir) / (manifest.input.get("tokenizer") or TOKENIZER_FILE)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception for bad files
        raise BundleError(f"{path}: cannot load tokenizer ({exc})") from None
    max_len = int(manifest.input.get("max_len", 128))
    pad_id = int(manifest.input.get("pad_id", 0))
    # The model was exported and checked at a fixed length; feed it the same shape.
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(length=max_len, pad_id=pad_id)
    manifest.cache["tokenizer"] = tok
    return tok


def _as_text(item: Any, max_chars: int) -> str:
    if isinstance(item, (bytes, bytearray, memoryview)):
        try:
            item = bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"<{len(item)} bytes>: text input is not valid UTF-8") from None
    elif isinstance(item, os.PathLike):
        path = Path(item)
        if not path.is_file():
            raise BundleError(f"{path}: text file not found")
        item = path.read_text(encoding="utf-8", errors="replace")
    if not isinstance(item, str):
        raise BundleError(f"<{type(item).__name__}>: text classification takes strings")
    if len(item) > max_chars:
        raise BundleError(f"text of {len(item)} characters is too long (limit {max_chars})")
    return item


def preprocess(inputs: Sequence[Any], manifest: Manifest) -> Prepared:
    spec = manifest.input
    texts = [_as_text(x, int(spec.get("max_chars", 20000))) for x in inputs]
    if spec.get("lowercase"):
        texts = [t.lower() for t in texts]
    tok = load_tokenizer(manifest)
    encs = tok.encode_batch(texts)
    ids = np.asarray([e.ids for e in encs], dtype=np.int64)  # (B, L)
    mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)  # (B, L)
    feeds: dict[str, np.ndarray] = {}
    for name in manifest.input_names:
        if name == "attention_mask":
            feeds[name] = mask
        elif name == "token_type_ids":
            feeds[name] = np.zeros_like(ids)
        else:
            feeds[name] = ids
    meta = [{"tokens": int(m.sum()), "truncated": bool(len(e.overflowing) > 0)} for e, m in zip(encs, mask)]
    return Prepared(feeds=feeds, meta=meta)


def postprocess(
    outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict[str, Any]], *, top_k: int = 5, **_: Any
) -> list[Any]:
    return classify(outputs[manifest.output_names[0]], manifest, top_k)


register_handler("text_classification", preprocess=preprocess, postprocess=postprocess)
