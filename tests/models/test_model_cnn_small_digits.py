"""cnn-small learns sklearn's 8x8 digits to >= 98% held-out accuracy with a plain loop."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dlforge.models import create_model


@pytest.mark.slow
def test_cnn_small_reaches_98_percent_on_digits() -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)  # native 8x8, one channel
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr), torch.from_numpy(y_te)

    torch.manual_seed(0)
    model = create_model("cnn-small", 10, in_chans=1, width=16)
    epochs, batch = 10, 64
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=epochs * -(-len(x_tr) // batch)
    )
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_te).argmax(1) == y_te).float().mean().item()
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    print(f"cnn-small digits: accuracy={accuracy:.4f} train_wall_s={wall:.1f} train_cpu_s={cpu:.1f}")
    assert accuracy >= 0.98
