"""Trainer behaviour on tiny MLPs and random data: resume, accumulation, NaN, budget, best, events."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dlforge.engine import (
    MemoryLogger,
    TrainConfig,
    Trainer,
    load_best,
    load_checkpoint,
    make_loader,
    to_device,
)
from dlforge.errors import ConflictError, InputError, NotFoundError


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models on a shared 2-core machine: intra-op threads only add spin-wait noise.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_data(n: int = 96, d: int = 8, seed: int = 0, random_labels: bool = False) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, 2, (n,), generator=g) if random_labels else (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def make_mlp(seed: int = 0, dropout: float = 0.0, d: int = 8, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))


def step_fn(model: nn.Module, batch, device: torch.device) -> torch.Tensor:
    x, y = to_device(batch, device)
    return F.cross_entropy(model(x), y)


def eval_fn(model: nn.Module, loader, device: torch.device) -> dict[str, float]:
    loss_sum, correct, n = 0.0, 0, 0
    for batch in loader:
        x, y = to_device(batch, device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"val/loss": loss_sum / n, "val/accuracy": correct / n}


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, lr=0.1, optimizer="sgd", momentum=0.0, scheduler="constant", device="cpu", log_every=2)
    base.update(kw)
    return TrainConfig(**base)


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_is_bitwise_equal_to_uninterrupted_run(tmp_path: Path, ema_decay: float | None) -> None:
    config = cfg(
        epochs=4, lr=0.05, momentum=0.9, scheduler="cosine", warmup_epochs=1, weight_decay=1e-3, seed=7
    ).model_copy(update={"ema_decay": ema_decay})
    ds, val = make_data(80), make_data(40, seed=1)

    def loaders():
        return make_loader(ds, 16, shuffle=True, seed=config.seed), make_loader(val, 20, shuffle=False)

    # Uninterrupted reference (dropout makes the global torch RNG part of the result).
    ref = make_mlp(seed=1, dropout=0.3)
    tl, vl = loaders()
    Trainer(config, tmp_path / "ref", tensorboard=False).fit(ref, tl, vl, step_fn, eval_fn)

    # Same run, crashing on the 3rd batch of epoch 3 (after last.pt of epoch 2 was written).
    calls = {"n": 0}

    def crashing_step(model, batch, device):
        calls["n"] += 1
        if calls["n"] == 2 * 5 + 3:
            raise Crash("simulated crash")
        return step_fn(model, batch, device)

    model = make_mlp(seed=1, dropout=0.3)
    tl, vl = loaders()
    with pytest.raises(Crash):
        Trainer(config, tmp_path / "run", tensorboard=False).fit(model, tl, vl, crashing_step, eval_fn)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2

    # A fresh process would build a fresh model (different init) and fresh loaders.
    torch.manual_seed(12345)
    resumed = make_mlp(seed=99, dropout=0.3)
    tl, vl = loaders()
    logger = MemoryLogger()
    result = Trainer(config, tmp_path / "run", logger=logger, tensorboard=False).fit(
        resumed, tl, vl, step_fn, eval_fn, resume=True
    )
    assert result.stop_reason == "completed" and result.epochs_completed == 4
    assert "resumed" in logger.event_kinds()
    for (name, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    best_ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "best.pt")["model"]
    best_resumed = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    for name, a in best_ref.items():  # with EMA: the averaged weights survive the resume too
        assert torch.equal(a, best_resumed[name]), f"best {name} differs after resume"

    # The run is finished now: resuming it again is a user error.
    with pytest.raises(InputError, match="already finished"):
        Trainer(config, tmp_path / "run", tensorboard=False).fit(make_mlp(), *loaders(), step_fn, eval_fn, resume=True)


def test_resume_without_checkpoint_and_fresh_fit_over_existing_run(tmp_path: Path) -> None:
    ds = make_data(32)
    with pytest.raises(NotFoundError):
        Trainer(cfg(), tmp_path, tensorboard=False).fit(
            make_mlp(), make_loader(ds, 16, True), None, step_fn, resume=True
        )
    Trainer(cfg(epochs=1), tmp_path, tensorboard=False).fit(make_mlp(), make_loader(ds, 16, True), None, step_fn)
    with pytest.raises(ConflictError):
        Trainer(cfg(epochs=1), tmp_path, tensorboard=False).fit(make_mlp(), make_loader(ds, 16, True), None, step_fn)


@pytest.mark.parametrize("n", [32, 40])  # 40: the last accumulation window is partial (4 + 1 batches)
def test_accumulating_k_batches_equals_one_big_batch(tmp_path: Path, n: int) -> None:
    ds = make_data(n)
    init = make_mlp(seed=3).state_dict()
    a, b = make_mlp(), make_mlp()
    a.load_state_dict(init)
    b.load_state_dict(init)
    Trainer(cfg(epochs=1, grad_accum=4), tmp_path / "a", tensorboard=False).fit(
        a, make_loader(ds, 8, shuffle=False), None, step_fn
    )
    Trainer(cfg(epochs=1, grad_accum=1), tmp_path / "b", tensorboard=False).fit(
        b, make_loader(ds, 32, shuffle=False), None, step_fn
    )
    moved = False
    for (name, pa), pb, p0 in zip(a.state_dict().items(), b.state_dict().values(), init.values()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=f"{name} differs")
        moved |= not torch.allclose(pa, p0)
    assert moved  # the comparison is not between two untouched models


def test_nan_loss_stops_run_and_keeps_finite_checkpoint(tmp_path: Path) -> None:
    ds = make_data(64)
    state = {"n": 0}

    def nan_in_epoch_3(model, batch, device):
        state["n"] += 1
        loss = step_fn(model, batch, device)
        return loss * float("nan") if state["n"] == 2 * 4 + 2 else loss

    logger = MemoryLogger()
    model = make_mlp()
    result = Trainer(cfg(epochs=5), tmp_path, logger=logger, tensorboard=False).fit(
        model, make_loader(ds, 16, True), None, nan_in_epoch_3
    )
    assert result.stop_reason == "nan"
    assert "NaN" in result.message and "step 10" in result.message
    assert result.epochs_completed == 2
    assert "nan_loss" in logger.event_kinds()
    last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == 2 and not last["finished"]
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    # CPU checks every micro-batch, so the NaN never reached the in-memory weights either.
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_time_budget_stops_cleanly_and_keeps_best(tmp_path: Path) -> None:
    ds, val = make_data(64), make_data(32, seed=1)

    def slow_step(model, batch, device):
        time.sleep(0.02)
        return step_fn(model, batch, device)

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # pay torch's one-off lazy imports
    t0 = time.monotonic()
    result = Trainer(cfg(epochs=1000, time_budget=0.6), tmp_path, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), make_loader(val, 32, False), slow_step, eval_fn
    )
    elapsed = time.monotonic() - t0
    assert result.stop_reason == "time_budget"
    assert elapsed < 5.0
    assert 1 <= result.epochs_completed < 1000
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
    last = load_checkpoint(result.last_checkpoint)
    assert last["stop_reason"] == "time_budget" and not last["finished"]


def test_best_checkpoint_holds_best_epoch_weights(tmp_path: Path) -> None:
    # Random labels + a wide net + high lr: val loss bottoms out early, then overfitting raises it.
    ds, val = make_data(64, random_labels=True), make_data(64, seed=5, random_labels=True)
    model = make_mlp(hidden=128)
    vl = make_loader(val, 64, False)
    config = cfg(epochs=8, lr=0.5, monitor="val/loss", monitor_mode="min")
    result = Trainer(config, tmp_path, tensorboard=False).fit(model, make_loader(ds, 16, True), vl, step_fn, eval_fn)
    losses = [h["val/loss"] for h in result.history]
    assert result.best_value == min(losses)
    assert result.best_epoch == losses.index(min(losses)) + 1

    fresh = make_mlp(seed=42, hidden=128)
    meta = load_best(fresh, tmp_path)
    assert meta["epoch"] == result.best_epoch and meta["metric"] == "val/loss"
    fresh.eval()
    with torch.no_grad():
        re_evaluated = eval_fn(fresh, vl, torch.device("cpu"))["val/loss"]
    assert re_evaluated == pytest.approx(result.best_value, rel=1e-6)
    if result.best_epoch != config.epochs:
        model.eval()
        with torch.no_grad():
            assert eval_fn(model, vl, torch.device("cpu"))["val/loss"] != pytest.approx(result.best_value)


def test_early_stopping_on_a_plateau(tmp_path: Path) -> None:
    ds = make_data(32)
    logger = MemoryLogger()

    def constant_eval(model, loader, device):
        return {"val/accuracy": 0.5}

    result = Trainer(
        cfg(epochs=20, early_stopping_patience=2, monitor="val/accuracy", monitor_mode="max"),
        tmp_path,
        logger=logger,
        tensorboard=False,
    ).fit(make_mlp(), make_loader(ds, 16, True), make_loader(ds, 16, False), step_fn, constant_eval)
    assert result.stop_reason == "early_stopping"
    assert result.epochs_completed == 3 and result.best_epoch == 1
    assert load_checkpoint(result.last_checkpoint)["finished"]
    assert "early_stopping" in logger.event_kinds()


def test_warmup_cosine_lr_values_in_logged_metrics(tmp_path: Path) -> None:
    ds = make_data(64)
    logger = MemoryLogger()
    config = cfg(epochs=4, lr=0.2, scheduler="cosine", warmup_steps=4, min_lr_ratio=0.1, log_every=1)
    Trainer(config, tmp_path, logger=logger, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, step_fn
    )
    lrs = [v for _, v in logger.series("lr")]
    assert len(lrs) == 16
    assert lrs[:4] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    total, warm = 16, 4
    for s in range(warm, total):
        expected = 0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
        assert lrs[s] == pytest.approx(expected)
    assert all(b <= a for a, b in zip(lrs[4:], lrs[5:]))  # monotone decay after warmup


def test_weight_decay_skips_biases_and_norms(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 2), nn.BatchNorm1d(2))
    model[1].weight.data.uniform_(0.5, 1.5)  # non-trivial norm scales, which decay would shrink
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def zero_loss(model, batch, device):
        x, _ = to_device(batch, device)
        return (model(x) * 0.0).sum()  # zero gradients: only weight decay can move parameters

    config = cfg(epochs=1, optimizer="adamw", lr=0.1, weight_decay=0.5)
    result = Trainer(config, tmp_path, tensorboard=False).fit(
        model, make_loader(make_data(64), 16, False), None, zero_loss
    )
    after = model.state_dict()
    shrink = (1 - 0.1 * 0.5) ** result.global_step
    for name in ("0.weight", "2.weight"):
        torch.testing.assert_close(after[name], before[name] * shrink)
    for name in ("0.bias", "1.weight", "1.bias", "2.bias", "3.weight", "3.bias"):
        torch.testing.assert_close(after[name], before[name], msg=f"{name} was decayed")


def test_gradient_events_exploding_and_vanishing(tmp_path: Path) -> None:
    ds = make_data(64)

    def scaled(factor):
        def fn(model, batch, device):
            return step_fn(model, batch, device) * factor

        return fn

    config = cfg(epochs=3, lr=1e-12, log_every=1)
    big = MemoryLogger()
    Trainer(config, tmp_path / "big", logger=big, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, scaled(1e6)
    )
    kinds = big.event_kinds()
    # 12 steps with a 50-step minimum gap: reported once, not on every step.
    assert kinds.count("exploding_gradients") == 1
    event = next(e for e in big.events if e["kind"] == "exploding_gradients")
    assert "exceeds" in event["message"] and event["step"] == 1
    assert big.series("train/grad_norm")[0][1] > 1e3

    small = MemoryLogger()
    Trainer(config, tmp_path / "small", logger=small, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, scaled(1e-12)
    )
    assert "vanishing_gradients" in small.event_kinds()
    assert "exploding_gradients" not in small.event_kinds()


def test_loss_spike_event(tmp_path: Path) -> None:
    ds = make_data(64)
    state = {"n": 0}

    def spiky(model, batch, device):
        state["n"] += 1
        loss = step_fn(model, batch, device)
        return loss * 100.0 if state["n"] == 14 else loss

    logger = MemoryLogger()
    Trainer(cfg(epochs=5, lr=1e-4, log_every=1), tmp_path, logger=logger, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, spiky
    )
    spikes = [e for e in logger.events if e["kind"] == "loss_spike"]
    assert [e["step"] for e in spikes] == [14]


def test_metrics_tensorboard_and_clipping(tmp_path: Path) -> None:
    ds, val = make_data(64), make_data(32, seed=1)
    logger = MemoryLogger()
    result = Trainer(
        cfg(epochs=2, clip_grad_norm=0.5, log_every=2, monitor="val/accuracy", monitor_mode="max"),
        tmp_path,
        logger=logger,
    ).fit(make_mlp(), make_loader(ds, 16, True), make_loader(val, 32, False), step_fn, eval_fn)
    step_rows = [m for _, m, e in logger.metrics if e is None]
    epoch_rows = [(s, m, e) for s, m, e in logger.metrics if e is not None]
    assert len(step_rows) == 4
    assert {"train/loss", "lr", "train/samples_per_s", "train/grad_norm", "grad_norm/0", "grad_norm/3"} <= set(
        step_rows[0]
    )
    assert [e for _, _, e in epoch_rows] == [1, 2]
    assert {"train/epoch_loss", "val/accuracy", "val/loss", "time/epoch_s"} <= set(epoch_rows[0][1])
    assert 0.0 <= result.last_metrics["val/accuracy"] <= 1.0
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "tb"))
    tb.Reload()
    assert {"train/loss", "lr", "val/accuracy", "train/epoch_loss"} <= set(tb.Tags()["scalars"])
    assert [e.step for e in tb.Scalars("train/loss")] == [2, 4, 6, 8]
    assert result.to_dict()["best_checkpoint"].endswith("best.pt")


def test_clip_grad_norm_bounds_each_update(tmp_path: Path) -> None:
    model = make_mlp()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    logger = MemoryLogger()
    result = Trainer(cfg(epochs=1, lr=1.0, clip_grad_norm=1e-3, log_every=1), tmp_path, logger=logger).fit(
        model, make_loader(make_data(64), 16, True), None, step_fn
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # SGD without momentum moves by lr * clipped grad: at most 1e-3 per step.
    assert torch.linalg.vector_norm(after - before) <= 1e-3 * result.global_step * (1 + 1e-4)
    assert all(v > 1e-3 for _, v in logger.series("train/grad_norm"))  # the norm logged is pre-clip


def test_bf16_on_cpu_learns(tmp_path: Path) -> None:
    ds = make_data(128)
    result = Trainer(cfg(epochs=4, precision="bf16", lr=0.3), tmp_path, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), make_loader(ds, 64, False), step_fn, eval_fn
    )
    assert result.history[-1]["val/accuracy"] > 0.8
    assert result.history[-1]["train/epoch_loss"] < result.history[0]["train/epoch_loss"]


def test_user_errors_are_one_line_input_errors(tmp_path: Path) -> None:
    ds = make_data(32)
    with pytest.raises(InputError, match="fp16"):
        Trainer(cfg(precision="fp16"), tmp_path / "a").fit(make_mlp(), make_loader(ds, 16, True), None, step_fn)
    with pytest.raises(InputError, match="val/f1"):
        Trainer(cfg(monitor="val/f1"), tmp_path / "b", tensorboard=False).fit(
            make_mlp(), make_loader(ds, 16, True), make_loader(ds, 16, False), step_fn, eval_fn
        )
    with pytest.raises(InputError, match="scalar loss"):
        Trainer(cfg(), tmp_path / "c", tensorboard=False).fit(
            make_mlp(), make_loader(ds, 16, True), None, lambda m, b, d: m(b[0])
        )
    frozen = make_mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(InputError, match="no trainable parameters"):
        Trainer(cfg(), tmp_path / "d", tensorboard=False).fit(frozen, make_loader(ds, 16, True), None, step_fn)


def test_time_budget_spent_in_evaluation_stops_at_epoch_boundary(tmp_path: Path) -> None:
    ds = make_data(32)

    def slow_eval(model, loader, device):
        time.sleep(0.4)
        return eval_fn(model, loader, device)

    result = Trainer(cfg(epochs=50, time_budget=0.3), tmp_path, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), make_loader(ds, 32, False), step_fn, slow_eval
    )
    assert result.stop_reason == "time_budget" and "after epoch 1" in result.message
    assert result.epochs_completed == 1 and result.global_step == 2
    last = load_checkpoint(result.last_checkpoint)
    assert not last["partial_epoch"] and not last["finished"]


def test_resume_into_a_different_model_is_an_input_error(tmp_path: Path) -> None:
    ds = make_data(32)
    calls = {"n": 0}

    def crash_in_epoch_2(model, batch, device):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("simulated crash")
        return step_fn(model, batch, device)

    with pytest.raises(Crash):
        Trainer(cfg(epochs=3), tmp_path, tensorboard=False).fit(
            make_mlp(), make_loader(ds, 16, True), None, crash_in_epoch_2
        )
    with pytest.raises(InputError, match="does not fit this model"):
        Trainer(cfg(epochs=3), tmp_path, tensorboard=False).fit(
            make_mlp(hidden=32), make_loader(ds, 16, True), None, step_fn, resume=True
        )
    logger = MemoryLogger()
    result = Trainer(cfg(epochs=3, lr=0.2), tmp_path, logger=logger, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, step_fn, resume=True
    )
    assert result.epochs_completed == 3 and result.global_step == 6
    resumed = next(e for e in logger.events if e["kind"] == "resumed")
    assert resumed["level"] == "warning" and "lr" in resumed["message"]


def test_time_budget_shortens_the_schedule_so_it_still_decays(tmp_path: Path) -> None:
    ds = make_data(64)

    def slow_step(model, batch, device):
        time.sleep(0.02)
        return step_fn(model, batch, device)

    logger = MemoryLogger()
    config = cfg(epochs=500, scheduler="cosine", lr=0.1, time_budget=1.5, log_every=1)
    result = Trainer(config, tmp_path, logger=logger, tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, slow_step
    )
    assert result.stop_reason == "time_budget"
    assert 2 <= result.epochs_completed < 100
    assert "schedule_shortened" in logger.event_kinds()
    lrs = [v for _, v in logger.series("lr")]
    # Without fitting, 500 planned epochs would leave the LR at ~0.1 when time runs out.
    assert lrs[-1] < 0.05 and max(lrs) == pytest.approx(0.1)


def test_deferred_loss_checks_give_same_run_and_still_catch_nan(tmp_path: Path) -> None:
    # The accelerator path (losses summed on the device, read on logging steps) run on CPU.
    ds = make_data(80)
    init = make_mlp(seed=4).state_dict()
    results = {}
    for every_step in (True, False):
        model = make_mlp()
        model.load_state_dict(init)
        logger = MemoryLogger()
        results[every_step] = (
            Trainer(
                cfg(epochs=2, log_every=2, nan_check_every_step=every_step),
                tmp_path / str(every_step),
                logger=logger,
                tensorboard=False,
            ).fit(model, make_loader(ds, 16, True), None, step_fn),
            logger,
            model,
        )
    (a, log_a, model_a), (b, log_b, model_b) = results[True], results[False]
    assert [h["train/epoch_loss"] for h in a.history] == pytest.approx([h["train/epoch_loss"] for h in b.history])
    assert [v for _, v in log_a.series("train/loss")] == pytest.approx([v for _, v in log_b.series("train/loss")])
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)

    state = {"n": 0}

    def nan_in_epoch_2(model, batch, device):
        state["n"] += 1
        loss = step_fn(model, batch, device)
        return loss * float("inf") if state["n"] == 5 + 2 else loss

    result = Trainer(cfg(epochs=4, log_every=4, nan_check_every_step=False), tmp_path / "nan", tensorboard=False).fit(
        make_mlp(), make_loader(ds, 16, True), None, nan_in_epoch_2
    )
    assert result.stop_reason == "nan" and result.epochs_completed == 1
    last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == 1 and all(torch.isfinite(t).all() for t in last["model"].values())


def test_deterministic_mode_reproduces_a_run(tmp_path: Path) -> None:
    ds = make_data(48)
    try:
        finals = []
        for name in ("a", "b"):
            model = make_mlp(seed=2, dropout=0.2)
            Trainer(cfg(epochs=2, deterministic=True, seed=11), tmp_path / name, tensorboard=False).fit(
                model, make_loader(ds, 16, True, seed=11), None, step_fn
            )
            finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.equal(finals[0], finals[1])
    finally:
        torch.use_deterministic_algorithms(False)  # global switch: leave other tests unaffected


def test_gradual_unfreezing_trains_groups_as_they_open(tmp_path: Path) -> None:
    # The optimizer is built once, before anything is unfrozen: a group opened mid-fit must
    # still be updated (it was left out of the optimizer before, so it silently never trained).
    from dlforge.models import create_model
    from dlforge.models.weights import layer_groups

    torch.manual_seed(0)
    model = create_model("cnn-small", 2)
    groups = layer_groups(model)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(32, 3, 16, 16, generator=g), torch.randint(0, 2, (32,), generator=g))
    logger = MemoryLogger()
    start = [p.detach().clone() for p in groups[0].parameters()]
    head_start = model.head.weight.detach().clone()
    config = cfg(epochs=1, unfreeze_every=1)
    Trainer(config, tmp_path / "one", logger=logger, tensorboard=False).fit(
        model, make_loader(ds, 16, shuffle=False), None, step_fn
    )
    # Epoch 0 trains the head only.
    assert not torch.equal(model.head.weight, head_start)
    assert all(torch.equal(a, b) for a, b in zip(start, groups[0].parameters()))
    assert any(e["kind"] == "unfreeze" for e in logger.events)

    config = cfg(epochs=len(groups) + 1, unfreeze_every=1)
    torch.manual_seed(0)
    model = create_model("cnn-small", 2)
    groups = layer_groups(model)
    start = [p.detach().clone() for p in groups[0].parameters()]
    Trainer(config, tmp_path / "all", tensorboard=False).fit(model, make_loader(ds, 16, shuffle=False), None, step_fn)
    # The input-side group opened in the last epoch and was trained then.
    assert any(not torch.equal(a, b) for a, b in zip(start, groups[0].parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_ema_weights_are_validated_and_kept_as_best(tmp_path: Path) -> None:
    # Record the weights after every optimizer step (seen at the next step's call) and check
    # that the best checkpoint holds exactly their exponential moving average.
    decay = 0.8
    ds = make_data(64)
    seen: list[dict[str, torch.Tensor]] = []

    def recording_step(model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return step_fn(model, batch, device)

    model = make_mlp(seed=3)
    config = cfg(epochs=1, ema_decay=decay)
    Trainer(config, tmp_path, tensorboard=False).fit(model, make_loader(ds, 16, shuffle=False), None, recording_step)
    after_steps = seen[1:] + [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    expected = dict(after_steps[0])
    for w in after_steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w[k] for k in expected}
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]
    for k, v in expected.items():
        assert torch.allclose(best[k], v, atol=1e-6), k
    assert not torch.allclose(best["0.weight"], model.state_dict()["0.weight"])  # not the last step's
