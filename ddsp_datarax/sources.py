"""A datarax source over one split of a prepared dataset, and a pipeline builder.

:class:`PreparedSource` serves the numeric arrays of a split (``audio``, ``f0_hz``, ``f0_confidence``,
``loudness_db``, ``pitch``, ``velocity``; the string fields stay on the host) through datarax's indexed-access
contract, ``get_batch_at(start, size, key)``, which :class:`datarax.Pipeline` calls from its jitted ``step``.

Order: the source shuffles with its own seed, not with the pipeline's key, so that batches depend only on
``(seed, step)`` and match :func:`train.data.dataset.batch_iterator` exactly (same epochs, same permutation
``jax.random.permutation(fold_in(key(seed), epoch), N)``, same drop-remainder, same sharding): a run can switch
between the numpy iterator and the datarax pipeline, or resume from a step, and see the same examples.

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


class PreparedSource(DataSourceModule):
    """Datarax source over the numeric arrays of a prepared split, with seed-defined per-epoch shuffling.

    Parameters
    ----------
    config
        Seed, shuffling and sharding.
    data
        Split arrays with a common leading axis N (e.g. :func:`train.data.dataset.load_split`); the keys in
        :data:`NUMERIC_FIELDS` are kept.
    name
        Module name.

    Examples
    --------
    >>> source = PreparedSource(PreparedSourceConfig(seed=0), load_split(path, "train"))  # doctest: +SKIP
    >>> source.get_batch_at(0, 8)["audio"].shape  # doctest: +SKIP
    (8, 64000)

    See Also
    --------
    build_pipeline : a :class:`datarax.Pipeline` over a prepared split.
    """

    config: PreparedSourceConfig  # pyright: ignore[reportIncompatibleVariableOverride]

    def __init__(
        self, config: PreparedSourceConfig, data: Mapping[str, np.ndarray], *, name: str | None = None
    ) -> None:
        super().__init__(config, name=name or "PreparedSource")
        arrays = {key: jnp.asarray(data[key]) for key in NUMERIC_FIELDS if key in data}
        lengths = {key: int(value.shape[0]) for key, value in arrays.items()}
        if not arrays or len(set(lengths.values())) != 1:
            raise ValueError(f"data must hold arrays {NUMERIC_FIELDS} with one common length, got {lengths}")
        self.length = next(iter(lengths.values()))
        if self.length < config.shard_count:
            raise ValueError(f"data has {self.length} examples, fewer than shard_count={config.shard_count}")
        self.data = nnx.data(arrays)

    def __len__(self) -> int:
        """Number of examples in the split (all shards)."""
        return self.length

    def __getitem__(self, index: int) -> dict[str, jax.Array]:
        """Example ``index`` in stored order."""
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} examples")
        return {key: value[index] for key, value in self.data.items()}

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        """This shard's examples of epoch 0, one at a time, in the order :meth:`get_batch_at` serves them."""
        per_shard = self.length // self.config.shard_count
        order = self._order(jnp.int32(0))
        for position in range(self.config.shard_index * per_shard, (self.config.shard_index + 1) * per_shard):
            yield self[int(order[position])]

    def supports_indexed_access(self) -> bool:
        """Indexed, stateless access is supported (the Pipeline's jitted ``step`` path)."""
        return True

    def _order(self, epoch: jax.Array) -> jax.Array:
        if not self.config.shuffle:
            return jnp.arange(self.length)
        key = jax.random.fold_in(jax.random.key(self.config.seed), epoch)
        return jax.random.permutation(key, self.length)

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
            Unused: the order comes from ``config.seed`` so that it matches the numpy iterator.

        Returns
        -------
        dict[str, jax.Array]
            :data:`NUMERIC_FIELDS` arrays with leading axis ``size``.
        """
        del key
        global_batch = size * self.config.shard_count
        per_epoch = self.length // global_batch
        if per_epoch < 1:
            raise ValueError(f"batch of {global_batch} (size * shard_count) exceeds the {self.length} examples")
        step = jnp.asarray(start, jnp.int32) // size
        order = self._order(step // per_epoch)
        first = (step % per_epoch) * global_batch + self.config.shard_index * size
        rows = jax.lax.dynamic_slice_in_dim(order, first, size)
        return {name: jnp.take(value, rows, axis=0) for name, value in self.data.items()}

    def element_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shape and dtype of one example per field."""
        return {key: jax.ShapeDtypeStruct(value.shape[1:], value.dtype) for key, value in self.data.items()}


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
        Folder written by a ``train.data.prepare_*`` function.
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
    train.data.dataset.batch_iterator : the same batches as numpy, without datarax.
    """
    # The prepared-dataset format belongs to the training app; importing it here, not at module level, keeps
    # `import ddsp_datarax` (the operators, PreparedSource over in-memory arrays) free of the app package.
    from train.data.dataset import load_split

    config = PreparedSourceConfig(
        seed=seed,
        shuffle=shuffle,
        shard_index=jax.process_index() if shard_index is None else shard_index,
        shard_count=jax.process_count() if shard_count is None else shard_count,
    )
    source = PreparedSource(config, load_split(Path(dataset_dir), split))
    if batch_size < 1 or batch_size * config.shard_count > len(source):
        raise ValueError(
            f"batch_size must be >= 1 with batch_size * shard_count <= {len(source)} examples, got {batch_size}"
        )
    return Pipeline(source=source, stages=list(stages), batch_size=batch_size, rngs=nnx.Rngs(seed))


__all__ = ["NUMERIC_FIELDS", "PreparedSource", "PreparedSourceConfig", "build_pipeline"]
