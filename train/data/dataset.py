"""Writing the sharded prepared-dataset format, loading splits, and the numpy batch iterator.

The format itself (folder layout, ``.npy`` shards, manifest, the reader and the order of examples) is defined in
:mod:`ddsp_datarax.shards`, so that the datarax source reads it without importing this application. Every shard
holds the same fields, one row per example:

============== ====================== =========================================================================
key            shape, dtype           meaning
============== ====================== =========================================================================
audio          (n, n_samples) float32 mono audio at ``sample_rate`` (16 kHz), in [-1, 1]
f0_hz          (n, n_frames) float32  fundamental frequency per frame, Hz (``n_frames = n_samples // 64``)
f0_confidence  (n, n_frames) float32  f0 confidence in [0, 1]
loudness_db    (n, n_frames) float32  A-weighted loudness, dB (``ddsp_core.spectral.compute_loudness``)
pitch          (n,) int32             MIDI pitch of the note (-1 when unknown, e.g. a user's recording)
velocity       (n,) int32             MIDI velocity (-1 when unknown)
instrument     (n,) str               instrument name (SoundFont preset, NSynth instrument label, or file name)
family         (n,) str               NSynth instrument family (``bass`` ... ``vocal``), or ``""`` when unknown
id             (n,) str               unique example id
============== ====================== =========================================================================

Audio is stored as float32 (256 KB per 4 s note): the features are computed from exactly these samples and NSynth
ships float audio; int16 would halve the disk space and read bandwidth but quantise the audio at -96 dBFS.

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`) and reproducible (the same arrays
give the same bytes). Inside a shard folder ``shard.json`` is written last, and ``manifest.json`` is written after
every shard: a build interrupted at any point resumes from its last complete shard (:func:`completed_shards`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ddsp_core._io import atomic_open, write_bytes_atomic
from ddsp_datarax.shards import (
    ARRAY_FIELDS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SHARD_INFO_NAME,
    SPLITS,
    DataError,
    SplitReader,
    batch_rows,
    build_id,
    check_batching,
    epoch_permutation,
    load_manifest,
    open_split,
    shard_name,
    steps_per_epoch,
)

logger = logging.getLogger(__name__)

FEATURE_FIELDS = ("f0_hz", "f0_confidence", "loudness_db")
"""The per-frame feature arrays, shape ``(N, n_frames)``."""

_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


SHARD_SIZE = 256
"""Default examples per shard: 64 MiB of 4 s float32 audio, a few seconds of feature extraction."""


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write one array as ``.npy`` (no pickled objects) atomically; the bytes depend only on the array."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"{path.name}: dtype object cannot be stored; use a fixed-width str array")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb", permissions=0o644) as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays as an ``.npz`` archive whose bytes depend only on the arrays (keys sorted, fixed dates).

    Parameters
    ----------
    arrays
        Name to array. Object arrays are refused (the file must load with ``allow_pickle=False``).

    Returns
    -------
    bytes
        A zip archive (stored, not compressed) with one ``<name>.npy`` entry per array, readable by
        :func:`numpy.load`.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if array.dtype == object:
                raise ValueError(f"array {name!r} has dtype object; store strings as a fixed-width str array")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE_TIME)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write :func:`npz_bytes` of ``arrays`` to ``path`` atomically (temporary file, then rename)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, npz_bytes(arrays))


def save_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as sorted, indented JSON to ``path`` atomically."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file (``allow_pickle=False``).

    Raises
    ------
    DataError
        If the file is missing, truncated, not an npz archive, or holds pickled objects; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise DataError(f"{path}: not a readable .npz archive ({error}); delete it to rebuild") from error


def assign_splits(
    group_keys: list[str], *, validation_fraction: float = 0.1, test_fraction: float = 0.1
) -> dict[str, str]:
    """Assign each distinct group key to a split, deterministically, with every split non-empty when possible.

    Examples sharing a group key (for rendered notes: the same program and pitch, at every velocity) always go to
    the same split, so train, validation and test never share a note. The distinct keys are ordered by
    ``sha256(key)``; the first ``max(1, round(test_fraction * K))`` are ``test``, the next
    ``max(1, round(validation_fraction * K))`` ``validation``, the rest ``train`` (with fewer than 3 keys
    everything is ``train``). The result depends only on the set of keys, not on their order or on other data.

    Parameters
    ----------
    group_keys
        One key per example (duplicates allowed).
    validation_fraction, test_fraction
        Wanted fractions of the distinct keys, each in [0, 1) with sum < 1.

    Returns
    -------
    dict[str, str]
        Distinct key to ``"train" | "validation" | "test"``.
    """
    if not (0.0 <= validation_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"split fractions must lie in [0, 1), got {validation_fraction=}, {test_fraction=}")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(f"validation_fraction + test_fraction must be < 1, got {validation_fraction + test_fraction}")
    distinct = sorted(set(group_keys), key=lambda k: (hashlib.sha256(k.encode()).hexdigest(), k))
    n_keys = len(distinct)
    if n_keys < 3:
        return dict.fromkeys(distinct, "train")
    n_test = max(1, round(test_fraction * n_keys)) if test_fraction > 0 else 0
    n_validation = max(1, round(validation_fraction * n_keys)) if validation_fraction > 0 else 0
    splits: dict[str, str] = {}
    for rank, key in enumerate(distinct):
        if rank < n_test:
            splits[key] = "test"
        elif rank < n_test + n_validation:
            splits[key] = "validation"
        else:
            splits[key] = "train"
    return splits


def empty_split(*, n_samples: int, n_frames: int) -> dict[str, np.ndarray]:
    """Arrays of a split with zero examples (right dtypes and trailing shapes)."""
    return {
        "audio": np.zeros((0, n_samples), np.float32),
        "f0_hz": np.zeros((0, n_frames), np.float32),
        "f0_confidence": np.zeros((0, n_frames), np.float32),
        "loudness_db": np.zeros((0, n_frames), np.float32),
        "pitch": np.zeros((0,), np.int32),
        "velocity": np.zeros((0,), np.int32),
        "instrument": np.zeros((0,), "<U1"),
        "family": np.zeros((0,), "<U1"),
        "id": np.zeros((0,), "<U1"),
    }


def validate_split_arrays(arrays: Mapping[str, np.ndarray], *, where: str, hop_size: int = 64) -> int:
    """Check a split's arrays against the format (fields, dtypes, shapes, finite values); return N.

    ``n_frames`` must equal ``n_samples // hop_size``.

    Raises
    ------
    DataError
        Naming ``where`` and the first field that does not match.
    """
    missing = [name for name in ARRAY_FIELDS if name not in arrays]
    if missing:
        raise DataError(f"{where}: missing arrays {missing} (expected {list(ARRAY_FIELDS)})")
    audio = arrays["audio"]
    if audio.ndim != 2 or audio.dtype != np.float32:
        raise DataError(f"{where}: audio must be (N, n_samples) float32, got {audio.shape} {audio.dtype}")
    n_examples, n_samples = audio.shape
    n_frames = n_samples // hop_size
    for name in FEATURE_FIELDS:
        array = arrays[name]
        if array.shape != (n_examples, n_frames) or array.dtype != np.float32:
            raise DataError(
                f"{where}: {name} must be ({n_examples}, {n_frames}) float32 (n_samples // hop_size frames), "
                f"got {array.shape} {array.dtype}"
            )
    for name in ("pitch", "velocity"):
        if arrays[name].shape != (n_examples,) or not np.issubdtype(arrays[name].dtype, np.integer):
            raise DataError(f"{where}: {name} must be ({n_examples},) int, got {arrays[name].shape} {arrays[name].dtype}")
    for name in ("instrument", "family", "id"):
        if arrays[name].shape != (n_examples,) or arrays[name].dtype.kind != "U":
            raise DataError(f"{where}: {name} must be ({n_examples},) str, got {arrays[name].shape} {arrays[name].dtype}")
    for name in ("audio", *FEATURE_FIELDS):
        if not np.all(np.isfinite(arrays[name])):
            raise DataError(f"{where}: {name} holds NaN or infinite values")
    return n_examples


def write_shard(
    dataset_dir: Path, split: str, index: int, arrays: Mapping[str, np.ndarray], *, build: str, hop_size: int = 64
) -> dict[str, Any]:
    """Write one shard of ``split``: each field's ``.npy`` atomically, then ``shard.json`` last.

    Parameters
    ----------
    dataset_dir
        The dataset folder.
    split, index
        Which shard (folder ``<split>/shard-<index:05d>``).
    arrays
        The fields of :data:`ARRAY_FIELDS` with a common leading axis n >= 1, checked by
        :func:`validate_split_arrays`.
    build
        The build id (:func:`ddsp_datarax.shards.build_id`) every shard of this build carries.

    Returns
    -------
    dict
        ``{"name": "<split>/shard-<index>", "count": n}``, the shard's entry in the manifest.
    """
    name = shard_name(split, index)
    count = validate_split_arrays(arrays, where=f"shard {name}", hop_size=hop_size)
    folder = Path(dataset_dir) / name
    (folder / SHARD_INFO_NAME).unlink(missing_ok=True)
    for field in ARRAY_FIELDS:
        save_npy_atomic(folder / f"{field}.npy", arrays[field])
    save_json_atomic(folder / SHARD_INFO_NAME, {"build_id": build, "count": count})
    return {"name": name, "count": count}


def completed_shards(dataset_dir: Path, split: str, *, build: str) -> list[dict[str, Any]]:
    """The shards of ``split`` already written by this build, in order, up to the first missing or foreign one.

    A shard counts when its ``shard.json`` (written last) names ``build``; an interrupted build continues after
    the last of them.
    """
    done = []
    while True:
        info_path = Path(dataset_dir) / shard_name(split, len(done)) / SHARD_INFO_NAME
        try:
            info = json.loads(info_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return done
        if info.get("build_id") != build or not isinstance(info.get("count"), int) or info["count"] < 1:
            return done
        done.append({"name": shard_name(split, len(done)), "count": info["count"]})


def start_build(dataset_dir: Path) -> None:
    """Remove the manifest of ``dataset_dir`` (if any), so that a build stopped half-way is never read as complete."""
    (Path(dataset_dir) / MANIFEST_NAME).unlink(missing_ok=True)


def finish_build(
    dataset_dir: Path, shards: Mapping[str, list[dict[str, Any]]], manifest: Mapping[str, Any], *, build: str
) -> Path:
    """Delete shard folders that are not listed (left by an older build), then write ``manifest.json`` last.

    Parameters
    ----------
    shards
        Split name to its shards' manifest entries (:func:`write_shard`'s return values), for every split.
    manifest
        JSON-serialisable description; ``format_version``, ``build_id``, ``counts`` and ``splits`` are added.
    """
    dataset_dir = Path(dataset_dir)
    if set(shards) != set(SPLITS):
        raise ValueError(f"shards must have exactly the keys {SPLITS}, got {sorted(shards)}")
    for split in SPLITS:
        listed = {entry["name"].split("/")[-1] for entry in shards[split]}
        split_dir = dataset_dir / split
        for folder in sorted(split_dir.glob("shard-*")) if split_dir.is_dir() else []:
            if folder.name not in listed:
                shutil.rmtree(folder)
    counts = {split: sum(entry["count"] for entry in shards[split]) for split in SPLITS}
    document = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "build_id": build,
        "counts": counts,
        "splits": {split: {"count": counts[split], "shards": list(shards[split])} for split in SPLITS},
    }
    save_json_atomic(dataset_dir / MANIFEST_NAME, document)
    logger.info("wrote %s: %s", dataset_dir, ", ".join(f"{n} {c}" for n, c in counts.items()))
    return dataset_dir


def write_prepared(
    dataset_dir: Path,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    manifest: Mapping[str, Any],
    *,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Write in-memory splits as a prepared dataset: shards of ``shard_size`` examples, then ``manifest.json``.

    Parameters
    ----------
    dataset_dir
        The folder to write (created if needed).
    splits
        ``{"train": arrays, "validation": arrays, "test": arrays}`` in the module's format (a split may be empty).
    manifest
        JSON-serialisable description; its sha256 with ``shard_size`` and the arrays' sha256 is the build id.
    shard_size
        Examples per shard.

    Returns
    -------
    Path
        ``dataset_dir``.
    """
    dataset_dir = Path(dataset_dir)
    if set(splits) != set(SPLITS):
        raise ValueError(f"splits must have exactly the keys {SPLITS}, got {sorted(splits)}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    hop_size = int(manifest.get("hop_size", 64))
    for name in SPLITS:
        validate_split_arrays(splits[name], where=f"split {name!r}", hop_size=hop_size)
    build = build_id({"manifest": manifest, "shard_size": shard_size, "content": _content_sha256(splits)})
    start_build(dataset_dir)
    shards: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        arrays, n_examples = splits[split], len(splits[split]["audio"])
        shards[split] = [
            write_shard(dataset_dir, split, index,
                        {key: arrays[key][start : start + shard_size] for key in ARRAY_FIELDS},
                        build=build, hop_size=hop_size)
            for index, start in enumerate(range(0, n_examples, shard_size))
        ]
    return finish_build(dataset_dir, shards, {**manifest, "shard_size": shard_size}, build=build)


def _content_sha256(splits: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for split in SPLITS:
        for field in ARRAY_FIELDS:
            array = np.ascontiguousarray(splits[split][field])
            digest.update(f"{split}/{field}/{array.dtype.str}/{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def load_split(dataset_dir: Path, split: str, *, max_examples: int | None = None) -> dict[str, np.ndarray]:
    """Load (the first ``max_examples`` examples of) one split into memory as numpy arrays.

    For a split larger than memory use :func:`ddsp_datarax.shards.open_split` and read rows as needed.

    Parameters
    ----------
    dataset_dir
        A folder written by one of the ``prepare_*`` functions.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    max_examples
        Read only the first examples (``None``: all).

    Returns
    -------
    dict[str, numpy.ndarray]
        The arrays listed in this module's docstring, each with N rows.

    Raises
    ------
    ValueError
        For an unknown split name.
    DataError
        If the manifest is missing or from an older version, or a shard is missing, truncated or from another
        build.

    Examples
    --------
    >>> train = load_split(Path("data/offline-demo"), "train")  # doctest: +SKIP
    >>> train["audio"].shape, train["f0_hz"].shape  # doctest: +SKIP
    ((240, 64000), (240, 1000))

    See Also
    --------
    batch_iterator : numpy batches from the loaded arrays or straight from the shards.
    """
    reader = open_split(Path(dataset_dir), split)
    count = len(reader) if max_examples is None else min(max_examples, len(reader))
    return reader.read(np.arange(count))


def read_spread(reader: SplitReader, fields: tuple[str, ...], max_examples: int) -> dict[str, np.ndarray]:
    """Up to ``max_examples`` examples spread evenly over the split (all of them when it is smaller), in order.

    Bounded memory for split-wide summaries (e.g. the mean pitch and loudness of the training data).
    """
    if max_examples < 1:
        raise ValueError(f"max_examples must be positive, got {max_examples}")
    count = min(len(reader), max_examples)
    rows = np.unique(np.round(np.linspace(0, len(reader) - 1, count)).astype(np.int64)) if count else np.zeros(0)
    return reader.read(rows, fields)


def batch_iterator(
    examples: Mapping[str, np.ndarray] | SplitReader,
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    fields: tuple[str, ...] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield shuffled numpy batches forever; the batch at global step ``s`` depends only on ``(seed, s)``.

    The rows of each step are :func:`ddsp_datarax.shards.batch_rows` (the one definition shared with the datarax
    source): epochs of ``N // (batch_size * shard_count)`` global batches in the order
    :func:`epoch_permutation` ``(seed, e)``, shard ``k`` taking rows ``[k * batch_size, (k + 1) * batch_size)`` of
    each global batch, so the shards of one step are disjoint and together form the global batch, and resuming
    with ``start_step=s`` continues exactly where a run stopped.

    Parameters
    ----------
    examples
        Arrays with a common leading axis N (e.g. from :func:`load_split`), or a
        :class:`~ddsp_datarax.shards.SplitReader` (read from disk per batch, bounded memory).
    batch_size
        Examples per step for THIS shard (the per-process batch); ``batch_size * shard_count <= N``.
    seed
        Shuffling seed.
    start_step
        First global step to yield.
    shard_index, shard_count
        This process's shard (``jax.process_index()``) and the number of shards (``jax.process_count()``).
    fields
        Which fields to yield; default every key of ``examples`` (all fields of a reader).

    Yields
    ------
    dict[str, numpy.ndarray]
        The fields, leading axis ``batch_size``.

    Examples
    --------
    >>> batches = batch_iterator(load_split(path, "train"), 8, seed=0)  # doctest: +SKIP
    >>> next(batches)["audio"].shape  # doctest: +SKIP
    (8, 64000)

    See Also
    --------
    train.data.loader.prefetching_batches : the same batches read ahead on background threads.
    ddsp_datarax.sources.build_pipeline : the same batches through a datarax pipeline.
    """
    read, n_examples = _row_reader(examples, fields)
    check_batching(n_examples, batch_size, shard_index=shard_index, shard_count=shard_count)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    step = start_step
    while True:
        yield read(batch_rows(n_examples, batch_size, step, seed=seed, shard_index=shard_index,
                              shard_count=shard_count))
        step += 1


def _row_reader(
    examples: Mapping[str, np.ndarray] | SplitReader, fields: tuple[str, ...] | None
) -> tuple[Callable[[np.ndarray], dict[str, np.ndarray]], int]:
    """``(rows -> batch dict, N)`` for in-memory arrays or a shard reader."""
    if isinstance(examples, SplitReader):
        chosen = tuple(fields or examples.fields)
        return (lambda rows: examples.read(rows, chosen)), len(examples)
    lengths = {name: len(array) for name, array in examples.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"examples must be a non-empty dict of arrays with one common length, got {lengths}")
    chosen = tuple(fields or examples)
    return (lambda rows: {name: np.asarray(examples[name])[rows] for name in chosen}), next(iter(lengths.values()))


__all__ = [
    "ARRAY_FIELDS",
    "DataError",
    "FEATURE_FIELDS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SHARD_SIZE",
    "SPLITS",
    "SplitReader",
    "assign_splits",
    "batch_iterator",
    "build_id",
    "completed_shards",
    "empty_split",
    "epoch_permutation",
    "finish_build",
    "load_manifest",
    "load_npz",
    "load_split",
    "npz_bytes",
    "open_split",
    "read_spread",
    "save_json_atomic",
    "save_npy_atomic",
    "save_npz_atomic",
    "start_build",
    "steps_per_epoch",
    "validate_split_arrays",
    "write_prepared",
    "write_shard",
]
