"""DataLoaders whose order depends only on ``(seed, epoch)``, and batch-to-device moves.

A loader built by :func:`make_loader` shuffles with a generator re-seeded at
every epoch (the trainer calls :func:`set_loader_epoch`), so epoch 3 sees the
same order whether the run went straight through or resumed after epoch 2.
Worker processes get seeds from the same ``(seed, epoch)`` pair, so random
augmentations in workers are reproducible too.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dlforge.engine.seeding import derive_seed

# Separate streams derived from one seed, so data order and worker seeds never collide.
_ORDER_STREAM = 1
_WORKER_STREAM = 2


class EpochSampler(Sampler[int]):
    """Sequential or shuffled indices, the shuffle a pure function of ``(seed, epoch)``.

    Args:
        data_source: The dataset (only its length is used).
        shuffle: Permute indices each epoch.
        seed: Base seed.
        worker_generator: The DataLoader's generator; re-seeded with the epoch so
            the per-epoch worker base seeds are reproducible as well.
    """

    def __init__(
        self,
        data_source: Sized,
        shuffle: bool,
        seed: int,
        worker_generator: torch.Generator | None = None,
    ) -> None:
        self.n = len(data_source)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.worker_generator = worker_generator
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the order (and worker seeds) of ``epoch``."""
        self.epoch = epoch
        if self.worker_generator is not None:
            self.worker_generator.manual_seed(derive_seed(self.seed, epoch, _WORKER_STREAM))

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        gen = torch.Generator()
        gen.manual_seed(derive_seed(self.seed, self.epoch, _ORDER_STREAM))
        return iter(torch.randperm(self.n, generator=gen).tolist())

    def __len__(self) -> int:
        return self.n


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length, shuffled, the order a pure function of ``(seed, epoch)``.

    Each epoch permutes the indices, cuts the permutation into pools of ``pool_batches``
    batches, sorts each pool by length and slices it into batches, then shuffles the
    batches. With each batch trimmed to its longest item (see ``trim_padding``) a
    transformer computes on ~the real tokens instead of on padding to ``max_len``; the
    pools keep enough randomness that batches are not the same every epoch (the scheme of
    Hugging Face's ``group_by_length``).

    Args:
        lengths: Each item's length (real tokens).
        batch_size: Items per batch (the last batch of a pool may be smaller).
        seed: Base seed.
        pool_batches: Batches per sorted pool.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50) -> None:
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size = batch_size
        self.seed = seed
        self.pool = batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator()
        gen.manual_seed(derive_seed(self.seed, self.epoch, _ORDER_STREAM))
        perm = torch.randperm(len(self.lengths), generator=gen)
        batches = []
        for start in range(0, len(perm), self.pool):
            pool = perm[start : start + self.pool]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += [pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)]
        return iter([batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()])

    def __len__(self) -> int:
        n = len(self.lengths)
        return sum(-(-min(self.pool, n - start) // self.batch_size) for start in range(0, n, self.pool))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` that also seeds numpy and ``random`` in the worker.

    PyTorch seeds torch in each worker from the loader's base seed; numpy and
    python ``random`` would otherwise be copies of the parent's state.
    """
    worker_seed = torch.initial_seed() % (1 << 32)
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader with epoch-reproducible order for the trainer.

    Args:
        dataset: A map-style dataset (with ``__len__``).
        batch_size: Samples per batch.
        shuffle: Shuffle each epoch (order derived from ``seed`` and the epoch).
        num_workers: Worker processes (0 loads in the main process).
        seed: Base seed (use the run's seed).
        collate_fn: Batch collation; the default stacks tensors.
        drop_last: Drop the last incomplete batch.
        pin_memory: Pin host memory; default: when CUDA is available.

    Returns:
        A DataLoader whose ``sampler`` has ``set_epoch(epoch)``.
    """
    generator = torch.Generator()
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, worker_generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
    )


def make_length_grouped_loader(
    dataset: Dataset,
    lengths: Sequence[int],
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    """A training loader over :class:`LengthGroupedBatchSampler` batches (see there)."""
    return DataLoader(
        dataset,
        batch_sampler=LengthGroupedBatchSampler(lengths, batch_size, seed),
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=seed_worker if num_workers > 0 else None,
    )


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Tell a loader's sampler (or batch sampler) which epoch starts, when it cares.

    Works with :class:`EpochSampler` and ``DistributedSampler``; other loaders
    are left alone (their shuffling then follows the restored global RNG).
    """
    for holder in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if holder is not None and callable(getattr(holder, "set_epoch", None)):
            holder.set_epoch(epoch)
            return
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    if inner is not None and callable(getattr(inner, "set_epoch", None)):
        inner.set_epoch(epoch)


def to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move every tensor in a (nested) batch of tuples, lists and dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        moved = {k: to_device(v, device, non_blocking) for k, v in batch.items()}
        try:
            return type(batch)(moved)  # type: ignore[call-arg]  # keeps BatchEncoding-like types
        except TypeError:  # mappings whose constructor takes something else (defaultdict)
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Best-effort number of samples in a batch.

    A tensor counts its leading dim; a tuple/list counts its first element
    (``(inputs, targets)`` -> ``len(inputs)``, ``(list_of_images, targets)`` ->
    the list length); a mapping counts its first value. Step functions that
    know better return ``(loss, n_samples)``.
    """
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    if isinstance(batch, Mapping):
        for v in batch.values():
            return batch_size_of(v)
        return 1
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)) and len(batch) > 0:
        first = batch[0]
        if isinstance(first, torch.Tensor):
            return int(first.shape[0]) if first.dim() > 0 else len(batch)
        if isinstance(first, Sequence) and not isinstance(first, (str, bytes)):
            return len(first)
        if isinstance(first, Mapping):
            return batch_size_of(first)
        return len(batch)
    return 1
