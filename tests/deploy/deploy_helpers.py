"""Shared fixtures for the deployment tests: tiny real models trained in seconds, and their bundles."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dlforge.deploy.bundle import build_bundle
from dlforge.deploy.spec import ExportSpec, ImageInput, TextInput

IMAGE_SIZE = 32
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits as (N, 32, 32, 3) uint8 RGB images (upsampled with Pillow) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = []
    for im in d.images:
        small = Image.fromarray((im * (255.0 / 16.0)).astype(np.uint8))
        imgs.append(np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).convert("RGB")))
    return np.stack(imgs), d.target.astype(np.int64)


def to_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> normalised (N, 3, H, W) float32, as the image handler does."""
    x = torch.from_numpy(images).float().div(255.0)
    x = (x - torch.tensor(MEAN)) / torch.tensor(STD)
    return x.permute(0, 3, 1, 2).contiguous()


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        return self.head(self.features(x))


def train(model: nn.Module, xs: tuple[torch.Tensor, ...], y: torch.Tensor, epochs: int, lr: float = 3e-3) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = y.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(*(x[idx] for x in xs)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.fixture(scope="session")
def digits() -> dict:
    images, labels = digits_images()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    train_idx, val_idx = order[:1400], order[1400:]
    torch.manual_seed(0)
    model = TinyCNN()
    x = to_input(images)
    y = torch.from_numpy(labels)
    train(model, (x[train_idx],), y[train_idx], epochs=2, lr=1e-2)
    with torch.no_grad():
        acc = float((model(x[val_idx]).argmax(1) == y[val_idx]).float().mean())
    return {
        "images": images,
        "labels": labels,
        "train_idx": train_idx,
        "val_idx": val_idx,
        "model": model,
        "x": x,
        "val_acc": acc,
        "classes": [str(i) for i in range(10)],
    }


def image_spec(digits: dict) -> ExportSpec:
    x, tr, va = digits["x"], digits["train_idx"], digits["val_idx"]
    return ExportSpec(
        model=digits["model"],
        task="image_classification",
        labels=digits["classes"],
        input=ImageInput(size=(IMAGE_SIZE, IMAGE_SIZE), resize="stretch", mean=MEAN, std=STD, channels=3),
        example_inputs=x[va[:32]],
        calibration_inputs=x[tr[:128]],
        validation_inputs=x[va],
        validation_targets=torch.from_numpy(digits["labels"][va]),
        metrics={"val/accuracy": digits["val_acc"]},
        data_version="digits@1",
        run_id="test-run",
        name="digits",
    )


@pytest.fixture(scope="session")
def image_bundle(digits: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "digits"
    build_bundle(image_spec(digits), out)
    return out


@pytest.fixture(scope="session")
def digit_pngs(digits: dict, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Eight validation digits written as PNG files."""
    d = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in digits["val_idx"][:8]:
        p = d / f"digit_{i}_{digits['labels'][i]}.png"
        Image.fromarray(digits["images"][i]).save(p)
        paths.append(p)
    return paths


# --- a tiny character-level text classifier -------------------------------------------------

POS = ["good", "great", "love", "happy", "nice", "super", "fine", "best"]
NEG = ["bad", "awful", "hate", "sad", "poor", "worst", "ugly", "dull"]
FILLER = ["the", "film", "was", "a", "really", "it", "so", "and"]
MAX_LEN = 48


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1}
    for c in "abcdefghijklmnopqrstuvwxyz ":
        vocab[c] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.enable_truncation(max_length=MAX_LEN)
    tok.enable_padding(length=MAX_LEN, pad_id=0)
    return tok


def sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(FILLER, 3) + rng.sample(POS if label else NEG, 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


class CharBag(nn.Module):
    def __init__(self, vocab: int, dim: int = 32, classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        e = self.emb(input_ids)  # (B, L, D)
        m = attention_mask.unsqueeze(-1).float()  # (B, L, 1)
        pooled = (e * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        return self.head(pooled)  # (B, classes)


def encode(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encs = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encs], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.int64)
    return ids, mask


@pytest.fixture(scope="session")
def text_model() -> dict:
    tok = char_tokenizer()
    texts, labels = sentences(600, seed=1)
    ids, mask = encode(tok, texts)
    torch.manual_seed(0)
    model = CharBag(tok.get_vocab_size())
    train(model, (ids, mask), torch.tensor(labels), epochs=6, lr=3e-2)
    val_texts, val_labels = sentences(64, seed=2)
    return {"tok": tok, "model": model, "val_texts": val_texts, "val_labels": val_labels}


@pytest.fixture(scope="session")
def text_bundle(text_model: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = text_model["tok"]
    ids, mask = encode(tok, text_model["val_texts"][:16])
    spec = ExportSpec(
        model=text_model["model"],
        task="text_classification",
        labels=["negative", "positive"],
        input=TextInput(tokenizer=tok, max_len=MAX_LEN, max_chars=500),
        example_inputs=(ids, mask),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        name="sentiment",
    )
    out = tmp_path_factory.mktemp("bundles") / "sentiment"
    build_bundle(spec, out)
    return out
