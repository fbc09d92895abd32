"""Engine building blocks: config, schedules, param groups, loaders, seeding, checkpoints, progress."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from dlforge.engine import (
    Diagnostics,
    Precision,
    RichProgress,
    TrainConfig,
    atomic_save,
    batch_size_of,
    build_optimizer,
    build_scheduler,
    capture_rng_state,
    grad_norms,
    layer_groups,
    load_best,
    load_checkpoint,
    lr_factor,
    make_loader,
    param_groups,
    resolve_device,
    restore_rng_state,
    seed_everything,
    set_loader_epoch,
    to_device,
)
from dlforge.errors import InputError, NotFoundError


def test_config_from_params_reports_the_bad_field() -> None:
    assert TrainConfig.from_params({"lr": 0.1}, epochs=2).epochs == 2
    with pytest.raises(InputError, match="'lr'"):
        TrainConfig.from_params({"lr": -1})
    with pytest.raises(InputError, match="unknown training parameter 'learning_rate'"):
        TrainConfig.from_params({"learning_rate": 0.1})
    with pytest.raises(InputError, match="device"):
        TrainConfig.from_params({"device": "tpu"})
    with pytest.raises(InputError, match="nesterov"):
        TrainConfig.from_params({"optimizer": "adamw", "nesterov": True})
    # Round trip through JSON, as stored in checkpoints and run records.
    c = TrainConfig(lr=0.3, betas=(0.8, 0.99))
    assert TrainConfig(**c.model_dump(mode="json")) == c


@settings(max_examples=60, deadline=None)
@given(
    scheduler=st.sampled_from(["cosine", "step", "onecycle", "constant"]),
    epochs=st.integers(1, 20),
    spe=st.integers(1, 50),
    warmup=st.integers(0, 30),
)
def test_lr_factor_stays_in_range(scheduler: str, epochs: int, spe: int, warmup: int) -> None:
    c = TrainConfig(scheduler=scheduler, epochs=epochs, warmup_steps=warmup, step_size=3, gamma=0.5)
    factors = [lr_factor(c, s, spe) for s in range(epochs * spe)]
    assert all(0.0 < f <= 1.0 + 1e-12 for f in factors)
    if warmup == 0 and scheduler != "onecycle":
        assert factors[0] == pytest.approx(1.0)
    if scheduler == "onecycle":
        assert max(factors) == pytest.approx(1.0, abs=1e-6) or epochs * spe < 3


def test_step_and_onecycle_shapes() -> None:
    c = TrainConfig(scheduler="step", epochs=9, step_size=3, gamma=0.1)
    assert [round(lr_factor(c, e * 10, 10), 6) for e in range(9)] == [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    oc = TrainConfig(scheduler="onecycle", epochs=10)
    f = [lr_factor(oc, s, 10) for s in range(100)]
    assert f[0] == pytest.approx(1 / 25) and f.index(max(f)) == 30 and f[-1] < 1e-4


def test_scheduler_drives_optimizer_lr() -> None:
    model = nn.Linear(2, 2)
    c = TrainConfig(lr=1.0, scheduler="cosine", epochs=2, warmup_steps=2, optimizer="sgd")
    opt = build_optimizer(model, c)
    sched = build_scheduler(opt, c, steps_per_epoch=5)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_factor(c, s, 5) for s in range(10)])
    assert seen[:2] == pytest.approx([0.5, 1.0])


def test_param_groups_split_and_keep_frozen_for_later_unfreezing() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2), nn.LayerNorm(2), nn.Embedding(5, 2)
    )
    model[0].weight.requires_grad_(False)
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    decay_ids = {id(p) for p in groups["decay"]["params"]}
    no_decay_ids = {id(p) for p in groups["no_decay"]["params"]}
    # Frozen weights stay in (they get no gradient, so no update) to train once unfrozen.
    assert decay_ids == {id(model[0].weight), id(model[3].weight), id(model[5].weight)}
    assert {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[3].bias)} <= no_decay_ids
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    opt = build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.05))
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 2
    before = model[0].weight.detach().clone()
    model[0](torch.randn(2, 3, 3, 3)).sum().backward()  # the conv alone: its bias trains
    opt.step()  # decoupled weight decay must not shrink a frozen weight either
    assert torch.equal(model[0].weight, before)


def test_make_loader_order_depends_only_on_seed_and_epoch() -> None:
    ds = TensorDataset(torch.arange(50))

    def order(loader, epoch):
        set_loader_epoch(loader, epoch)
        return torch.cat([b[0] for b in loader]).tolist()

    a, b = make_loader(ds, 8, shuffle=True, seed=3), make_loader(ds, 8, shuffle=True, seed=3)
    e0, e1 = order(a, 0), order(a, 1)
    assert sorted(e0) == list(range(50)) and e0 != e1
    torch.manual_seed(999)  # global RNG state must not matter
    assert order(b, 1) == e1 and order(b, 0) == e0
    assert order(make_loader(ds, 8, shuffle=True, seed=4), 0) != e0
    assert order(make_loader(ds, 8, shuffle=False), 5) == list(range(50))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=300), st.integers(1, 17), st.integers(0, 5))
def test_length_grouped_batches_cover_every_item_once_in_similar_lengths(
    lengths: list[int], batch_size: int, seed: int
) -> None:
    from dlforge.engine.loader import LengthGroupedBatchSampler

    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed, pool_batches=4)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    # only the last batch of each pool may be short
    assert sum(len(b) < batch_size for b in batches) <= -(-len(lengths) // (batch_size * 4))
    sampler.set_epoch(1)
    again = LengthGroupedBatchSampler(lengths, batch_size, seed, pool_batches=4)
    again.set_epoch(1)
    torch.manual_seed(seed + 99)  # the global RNG must not matter
    assert list(again) == list(sampler)


def test_length_grouping_cuts_padding() -> None:
    from dlforge.engine.loader import LengthGroupedBatchSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, 2000).tolist()
    batches = list(LengthGroupedBatchSampler(lengths, 32, 0))
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_padded = sum(32 * max(lengths[i : i + 32]) for i in range(0, 2000, 32))
    assert padded < 0.6 * random_padded  # close to the real token count instead of ~the maximum
    assert padded < 1.1 * sum(lengths)


class _RandomAugment(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(np.random.rand()), torch.rand(()).item(), random.random()])


@pytest.mark.slow
def test_worker_augmentations_are_reproducible_per_epoch() -> None:
    def run(epoch):
        loader = make_loader(_RandomAugment(), 4, shuffle=True, num_workers=2, seed=1)
        set_loader_epoch(loader, epoch)
        return torch.cat(list(loader))

    first, again, other = run(2), run(2), run(3)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # numpy and random are seeded per worker, not copies of the parent's state
    assert len({round(v, 6) for v in first[:, 0].tolist()}) == len(first)


def test_rng_capture_restore_roundtrip_through_checkpoint(tmp_path: Path) -> None:
    seed_everything(5)
    state = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3))
    atomic_save({"format": "dlforge-checkpoint", "model": {}, "rng": state}, tmp_path / "s.pt")
    random.random(), np.random.rand(), torch.rand(10)  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "s.pt")["rng"])  # weights_only load works
    got = (random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_atomic_save_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "last.pt"
    atomic_save({"format": "dlforge-checkpoint", "model": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"format": "dlforge-checkpoint", "model": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert os.listdir(path.parent) == ["last.pt"]  # no temp file left behind


def test_checkpoint_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_best(nn.Linear(2, 2), tmp_path)
    bad = tmp_path / "checkpoints" / "best.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_best(nn.Linear(2, 2), tmp_path)
    atomic_save({"format": "dlforge-checkpoint", "model": nn.Linear(3, 3).state_dict()}, bad)
    with pytest.raises(InputError, match="does not fit the model"):
        load_best(nn.Linear(2, 2), tmp_path)


def test_grad_norms_match_torch_and_group_by_top_level_module() -> None:
    model = nn.Sequential()
    model.add_module("encoder", nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)))
    model.add_module("head", nn.Linear(4, 1))
    model(torch.randn(3, 4)).sum().backward()
    groups = layer_groups(model)
    assert set(groups) == {"encoder", "head"} and len(groups["encoder"]) == 4
    total, per = grad_norms(groups)
    ref = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert total == pytest.approx(float(ref), rel=1e-5)
    enc = torch.nn.utils.get_total_norm([p.grad for p in model.encoder.parameters()])
    assert per["encoder"] == pytest.approx(float(enc), rel=1e-5)


def test_diagnostics_rate_limit_and_suppression_note() -> None:
    events = []
    d = Diagnostics(lambda *e: events.append(e), explode_threshold=10, min_gap=5, max_events=3)
    for step in range(1, 101):
        d.check_grads(step, 1e6, {})
    assert [e[2] for e in events] == [1, 6, 11]
    assert "suppressed" in events[-1][1]


def test_device_and_precision_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(InputError, match="fp16"):
        Precision("fp16", torch.device("cpu"))
    p = Precision("bf16", torch.device("cpu"))
    with p.autocast():
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_batch_helpers() -> None:
    batch = {"x": torch.zeros(5, 2), "meta": [torch.ones(1)], "name": "a"}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["name"] == "a" and moved["x"].shape == (5, 2)
    assert batch_size_of((torch.zeros(7, 3), torch.zeros(7))) == 7
    assert batch_size_of(([torch.zeros(3, 8, 8)] * 4, [{"boxes": torch.zeros(1, 4)}] * 4)) == 4
    assert batch_size_of({"input_ids": torch.zeros(6, 10)}) == 6


def test_rich_progress_draws_to_its_console() -> None:
    buf = io.StringIO()
    progress = RichProgress(epochs=2, console=Console(file=buf, force_terminal=False, width=120))
    for step in range(1, 5):
        progress(1 if step <= 2 else 2, step, 4, {"train/loss": 0.5} if step % 2 == 0 else {})
    progress(2, 4, 4, {"train/epoch_loss": 0.25, "val/accuracy": 0.9})
    progress.close()
    out = buf.getvalue()
    assert "epoch 2/2" in out and "val/accuracy=0.9" in out
