"""A datarax source over one split of a prepared dataset (of any size), and a pipeline builder.

:class:`PreparedSource` serves the numeric fields of a split (``audio``, ``f0_hz``, ``f0_confidence``,
``loudness_db``, ``pitch``, ``velocity``; the string fields stay on the host) through datarax's indexed-access
contract, ``get_batch_at(start, size, key)``, which :class:`datarax.Pipeline` calls from its jitted ``step``. The
rows are read on the host, inside ``jax.experimental.io_callback`` (as datarax's ``StreamingDiskSource`` does),
from the dataset's shards (:class:`ddsp_datarax.shards.SplitReader`, bounded memory) or from in-memory arrays.

Order: the source shuffles with its own seed, not with the pipeline's key, so that batches depend only on
``(seed, step)``. The rows of a step are :func:`ddsp_datarax.shards.batch_rows`, the one definition the training
app's loader uses too (same epochs, same permutation, same drop-remainder, same sharding): a run can switch between
the numpy loader and the datarax pipeline, or resume from a step, and see the same examples.

Sharding for multi-host training: with ``shard_count`` processes each pipeline fetches ``batch_size`` examples per
step, its rows ``[shard_index * batch_size, (shard_index + 1) * batch_size)`` of the step's global batch of
``batch_size * shard_count``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from datarax import Pipeline
from datarax.core.config import StructuralConfig
from datarax.core.data_source import DataSourceModule
from flax import nnx
from jax.experimental import io_callback

from ddsp_datarax.shards import SplitReader, batch_rows, check_batching, open_split


NUMERIC_FIELDS = ("audio", "f0_hz", "f0_confidence", "loudness_db", "pitch", "velocity")
"""The split arrays a :class:`PreparedSource` serves (strings cannot live in JAX arrays)."""


@dataclass(frozen=True)
class PreparedSourceConfig(StructuralConfig):
    """Configuration of :class:`PreparedSource`.

    Attributes
    ----------
    seed
        Shuffling seed; epoch ``e`` uses ``jax.random.permutation(fold_in(key(seed), e), N)``.
    shuffle
        ``False`` serves the examples in stored order every epoch.
    shard_index, shard_count
        This process's shard and the number of shards (``jax.process_index()``, ``jax.process_count()``).
    """

    seed: int = 0
    shuffle: bool = True
    shard_index: int = 0
    shard_count: int = 1

    def __post_init__(self) -> None:
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"need shard_count >= 1 and 0 <= shard_index < shard_count, got {self.shard_index=}, "
                f"{self.shard_count=}"
            )
        super().__post_init__()


class _ArrayRows:
    """In-memory arrays behind the reader interface (``len``, ``read(rows, fields)``, ``row_shape``, ``dtype``)."""

    def __init__(self, data: Mapping[str, np.ndarray]) -> None:
        self.arrays = {key: np.asarray(data[key]) for key in NUMERIC_FIELDS if key in data}
        lengths = {key: len(value) for key, value in self.arrays.items()}
        if not self.arrays or len(set(lengths.values())) != 1:
            raise ValueError(f"data must hold arrays {NUMERIC_FIELDS} with one common length, got {lengths}")
        self.fields = tuple(self.arrays)
        self.length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.length

    def row_shape(self, field: str) -> tuple[int, ...]:
        return self.arrays[field].shape[1:]

    def dtype(self, field: str) -> np.dtype:
        return self.arrays[field].dtype

    def read(self, rows: np.ndarray, fields: Sequence[str]) -> dict[str, np.ndarray]:
        return {field: self.arrays[field][rows] for field in fields}


class PreparedSource(DataSourceModule):
    """Datarax source over the numeric fields of a prepared split, with seed-defined per-epoch shuffling.

    Parameters
    ----------
    config
        Seed, shuffling and sharding.
    data
        The split: a :class:`~ddsp_datarax.shards.SplitReader` (read from disk per batch, any size) or arrays with
        a common leading axis N; the fields in :data:`NUMERIC_FIELDS` are served.
    name
        Module name.

    Examples
    --------
    >>> source = PreparedSource(PreparedSourceConfig(seed=0), open_split(path, "train"))  # doctest: +SKIP
    >>> source.get_batch_at(0, 8)["audio"].shape  # doctest: +SKIP
    (8, 64000)

    See Also
    --------
    build_pipeline : a :class:`datarax.Pipeline` over a prepared split.
    """

    config: PreparedSourceConfig  # pyright: ignore[reportIncompatibleVariableOverride]

    def __init__(
        self, config: PreparedSourceConfig, data: SplitReader | Mapping[str, np.ndarray], *, name: str | None = None
    ) -> None:
        super().__init__(config, name=name or "PreparedSource")
        rows = data if isinstance(data, SplitReader) else _ArrayRows(data)
        self.fields = nnx.static(tuple(field for field in NUMERIC_FIELDS if field in rows.fields))
        self.length = nnx.static(len(rows))
        if self.length < config.shard_count:
            raise ValueError(f"data has {self.length} examples, fewer than shard_count={config.shard_count}")
        self._rows = nnx.static(rows)
        self._spec = nnx.static({
            field: jax.ShapeDtypeStruct(tuple(rows.row_shape(field)), np.dtype(rows.dtype(field)))
            for field in self.fields
        })

    def __len__(self) -> int:
        """Number of examples in the split (all shards)."""
        return self.length

    def __getitem__(self, index: int) -> dict[str, jax.Array]:
        """Example ``index`` in stored order."""
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} examples")
        example = self._rows.read(np.asarray([index % self.length]), self.fields)
        return {key: jnp.asarray(value[0]) for key, value in example.items()}

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        """This shard's examples of epoch 0, one at a time (the steps of batch size 1)."""
        for step in range(self.length // self.config.shard_count):
            (row,) = self._host_rows(step, 1)
            yield self[int(row)]

    def supports_indexed_access(self) -> bool:
        """Indexed, stateless access is supported (the Pipeline's jitted ``step`` path)."""
        return True

    def _host_rows(self, step: int, size: int) -> np.ndarray:
        return batch_rows(self.length, size, step, seed=self.config.seed, shuffle=self.config.shuffle,
                          shard_index=self.config.shard_index, shard_count=self.config.shard_count)

    def get_batch_at(self, start: int | jax.Array, size: int, key: jax.Array | None = None) -> dict[str, jax.Array]:
        """The ``size`` examples of this shard at global step ``start // size`` (``key`` is ignored).

        Parameters
        ----------
        start
            Position in this shard's stream, ``step * size`` (what :class:`datarax.Pipeline` passes); a Python
            int or a traced int32 scalar.
        size
            This shard's batch size (static).
        key
            Unused: the order comes from ``config.seed`` so that it matches the app's loader.

        Returns
        -------
        dict[str, jax.Array]
            :data:`NUMERIC_FIELDS` arrays with leading axis ``size``, read on the host by ``io_callback`` (no
            gradient flows through them).
        """
        del key
        check_batching(self.length, size, shard_index=self.config.shard_index, shard_count=self.config.shard_count)
        spec = {field: jax.ShapeDtypeStruct((size, *value.shape), value.dtype) for field, value in self._spec.items()}

        def read(step: np.ndarray | jax.Array) -> dict[str, np.ndarray]:
            return self._rows.read(self._host_rows(int(step), size), self.fields)

        batch = io_callback(read, spec, jnp.asarray(start, jnp.int32) // size)
        return jax.lax.stop_gradient(batch)

    def element_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shape and dtype of one example per field."""
        return dict(self._spec)


def build_pipeline(
    dataset_dir: Path,
    split: str,
    batch_size: int,
    seed: int,
    *,
    stages: Sequence[nnx.Module] = (),
    shuffle: bool = True,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> Pipeline:
    """A :class:`datarax.Pipeline` over one split of a prepared dataset.

    Parameters
    ----------
    dataset_dir
        Folder written by a ``train.data.prepare_*`` function (read shard by shard: any size).
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    batch_size
        Examples per step for this process.
    seed
        Shuffling seed (also seeds the pipeline's ``nnx.Rngs`` for stochastic stages).
    stages
        datarax stages applied to each batch (e.g. ``ddsp_datarax`` operators).
    shuffle
        Shuffle per epoch (``False``: stored order).
    shard_index, shard_count
        Default ``jax.process_index()`` and ``jax.process_count()``.

    Returns
    -------
    datarax.Pipeline
        ``pipeline.step()`` returns the batch of the next global step; ``for batch in pipeline`` iterates.

    Examples
    --------
    >>> pipeline = build_pipeline(Path("data/offline-demo"), "train", batch_size=8, seed=0)  # doctest: +SKIP
    >>> pipeline.step()["f0_hz"].shape  # doctest: +SKIP
    (8, 1000)

    See Also
    --------
    train.data.loader.prefetching_batches : the same batches as numpy, without datarax.
    """
    config = PreparedSourceConfig(
        seed=seed,
        shuffle=shuffle,
        shard_index=jax.process_index() if shard_index is None else shard_index,
        shard_count=jax.process_count() if shard_count is None else shard_count,
    )
    source = PreparedSource(config, open_split(Path(dataset_dir), split))
    check_batching(len(source), batch_size, shard_index=config.shard_index, shard_count=config.shard_count)
    return Pipeline(source=source, stages=list(stages), batch_size=batch_size, rngs=nnx.Rngs(seed))


__all__ = ["NUMERIC_FIELDS", "PreparedSource", "PreparedSourceConfig", "build_pipeline"]
