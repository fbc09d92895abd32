"""Seeding, deterministic mode, and capture/restore of every RNG a run touches.

Exact resume depends on two things: the random state at an epoch boundary is
saved and restored (:func:`capture_rng_state` / :func:`restore_rng_state`), and
data order comes from generators seeded from ``(seed, epoch)``
(:func:`derive_seed`), not from state that drifts with the run's history.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed derived from ``seed`` and integer keys (e.g. the epoch).

    Uses numpy's SeedSequence so that nearby inputs (epoch 3 and 4) give
    unrelated streams.
    """
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device).

    Args:
        seed: The seed.
        deterministic: Also request deterministic algorithms. ``warn_only`` is
            used so an op without a deterministic kernel warns instead of failing
            the run.
    """
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)  # also seeds all CUDA devices
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def capture_rng_state() -> dict[str, Any]:
    """The state of python, numpy, torch and CUDA generators, as checkpoint-safe values.

    Only tensors, ints, floats, strings, lists and None are used so the
    checkpoint loads with ``torch.load(weights_only=True)``.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`capture_rng_state`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
