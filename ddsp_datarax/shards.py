"""The sharded prepared-dataset format, read with bounded memory, and the one definition of epoch order and batches.

A prepared dataset is one folder (``format_version`` 2)::

    <dataset_dir>/
        manifest.json                 written last: its presence means every listed shard is complete
        train/shard-00000/            one folder per shard of up to ``shard_size`` examples
            audio.npy  f0_hz.npy  f0_confidence.npy  loudness_db.npy  pitch.npy  velocity.npy
            instrument.npy  family.npy  id.npy
            shard.json                written last in its folder: build id, example count, bytes per file
        train/shard-00001/ ...
        validation/ ...  test/ ...

Each ``.npy`` holds one field of the shard's examples (leading axis = examples), in NumPy's own ``.npy`` format with
plain dtypes only (no pickled objects; strings are fixed-width ``<U``): any tool reads a shard with
``numpy.load(path, mmap_mode="r", allow_pickle=False)``.

Why ``.npy`` shards read with ``os.preadv``: random access to one example is one positioned read of a fixed-size
row straight into the batch buffer (no decoding, no per-record framing, no copy), the bytes depend only on the
arrays (a rebuild is byte-identical), and nothing needs more than numpy. datarax's own out-of-core source
(``datarax.sources.StreamingDiskSource``) reads ``.npy`` the same way (through a memory map); we read with
``preadv`` instead so that a long epoch does not leave the whole dataset's pages mapped in the process (resident
memory stays at the size of the batches in flight). ArrayRecord + Grain would add a serialisation step per record
and two dependencies for no gain on fixed-shape rows.

The order of examples (one definition, shared by the app's loader and :class:`ddsp_datarax.sources.PreparedSource`):
epoch ``e`` visits ``jax.random.permutation(fold_in(key(seed), e), N)``; a global batch of ``G`` examples takes
``G`` consecutive positions of it, ``steps_per_epoch = N // G`` (the remainder is dropped), and process ``k`` of
``P`` takes rows ``[k * G / P, (k + 1) * G / P)`` of each global batch. The batch of global step ``s`` therefore
depends only on ``(seed, s)``, which makes resume exact.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

SPLITS = ("train", "validation", "test")
"""The split names of every prepared dataset, in this order."""

ARRAY_FIELDS = ("audio", "f0_hz", "f0_confidence", "loudness_db", "pitch", "velocity", "instrument", "family", "id")
"""The fields stored for each example."""

_EMPTY_DTYPES = {"audio": "<f4", "f0_hz": "<f4", "f0_confidence": "<f4", "loudness_db": "<f4", "pitch": "<i4",
                 "velocity": "<i4", "instrument": "<U1", "family": "<U1", "id": "<U1"}

MANIFEST_NAME = "manifest.json"
SHARD_INFO_NAME = "shard.json"
FORMAT_VERSION = 2
"""Bumped when the on-disk layout changes; version 1 was one ``.npz`` per split, loaded whole."""


class DataError(ValueError):
    """A dataset, shard or file that cannot be used; the message names the path and what was expected."""


def build_id(build: Mapping[str, Any]) -> str:
    """Short sha256 of a build description (sorted JSON): shards and manifest of one build carry the same id."""
    return hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()[:16]


def shard_name(split: str, index: int) -> str:
    """The shard folder of ``split`` number ``index``, relative to the dataset folder (``train/shard-00003``)."""
    return f"{split}/shard-{index:05d}"


def load_manifest(dataset_dir: Path) -> dict[str, Any]:
    """Read ``<dataset_dir>/manifest.json``.

    Raises
    ------
    DataError
        If the folder has no manifest (never prepared, or interrupted), it is not valid JSON, it was prepared by
        an older version of this format (one ``.npz`` per split), or its ``format_version`` is unknown.
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: no manifest (the dataset was never prepared, or preparing it was interrupted)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable JSON ({error}); delete the folder to rebuild") from error
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version == 1:
        raise DataError(
            f"{path}: prepared by an older version of ddsp-jax (format 1, one .npz per split); run "
            f"`ddsp-train prepare` again to rebuild it as shards"
        )
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: expected format_version {FORMAT_VERSION}, got {version!r}")
    return manifest


