"""Overhead of the dlforge Trainer over a minimal hand-written PyTorch loop.

Both train the same small CNN on the same synthetic CIFAR-sized data for the
same number of steps, through the same DataLoader, with the same optimizer.
Rounds alternate (hand, dlforge, hand, dlforge, ...) so that load from other
processes hits both alike. The dlforge timing is the whole ``fit`` call:
optimizer/scheduler setup, logging every ``log_every`` steps, TensorBoard
files, gradient-norm diagnostics and the end-of-epoch checkpoint included.

Prints one JSON line: both throughputs (samples/s) and their ratio
(dlforge / hand-written; 1.0 means no overhead), from wall-clock time, plus the
same ratio from process CPU time (steadier when other jobs share the machine)
and the median of per-round ratios.

Usage: python benchmarks/train_overhead.py [--seconds 25] [--rounds 3] [--batch-size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from dlforge.engine import TrainConfig, Trainer, make_loader, resolve_device, to_device


def small_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 16, 16, 16)
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (B, 32, 8, 8)
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # (B, 64)
        nn.Linear(64, num_classes),
    )


def synthetic_data(n: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)  # (N, 3, 32, 32)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(x, y)


def step_fn(model: nn.Module, batch, device: torch.device) -> torch.Tensor:
    x, y = to_device(batch, device)
    return F.cross_entropy(model(x), y)


def hand_loop(model: nn.Module, loader, lr: float, device: torch.device) -> float:
    """The reference: what someone writes by hand. Returns seconds."""
    t0 = time.perf_counter()
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def dlforge_loop(model: nn.Module, loader, lr: float, device: torch.device, run_dir: Path) -> float:
    """The same training through ``Trainer.fit``. Returns seconds."""
    config = TrainConfig(
        epochs=1, lr=lr, optimizer="sgd", momentum=0.9, scheduler="constant", device=device.type, log_every=50
    )
    t0 = time.perf_counter()
    Trainer(config, run_dir).fit(model, loader, None, step_fn)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=25.0, help="target seconds per approach (all rounds)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: least sensitive to other load on a small shared machine)",
    )
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    bs = args.batch_size
    lr = 0.01

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        # Warm-up both paths (lazy imports, allocator, thread pools) and calibrate the step count.
        warm = make_loader(synthetic_data(bs * 10), bs, shuffle=True, seed=0)
        hand_loop(small_cnn(), warm, lr, device)
        dlforge_loop(small_cnn(), warm, lr, device, tmp_dir / "warmup")
        per_step = hand_loop(small_cnn(), warm, lr, device) / len(warm)
        steps = max(20, int(args.seconds / args.rounds / per_step))
        print(f"calibrated: {per_step * 1000:.1f} ms/step -> {steps} steps per round", file=sys.stderr)

        data = synthetic_data(steps * bs, seed=1)
        hand_times, dl_times = [], []
        hand_cpu, dl_cpu = [], []
        for r in range(args.rounds):
            # Identical initial weights and data order for both in each round.
            torch.manual_seed(r)
            init = small_cnn().state_dict()
            order = [("hand", "dlforge"), ("dlforge", "hand")][r % 2]
            for which in order:
                model = small_cnn()
                model.load_state_dict(init)
                loader = make_loader(data, bs, shuffle=True, seed=r)
                c0 = time.process_time()
                if which == "hand":
                    hand_times.append(hand_loop(model, loader, lr, device))
                    hand_cpu.append(time.process_time() - c0)
                else:
                    dl_times.append(dlforge_loop(model, loader, lr, device, tmp_dir / f"round{r}"))
                    dl_cpu.append(time.process_time() - c0)
            print(f"round {r}: hand {hand_times[-1]:.2f}s  dlforge {dl_times[-1]:.2f}s", file=sys.stderr)

    samples = steps * bs
    hand_tp = samples * len(hand_times) / sum(hand_times)
    dl_tp = samples * len(dl_times) / sum(dl_times)
    print(
        json.dumps(
            {
                "benchmark": "train_overhead",
                "model": "small_cnn_3conv",
                "input": [3, 32, 32],
                "batch_size": bs,
                "steps_per_round": steps,
                "rounds": args.rounds,
                "device": device.type,
                "torch_threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "handwritten_samples_per_s": round(hand_tp, 1),
                "dlforge_samples_per_s": round(dl_tp, 1),
                "ratio": round(dl_tp / hand_tp, 4),
                "ratio_cpu_time": round(sum(hand_cpu) / sum(dl_cpu), 4),
                "ratio_per_round": [round(h / d, 4) for h, d in zip(hand_times, dl_times)],
                "ratio_median_round": round(statistics.median(h / d for h, d in zip(hand_times, dl_times)), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
