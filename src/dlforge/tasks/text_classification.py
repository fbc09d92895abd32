"""Text classification (sentiment, topic, intent, multi-label tags) for Chinese and English.

Reads top to bottom: parameters -> tokenizer -> tensors -> model -> loss -> train
-> evaluate -> export. Texts are tokenized once up front (character tokens for
Chinese by default, or a trained WordPiece/BPE vocabulary), so an epoch is pure
model work. ``tfidf-linear`` is the classical baseline: character n-gram TF-IDF
and a linear model from scikit-learn, trained without the deep-learning engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dlforge.data.records import SampleRecord
from dlforge.errors import InputError
from dlforge.tasks.common import (
    classification_setup,
    ensure_resumable,
    environment,
    fit_prepared,
    val_metrics,
)

TASK = "text_classification"
BASELINE = "tfidf-linear"
HF_ENCODER = "hf-encoder"
E5_SMALL = "e5-small"
# Pretrained transformers: they bring their own tokenizer, and their cost grows with the
# padded length, so by default they train on length-grouped, trimmed batches.
PRETRAINED_ENCODERS = ("minilm", HF_ENCODER, E5_SMALL)

DEFAULTS: dict[str, Any] = {
    "model": None,
    "tokenizer": "char",  # char | wordpiece | bpe  (the pretrained encoders bring their own)
    "encoder_path": None,  # hf-encoder: a local Hugging Face model directory
    "vocab_size": 8000,
    "max_len": None,  # 95th percentile of token lengths (capped at 256) when None
    "multilabel": False,
    "label_smoothing": 0.0,
    "balance": None,  # None | "weights"
    "weights": None,
    "freeze_backbone": False,
    "dropout": None,  # None: the model's own default (each architecture has its tuned one)
    # batches of similar length, trimmed to their longest text; None: on for pretrained encoders
    "group_by_length": None,
    "train_embeddings": False,  # e5-small: also fine-tune its 250k-token embedding table
    "freeze_layers": 0,  # freeze the first N layer groups (an encoder's embeddings, then its layers)
    "C": 10.0,  # tfidf-linear: inverse regularisation strength
}
TRAIN_DEFAULTS = {
    "epochs": 8,
    "batch_size": 64,
    "lr": 2e-3,
    "optimizer": "adamw",
    "weight_decay": 0.01,
    "warmup_epochs": 0.5,
    "monitor": "val/accuracy",
    "monitor_mode": "max",
    "clip_grad_norm": 5.0,
}


def default_model() -> str:
    return "textcnn"


def texts_of(records: list[SampleRecord]) -> list[str]:
    return [r.read_text() for r in records]


def targets_of(records: list[SampleRecord], classes: list[str], multilabel: bool) -> torch.Tensor:
    index = {c: i for i, c in enumerate(classes)}
    if multilabel:
        y = torch.zeros(len(records), len(classes))
        for i, r in enumerate(records):
            y[i, [index[lab] for lab in r.labels() if lab in index]] = 1.0
        return y
    out = []
    for r in records:
        labels = [index[lab] for lab in r.labels() if lab in index]
        if not labels:
            raise InputError(f"sample {r.name} (uid {r.sample_id}) has no class label")
        out.append(labels[0])
    return torch.tensor(out)


def make_tokenizer(kind: str, texts: list[str], vocab_size: int, model_name: str, encoder_path: str | None) -> Any:
    if model_name == "minilm":
        from dlforge.models.text_classifiers import minilm_tokenizer

        return minilm_tokenizer()
    if model_name == HF_ENCODER:
        from dlforge.models.text_classifiers import encoder_tokenizer

        return encoder_tokenizer(encoder_path)
    if model_name == E5_SMALL:
        from dlforge.models.e5_small import e5_small_tokenizer

        return e5_small_tokenizer(None)
    from dlforge.data.tokenize import train_tokenizer

    return train_tokenizer(texts, kind=kind, vocab_size=vocab_size, min_freq=1)


def weights_tokenizer(ws: Any, source: str) -> Any | None:
    """The tokenizer that goes with ``--weights source`` when it is a text run or its checkpoint.

    Token ids are only meaningful with the vocabulary they were trained on: fine-tuning
    another run's embeddings under a freshly learned vocabulary would scramble them.
    Returns None for other weights (a bare state dict keeps the new run's own tokenizer).
    """
    from dlforge.data.tokenize import load_tokenizer
    from dlforge.tasks.image_classification import resolve_weights

    resolved = resolve_weights(ws, source)
    if resolved == "hub":
        return None
    path = Path(resolved)
    tok = path.parent.parent / "tokenizer.json" if path.parent.name == "checkpoints" else None
    return load_tokenizer(tok) if tok is not None and tok.is_file() else None


def _trained_length(tokenizer: Any) -> int | None:
    """The fixed length a run's saved tokenizer pads to (None for a fresh tokenizer)."""
    trunc = tokenizer.truncation
    return int(trunc["max_length"]) if trunc else None


def choose_max_len(tokenizer: Any, texts: list[str]) -> int:
    sample = texts[:2000]
    lengths = [len(e.ids) for e in tokenizer.encode_batch(sample)]
    return int(min(256, max(16, np.percentile(lengths, 95))))


def encode(tokenizer: Any, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    from dlforge.data.tokenize import encode_batch

    ids, mask = encode_batch(tokenizer, texts, max_len=max_len)
    return torch.from_numpy(ids), torch.from_numpy(mask)  # (N, L) int64 each


def trim_padding(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Collate ``(ids, mask, y)`` items, cutting the padding columns no text in the batch uses.

    Padding is on the right and masked out, so a model's output does not change; a
    transformer's cost falls with the batch's real length instead of ``max_len``.
    """
    ids, mask, y = (torch.stack(t) for t in zip(*items, strict=True))
    width = max(int(mask.sum(1).max()), 1)
    return ids[:, :width], mask[:, :width], y


# -- loss and metrics -----------------------------------------------------------------------
def make_step_fn(multilabel: bool, label_smoothing: float, class_weights: torch.Tensor | None) -> Any:
    def step_fn(model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        ids, mask, y = (t.to(device) for t in batch)
        logits = model(ids, mask)  # (B, C)
        w = None if class_weights is None else class_weights.to(device)
        if multilabel:
            return F.binary_cross_entropy_with_logits(logits, y, pos_weight=w)
        return F.cross_entropy(logits, y, weight=w, label_smoothing=label_smoothing)

    return step_fn


@torch.no_grad()
def predict_probs(
    model: nn.Module, loader: Any, device: torch.device, multilabel: bool
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probs, ys = [], []
    for ids, mask, y in loader:
        logits = model(ids.to(device), mask.to(device))
        probs.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).float().cpu())
        ys.append(y)
    return torch.cat(probs).numpy(), torch.cat(ys).numpy()


def make_eval_fn(multilabel: bool) -> Any:
    def eval_fn(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        return val_metrics(*predict_probs(model, loader, device, multilabel), multilabel)

    return eval_fn


# -- the recipe ------------------------------------------------------------------------------
def _prepare(ws: Any, run_params: dict[str, Any], data_ref: str, run_dir: Path | None) -> dict[str, Any]:
    from dlforge.models import create_model, get_model_info

    config, hp, version, splits, classes = classification_setup(
        ws, run_params, data_ref, task=TASK, media_type="text", defaults=DEFAULTS, train_defaults=TRAIN_DEFAULTS
    )
    name = hp["model"] or default_model()
    p: dict[str, Any] = {
        "config": config,
        "hp": hp,
        "version": version,
        "classes": classes,
        "model_name": name,
        "splits": splits,
    }
    if name == BASELINE:
        return p
    info = get_model_info(name)
    if info.task != TASK:
        raise InputError(f"model {name!r} is a {info.task} model, not {TASK}")
    if name == HF_ENCODER and not hp["encoder_path"]:
        raise InputError(f"model {HF_ENCODER}: set encoder_path=DIR, a local Hugging Face model directory")
    train_texts = texts_of(splits.train)
    tok_path = run_dir / "tokenizer.json" if run_dir else None
    saved_len = None  # a run's saved tokenizer pads to that run's length (position embeddings fit it)
    if tok_path is not None and tok_path.exists():  # resume: the exact tokenizer of the run
        from dlforge.data.tokenize import load_tokenizer

        tokenizer = load_tokenizer(tok_path)
        saved_len = _trained_length(tokenizer)
    elif hp.get("weights") and (source_tok := weights_tokenizer(ws, hp["weights"])) is not None:
        tokenizer = source_tok  # the starting weights' embeddings and n-gram hashes index its ids
        saved_len = _trained_length(tokenizer)
    else:
        tokenizer = make_tokenizer(hp["tokenizer"], train_texts, int(hp["vocab_size"]), name, hp["encoder_path"])
    max_len = int(hp["max_len"] or saved_len or choose_max_len(tokenizer, train_texts))
    y_train = targets_of(splits.train, classes, hp["multilabel"])
    y_val = targets_of(splits.val, classes, hp["multilabel"])
    train_ds = TensorDataset(*encode(tokenizer, train_texts, max_len), y_train)
    val_ds = TensorDataset(*encode(tokenizer, texts_of(splits.val), max_len), y_val)
    class_weights = None
    if hp["balance"] == "weights":
        counts = y_train.sum(0) if hp["multilabel"] else torch.bincount(y_train, minlength=len(classes)).float()
        class_weights = (counts.sum() / counts.clamp(min=1) / len(classes)).float()
    kwargs = model_kwargs(name, tokenizer, max_len, None if hp["dropout"] is None else float(hp["dropout"]))
    if name == E5_SMALL and hp["train_embeddings"]:
        kwargs["train_embeddings"] = True
    group = name in PRETRAINED_ENCODERS if hp["group_by_length"] is None else bool(hp["group_by_length"])
    torch.manual_seed(config.seed)
    recorded = run_dir / "run.json" if run_dir else None
    if name == HF_ENCODER and recorded is not None and recorded.exists():
        # resume: the recorded architecture; last.pt restores the weights, so the directory may be gone
        kwargs = json.loads(recorded.read_text(encoding="utf-8"))["model_kwargs"]
        model = create_model(name, len(classes), task=TASK, **kwargs)
    elif name == HF_ENCODER:
        model = create_model(name, len(classes), task=TASK, path=hp["encoder_path"], **kwargs)
        # The run records the architecture, not the directory: its checkpoint holds the weights,
        # so evaluation, export and serving never need the pretrained files again.
        kwargs = {"config": model.encoder_config(), **kwargs}
    else:
        model = create_model(name, len(classes), task=TASK, **kwargs)
    if hp.get("weights"):
        from dlforge.models.weights import load_pretrained
        from dlforge.tasks.image_classification import resolve_weights

        load_pretrained(model, resolve_weights(ws, hp["weights"]))
    if hp.get("freeze_backbone"):
        from dlforge.models.weights import freeze_backbone

        freeze_backbone(model)
    if int(hp["freeze_layers"] or 0):
        from dlforge.models.weights import freeze_lower_groups

        freeze_lower_groups(model, int(hp["freeze_layers"]))
    p.update(
        {
            "tokenizer": tokenizer,
            "max_len": max_len,
            "model": model,
            "model_kwargs": kwargs,
            "loaders": make_loaders(train_ds, val_ds, config, group),
            "step_fn": make_step_fn(hp["multilabel"], float(hp["label_smoothing"]), class_weights),
            "eval_fn": make_eval_fn(hp["multilabel"]),
        }
    )
    return p


def make_loaders(train_ds: TensorDataset, val_ds: TensorDataset, config: Any, group: bool) -> dict[str, Any]:
    """Train and val loaders; ``group``: length-grouped training batches, all batches trimmed."""
    from dlforge.engine.loader import make_length_grouped_loader, make_loader

    if not group:
        return {
            "train": make_loader(train_ds, config.batch_size, True, config.num_workers, config.seed),
            "val": make_loader(val_ds, config.batch_size * 2, False, config.num_workers, config.seed),
        }
    lengths = train_ds.tensors[1].sum(1).tolist()
    # validation metrics do not depend on the order: sorted by length, its batches trim best
    val_ds = TensorDataset(*(t[torch.argsort(val_ds.tensors[1].sum(1), stable=True)] for t in val_ds.tensors))
    return {
        "train": make_length_grouped_loader(
            train_ds, lengths, config.batch_size, config.num_workers, config.seed, collate_fn=trim_padding
        ),
        "val": make_loader(val_ds, config.batch_size * 2, False, config.num_workers, config.seed, trim_padding),
    }


def model_kwargs(name: str, tokenizer: Any, max_len: int, dropout: float | None) -> dict[str, Any]:
    """Constructor arguments of a text model (recorded in run.json to rebuild it)."""
    kwargs: dict[str, Any] = {} if dropout is None else {"dropout": dropout}
    if name == "minilm":
        return kwargs  # vocabulary and length are fixed by the checkpoint
    if name in (HF_ENCODER, E5_SMALL):
        return {"max_len": max_len, **kwargs}  # the vocabulary is the encoder's
    return {"vocab_size": tokenizer.get_vocab_size(), "max_len": max_len, **kwargs}


def train(ws: Any, data_ref: str, *, progress: Any = None, **params: Any) -> Any:
    """Train a text classifier on ``data_ref``; returns the finished run."""
    version = ws.version(data_ref)
    p = _prepare(ws, params, version.ref, None)
    run = ws.create_run(TASK, {**params, "model": p["model_name"]}, version.ref)
    if p["model_name"] == BASELINE:
        return _fit_baseline(run, p)
    return _fit(run, p, progress, resume=False)


def resume(ws: Any, run: Any, *, progress: Any = None) -> Any:
    ensure_resumable(run, TASK)
    if run.params.get("model") == BASELINE:
        raise InputError(f"run {run.id}: {BASELINE} trains in one step and cannot be resumed; train it again")
    p = _prepare(ws, run.params, run.data_ref, run.dir)
    return _fit(run, p, progress, resume=True)


def _fit(run: Any, p: dict[str, Any], progress: Any, resume: bool) -> Any:
    from dlforge.data.tokenize import configure_length, save_tokenizer

    save_tokenizer(configure_length(p["tokenizer"], p["max_len"]), run.dir / "tokenizer.json")
    fit_prepared(
        run,
        p,
        task=TASK,
        model_kwargs=p["model_kwargs"],
        input_spec={"tokenizer": "tokenizer.json", "max_len": p["max_len"]},
        progress=progress,
        resume=resume,
    )
    return run


def _fit_baseline(run: Any, p: dict[str, Any]) -> Any:
    """Character 1-3-gram TF-IDF + logistic regression: the classical baseline."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    hp, splits, classes = p["hp"], p["splits"], p["classes"]
    run.set_status("running")
    started = time.time()
    y = targets_of(splits.train, classes, hp["multilabel"]).numpy()
    clf = LogisticRegression(C=float(hp["C"]), max_iter=2000)
    pipe = make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2, max_features=300_000),
        OneVsRestClassifier(clf) if hp["multilabel"] else clf,
    )
    pipe.fit(texts_of(splits.train), y)
    probs = pipe.predict_proba(texts_of(splits.val))
    yv = targets_of(splits.val, classes, hp["multilabel"]).numpy()
    acc = float(((probs >= 0.5) == (yv > 0.5)).all(1).mean() if hp["multilabel"] else (probs.argmax(1) == yv).mean())
    tmp = run.dir / "checkpoints" / ".model.joblib.tmp"
    joblib.dump(pipe, tmp)
    tmp.replace(run.dir / "checkpoints" / "model.joblib")
    run.log_metrics(1, {"val/accuracy": acc}, epoch=0)
    run.write_manifest(
        {
            "id": run.id,
            "task": TASK,
            "model": BASELINE,
            "model_kwargs": {},
            "classes": classes,
            "data": p["version"].ref,
            "params": run.params,
            "multilabel": hp["multilabel"],
            "environment": environment(),
        }
    )
    run.finish(
        "completed",
        {
            "monitor": "val/accuracy",
            "best_metric": acc,
            "best_epoch": 0,
            "epochs_done": 1,
            "stop_reason": "completed",
            "train_seconds": round(time.time() - started, 2),
        },
    )
    return run


def load_model(run: Any) -> Any:
    """The run's best model (eval mode, CPU), or the fitted scikit-learn pipeline for the baseline."""
    m = run.manifest()
    if m["model"] == BASELINE:
        import joblib

        return joblib.load(run.dir / "checkpoints" / "model.joblib")
    from dlforge.engine.checkpoint import load_best
    from dlforge.models import create_model

    model = create_model(m["model"], len(m["classes"]), task=TASK, **m["model_kwargs"])
    load_best(model, run.dir)
    return model.eval()


def run_probs(run: Any, texts: list[str]) -> np.ndarray:
    """Class probabilities (N, C) of the run's best model for raw texts."""
    from dlforge.data.tokenize import load_tokenizer

    m = run.manifest()
    model = load_model(run)
    if m["model"] == BASELINE:
        return model.predict_proba(texts)
    tok = load_tokenizer(run.dir / "tokenizer.json")
    ids, mask = encode(tok, texts, m["input"]["max_len"])
    trim = m["model"] in PRETRAINED_ENCODERS  # their cost follows the length: batch similar lengths
    order = torch.argsort(mask.sum(1)) if trim else torch.arange(len(texts))
    out = torch.empty(len(texts), len(m["classes"]))
    with torch.no_grad():
        for i in range(0, len(texts), 256):
            rows = order[i : i + 256]
            width = max(int(mask[rows].sum(1).max()), 1) if trim else ids.shape[1]
            logits = model(ids[rows, :width], mask[rows, :width])
            out[rows] = (torch.sigmoid(logits) if m["multilabel"] else torch.softmax(logits, 1)).float()
    return out.numpy()


def evaluate_run(run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]:
    from dlforge.evaluate.classification import classification_metrics
    from dlforge.tasks.classification_report import write_classification_report

    m = run.manifest()
    version = run.ws.version(m["data"])
    records = version.records(split=split)
    if not records:
        raise InputError(f"{version.ref} has no {split} split to evaluate on")
    probs = run_probs(run, texts_of(records))
    y = targets_of(records, m["classes"], m["multilabel"]).numpy()
    metrics = classification_metrics(y, probs, m["classes"], multilabel=m["multilabel"])
    metrics = {"run": run.id, "split": split, "data": version.ref, "n": len(records), **metrics}
    if report_path is not None:
        write_classification_report(run, metrics, records, probs, y, report_path, kind="text")
    return metrics


def export_spec(run: Any) -> Any:
    from dlforge.data.tokenize import load_tokenizer
    from dlforge.deploy.spec import ExportSpec, TextInput

    m = run.manifest()
    if m["model"] == BASELINE:
        raise InputError(f"run {run.id}: {BASELINE} is a scikit-learn baseline; export a deep text model instead")
    version = run.ws.version(m["data"])
    tok = load_tokenizer(run.dir / "tokenizer.json")
    max_len = m["input"]["max_len"]

    def batch(split: str, n: int) -> tuple[Any, Any]:
        recs = version.records(split=split)[:n]
        if not recs:
            return None, None
        ids, mask = encode(tok, texts_of(recs), max_len)
        y = None if m["multilabel"] else targets_of(recs, m["classes"], False).numpy()
        return (ids, mask), y

    examples, _ = batch("val", 16)
    val_x, val_y = batch("val", 512)
    calib, _ = batch("train", 64)
    return ExportSpec(
        model=load_model(run),
        task=TASK,
        labels=m["classes"],
        input=TextInput(tokenizer=tok, max_len=max_len),
        example_inputs=examples,
        calibration_inputs=calib,
        validation_inputs=val_x,
        validation_targets=val_y,
        metrics=run.info().summary,
        data_version=m["data"],
        run_id=run.id,
        multi_label=m["multilabel"],
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        name=m["data"].split("@")[0],
    )