@dataclass(frozen=True)
class _Column:
    """One field of one shard: where its rows start in the file and how they are laid out."""

    path: Path
    offset: int
    dtype: np.dtype
    row_shape: tuple[int, ...]

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _open_column(path: Path, count: int) -> _Column:
    """Parse a ``.npy`` header and check that the file holds exactly ``count`` rows."""
    if not path.is_file():
        raise DataError(f"{path}: shard file missing (the dataset is incomplete; run prepare again)")
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f".npy version {version} (expected 1.0 or 2.0)")
            shape, fortran_order, dtype = read_header(handle)
            offset = handle.tell()
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a .npy file ({error})") from error
    if dtype.hasobject or fortran_order or not shape or shape[0] != count:
        raise DataError(f"{path}: expected a C-order plain array of {count} rows, got {shape} {dtype}")
    column = _Column(path, offset, dtype, tuple(int(n) for n in shape[1:]))
    expected_bytes = offset + count * column.row_bytes
    actual_bytes = path.stat().st_size
    if actual_bytes != expected_bytes:
        raise DataError(f"{path}: truncated or padded ({actual_bytes} bytes, the header implies {expected_bytes})")
    return column


def _open_shard(dataset_dir: Path, name: str, *, count: int, build: str) -> dict[str, _Column]:
    folder = Path(dataset_dir) / name
    info_path = folder / SHARD_INFO_NAME
    if not info_path.is_file():
        raise DataError(f"{folder}: shard missing or incomplete (no {SHARD_INFO_NAME}); run prepare again")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{info_path}: not readable JSON ({error}); run prepare again") from error
    if info.get("build_id") != build:
        raise DataError(
            f"{folder}: shard from another build (build id {info.get('build_id')!r}, the manifest says {build!r}); "
            f"run prepare again"
        )
    if info.get("count") != count:
        raise DataError(f"{folder}: holds {info.get('count')} examples but the manifest says {count}")
    return {field: _open_column(folder / f"{field}.npy", count) for field in ARRAY_FIELDS}


