"""The training loader: shards read on background threads, a bounded number of batches ahead, exact resume.

The batch of global step ``s`` is :func:`ddsp_datarax.shards.batch_rows` of ``(seed, s)`` (the same definition as
:func:`train.data.dataset.batch_iterator` and the datarax source), so prefetching changes when a batch is read,
never which examples it holds: resuming at step ``s`` gives the same batches as an uninterrupted run. Memory holds
at most ``prefetch`` batches beyond the one being used, whatever the dataset's size.
"""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Iterator

import numpy as np

from ddsp_datarax.shards import SplitReader, batch_rows, check_batching


def prefetching_batches(
    reader: SplitReader,
    batch_size: int,
    *,
    seed: int,
    fields: tuple[str, ...],
    start_step: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    workers: int = 2,
    prefetch: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield this process's batches from ``start_step`` on, read ``prefetch`` steps ahead by ``workers`` threads.

    Parameters
    ----------
    reader
        The split (:func:`ddsp_datarax.shards.open_split`).
    batch_size
        Examples per step for this process; the global batch is ``batch_size * shard_count``.
    seed
        Shuffling seed.
    fields
        Fields to read (e.g. ``("audio", "f0_hz", "loudness_db", "f0_confidence")``).
    start_step
        First global step.
    shard_index, shard_count
        This process and the number of processes (``jax.process_index()``, ``jax.process_count()``).
    workers
        Reader threads (``os.preadv`` releases the GIL, so threads overlap their reads).
    prefetch
        Batches requested ahead of the one yielded (>= 1).

    Yields
    ------
    dict[str, numpy.ndarray]
        ``fields``, leading axis ``batch_size``; identical to :func:`train.data.dataset.batch_iterator`'s.
    """
    check_batching(len(reader), batch_size, shard_index=shard_index, shard_count=shard_count)
    if workers < 1 or prefetch < 1:
        raise ValueError(f"workers and prefetch must be >= 1, got {workers=}, {prefetch=}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")

    def read_step(step: int) -> dict[str, np.ndarray]:
        rows = batch_rows(len(reader), batch_size, step, seed=seed, shard_index=shard_index, shard_count=shard_count)
        return reader.read(rows, fields)

    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ddsp-loader") as pool:
        pending = collections.deque(pool.submit(read_step, step) for step in range(start_step, start_step + prefetch))
        next_step = start_step + prefetch
        try:
            while True:
                batch = pending.popleft().result()
                pending.append(pool.submit(read_step, next_step))
                next_step += 1
                yield batch
        finally:
            for future in pending:
                future.cancel()


__all__ = ["prefetching_batches"]
