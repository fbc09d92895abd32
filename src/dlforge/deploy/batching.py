"""Dynamic micro-batching: concurrent requests share one ONNX Runtime call.

One :class:`MicroBatcher` per served model owns an asyncio queue and one worker
task. Requests are preprocessed in worker threads and queued as
:class:`~dlforge.deploy.handlers.Prepared` chunks; the worker takes what is
queued, waits up to ``max_wait_ms`` for requests that have arrived but are
still being read or decoded (never when nobody else is coming, so a lone
request pays no wait), concatenates up to ``max_batch`` items, runs ONNX Runtime once in a
dedicated thread and hands each request its rows of the outputs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlforge.deploy.handlers import Prepared, concat_prepared


@dataclass
class _Job:
    prepared: Prepared
    future: asyncio.Future[dict[str, np.ndarray]]

    def key(self) -> tuple[Any, ...]:
        # Requests can only share a call when every feed matches past the batch axis.
        return tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(self.prepared.feeds.items()))


_STOP = object()


class Ticket:
    """Marks a request that will reach the queue soon (it is still reading or decoding its body).

    The worker waits for ticket holders (up to ``max_wait_ms``) before running a
    batch; :meth:`release` is idempotent and happens when the request is queued or fails.
    """

    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher = batcher
        self._held = True
        batcher._incoming += 1

    def release(self) -> None:
        if self._held:
            self._held = False
            self._batcher._incoming -= 1

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class MicroBatcher:
    """Queues prepared requests for one model and runs them in shared batches.

    Args:
        run: The model call (``Predictor.run``): feeds -> outputs, blocking.
        max_batch: Most items in one call (a larger single request runs alone).
        max_wait_ms: Longest time the first queued request waits for company.
        on_batch: Called with each executed batch size (metrics).
    """

    def __init__(
        self,
        run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Any] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlforge-ort")
        self._incoming = 0  # requests announced (tickets) but not queued yet
        self._carry: _Job | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        """Start the worker on the running event loop."""
        if self.running:
            return
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._loop(), name="dlforge-batcher")

    async def stop(self) -> None:
        """Finish every queued request, then stop the worker."""
        if self._queue is not None and self.running:
            await self._queue.put(_STOP)
            await self._worker  # type: ignore[misc]
        self._executor.shutdown(wait=True)

    def announce(self) -> Ticket:
        """Tell the worker a request is on its way (call when the request arrives)."""
        return Ticket(self)

    async def infer(
        self, prepare: Callable[[], Prepared], ticket: Ticket | None = None
    ) -> tuple[Prepared, dict[str, np.ndarray]]:
        """Preprocess in a thread (``prepare``), queue, and await this request's outputs.

        Args:
            prepare: Builds the request's feeds (runs in a worker thread).
            ticket: The request's :meth:`announce` ticket, released once it is queued.

        Returns:
            The prepared request (its ``meta`` is needed for postprocessing) and its outputs.
        """
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        with ticket or self.announce():
            prepared = await asyncio.to_thread(prepare)
            future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
            await self._queue.put(_Job(prepared, future))
        return prepared, await future

    async def _next(self, timeout: float | None) -> Any:
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout <= 0:
            raise asyncio.TimeoutError
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while True:
            if self._carry is not None:
                first, self._carry = self._carry, None
            elif stopping:
                return
            else:
                first = await self._next(None)
                if first is _STOP:
                    return
            jobs = [first]
            n = len(first.prepared)
            key = first.key()
            deadline = loop.time() + self.max_wait
            while n < self.max_batch and not stopping:
                # Only wait when more requests are on their way; otherwise go now.
                wait = deadline - loop.time() if self._incoming > 0 else 0.0
                try:
                    job = await self._next(wait)
                except asyncio.TimeoutError:
                    break
                if job is _STOP:
                    stopping = True
                    break
                if job.key() != key or n + len(job.prepared) > self.max_batch:
                    self._carry = job
                    break
                jobs.append(job)
                n += len(job.prepared)
            await self._execute(jobs, loop)
            if stopping and self._carry is None:
                # Drain anything queued behind the stop marker before exiting.
                while self._queue is not None and not self._queue.empty():
                    job = self._queue.get_nowait()
                    if job is not _STOP:
                        await self._execute([job], loop)
                return

    async def _execute(self, jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        batch = concat_prepared([j.prepared for j in jobs])
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, batch.feeds)
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting request
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        start = 0
        for j in jobs:
            size = len(j.prepared)
            part = {k: v[start : start + size] for k, v in outputs.items()}
            start += size
            if not j.future.done():
                j.future.set_result(part)