class SplitReader:
    """Bounded-memory, thread-safe random access to one split of a prepared dataset.

    Opening reads the manifest and every shard's header (checking that no shard is missing, truncated or from
    another build); :meth:`read` then fetches any rows with one positioned read per row and field, so memory holds
    only the rows asked for.

    Parameters
    ----------
    dataset_dir
        A folder written by ``train.data`` (``ddsp-train prepare``).
    split
        ``"train"``, ``"validation"`` or ``"test"``.

    Examples
    --------
    >>> reader = SplitReader(Path("data/offline-demo"), "train")  # doctest: +SKIP
    >>> reader.read(np.array([3, 0]))["audio"].shape  # doctest: +SKIP
    (2, 64000)
    """

    def __init__(self, dataset_dir: Path, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.manifest = load_manifest(self.dataset_dir)
        shards = self.manifest.get("splits", {}).get(split, {}).get("shards", [])
        build = self.manifest.get("build_id")
        self._shards = [_open_shard(self.dataset_dir, s["name"], count=s["count"], build=build) for s in shards]
        counts = np.asarray([s["count"] for s in shards], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.fields = ARRAY_FIELDS
        self._dtypes = {field: self._widest(field) for field in ARRAY_FIELDS}

    def _widest(self, field: str) -> np.dtype:
        dtypes = [shard[field].dtype for shard in self._shards]
        if not dtypes:
            return np.dtype(_EMPTY_DTYPES[field])
        return functools.reduce(np.promote_types, dtypes)

    def __len__(self) -> int:
        """Number of examples in the split."""
        return int(self._starts[-1])

    def row_shape(self, field: str) -> tuple[int, ...]:
        """Shape of one example's ``field`` (e.g. ``(n_samples,)`` for audio, ``()`` for pitch)."""
        if not self._shards:
            n_samples = int(self.manifest.get("n_samples", 0))
            n_frames = n_samples // int(self.manifest.get("hop_size", 64))
            return {"audio": (n_samples,), "f0_hz": (n_frames,), "f0_confidence": (n_frames,),
                    "loudness_db": (n_frames,)}.get(field, ())
        return self._shards[0][field].row_shape

    def dtype(self, field: str) -> np.dtype:
        """dtype of ``field`` as :meth:`read` returns it (the widest string width over the shards)."""
        return self._dtypes[field]

    def read(self, rows: Sequence[int] | np.ndarray, fields: Sequence[str] = ARRAY_FIELDS) -> dict[str, np.ndarray]:
        """The examples at ``rows`` (global indices, any order, repeats allowed), one array per field.

        Parameters
        ----------
        rows
            ``(n,)`` integer indices in ``[0, len(self))``.
        fields
            Which fields to read (default all).

        Returns
        -------
        dict[str, numpy.ndarray]
            ``field -> (n, *row_shape)`` arrays, in the order of ``rows``.
        """
        rows = np.asarray(rows, np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows must lie in [0, {len(self)}), got {rows.min()}..{rows.max()}")
        shard_of_row = np.searchsorted(self._starts, rows, side="right") - 1
        out = {field: np.empty((rows.size, *self.row_shape(field)), self._dtypes[field]) for field in fields}
        for shard_index in np.unique(shard_of_row):
            positions = np.flatnonzero(shard_of_row == shard_index)
            local = rows[positions] - self._starts[shard_index]
            for field in fields:
                _read_rows(self._shards[shard_index][field], local, positions, out[field])
        return out


def _read_rows(column: _Column, local_rows: np.ndarray, positions: np.ndarray, out: np.ndarray) -> None:
    """Read ``column``'s rows ``local_rows`` into ``out[positions]`` with one ``preadv`` each."""
    direct = column.dtype == out.dtype
    with column.path.open("rb", buffering=0) as handle:
        descriptor = handle.fileno()
        for local, position in zip(local_rows.tolist(), positions.tolist(), strict=True):
            offset = column.offset + local * column.row_bytes
            if direct:
                target = out[position : position + 1]
                n_read = os.preadv(descriptor, [memoryview(target).cast("B")], offset)
            else:
                data = os.pread(descriptor, column.row_bytes, offset)
                n_read = len(data)
                out[position] = np.frombuffer(data, column.dtype).reshape(column.row_shape)
            if n_read != column.row_bytes:
                raise DataError(f"{column.path}: truncated while reading row {local}")


def open_split(dataset_dir: Path, split: str) -> SplitReader:
    """:class:`SplitReader` over ``split`` of the prepared dataset at ``dataset_dir``."""
    return SplitReader(Path(dataset_dir), split)


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    """Number of full global batches per epoch (the remainder is dropped)."""
    return n_examples // global_batch


@functools.lru_cache(maxsize=4)
def _cached_permutation(n_examples: int, seed: int, epoch: int) -> np.ndarray:
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    order = np.asarray(jax.random.permutation(key, n_examples))
    order.flags.writeable = False
    return order


def epoch_permutation(n_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: ``jax.random.permutation(fold_in(key(seed), epoch), n_examples)``.

    Depends only on ``(seed, epoch, n_examples)``; read-only (cached, shared between threads).
    """
    return _cached_permutation(int(n_examples), int(seed), int(epoch))


def check_batching(n_examples: int, batch_size: int, *, shard_index: int = 0, shard_count: int = 1) -> None:
    """Refuse batch and process settings that cannot give one full global batch; one-line messages.

    Raises
    ------
    ValueError
        If ``shard_count < 1``, ``shard_index`` is outside ``[0, shard_count)``, ``batch_size < 1``, or the split
        holds fewer examples than one global batch (``batch_size * shard_count``).
    """
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"need shard_count >= 1 and 0 <= shard_index < shard_count, got {shard_index=}, {shard_count=}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size * shard_count > n_examples:
        raise ValueError(
            f"the dataset holds {n_examples} examples, fewer than one global batch of batch_size * shard_count = "
            f"{batch_size} * {shard_count} = {batch_size * shard_count}"
        )


def batch_rows(
    n_examples: int,
    batch_size: int,
    step: int,
    *,
    seed: int,
    shuffle: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
) -> np.ndarray:
    """The example indices of process ``shard_index``'s part of global step ``step``.

    Parameters
    ----------
    n_examples
        Examples in the split, N.
    batch_size
        Examples per step for ONE process; the global batch is ``G = batch_size * shard_count <= N``.
    step
        Global step, ``>= 0``.
    seed
        Shuffling seed.
    shuffle
        ``False``: the stored order every epoch.
    shard_index, shard_count
        This process (``jax.process_index()``) and the number of processes (``jax.process_count()``).

    Returns
    -------
    numpy.ndarray
        ``(batch_size,)`` int indices: positions ``[(step % steps_per_epoch) * G + shard_index * batch_size, ...
        + batch_size)`` of epoch ``step // steps_per_epoch``'s order.
    """
    check_batching(n_examples, batch_size, shard_index=shard_index, shard_count=shard_count)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    global_batch = batch_size * shard_count
    per_epoch = steps_per_epoch(n_examples, global_batch)
    epoch, position = divmod(int(step), per_epoch)
    start = position * global_batch + shard_index * batch_size
    if not shuffle:
        return np.arange(start, start + batch_size, dtype=np.int64)
    return np.asarray(epoch_permutation(n_examples, seed=seed, epoch=epoch)[start : start + batch_size], np.int64)


__all__ = [
    "ARRAY_FIELDS",
    "DataError",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SHARD_INFO_NAME",
    "SPLITS",
    "SplitReader",
    "batch_rows",
    "build_id",
    "check_batching",
    "epoch_permutation",
    "load_manifest",
    "open_split",
    "shard_name",
    "steps_per_epoch",
]
