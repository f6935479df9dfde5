"""The prepared on-disk dataset format: atomic, byte-reproducible writes, loading, splits and a numpy batch iterator.

A prepared dataset is one folder::

    <dataset_dir>/
        manifest.json      what was built and how (written last: its presence means the folder is complete)
        train.npz          one file per split, ``numpy.load(..., allow_pickle=False)``
        validation.npz
        test.npz

Every split file holds the same arrays, one row per example (N rows, possibly N = 0):

============== ====================== =========================================================================
key            shape, dtype           meaning
============== ====================== =========================================================================
audio          (N, n_samples) float32 mono audio at ``sample_rate`` (16 kHz), in [-1, 1]
f0_hz          (N, n_frames) float32  CREPE fundamental frequency per frame, Hz (``n_frames = n_samples // 64``)
f0_confidence  (N, n_frames) float32  CREPE confidence in [0, 1]
loudness_db    (N, n_frames) float32  A-weighted loudness, dB (``ddsp_core.spectral.compute_loudness``)
pitch          (N,) int32             MIDI pitch of the note (-1 when unknown, e.g. a user's recording)
velocity       (N,) int32             MIDI velocity (-1 when unknown)
instrument     (N,) str               instrument name (SoundFont preset, NSynth instrument label, or file name)
family         (N,) str               NSynth instrument family (``bass`` ... ``vocal``), or ``""`` when unknown
id             (N,) str               unique example id
============== ====================== =========================================================================

Writes are atomic (a temporary file in the same folder, then :func:`os.replace`) and reproducible: the same arrays
give the same bytes (the zip entries carry a fixed timestamp, unlike :func:`numpy.savez`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ddsp_core._io import write_bytes_atomic

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
"""The split names of every prepared dataset, in this order."""

ARRAY_FIELDS = ("audio", "f0_hz", "f0_confidence", "loudness_db", "pitch", "velocity", "instrument", "family", "id")
"""The arrays stored in each split file."""

FEATURE_FIELDS = ("f0_hz", "f0_confidence", "loudness_db")
"""The per-frame feature arrays, shape ``(N, n_frames)``."""

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
"""Bumped when the on-disk layout changes; :func:`load_manifest` refuses other versions."""

_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class DataError(ValueError):
    """A dataset, file or cache that cannot be used; the message names the path and what was expected."""


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


def write_prepared(
    dataset_dir: Path, splits: Mapping[str, Mapping[str, np.ndarray]], manifest: Mapping[str, Any]
) -> Path:
    """Write a prepared dataset: each split file atomically, then ``manifest.json`` last.

    An existing manifest is removed first, so a run interrupted half-way leaves a folder without a manifest,
    which :func:`load_split` refuses, instead of a stale manifest beside new split files.

    Parameters
    ----------
    dataset_dir
        The folder to write (created if needed).
    splits
        ``{"train": arrays, "validation": arrays, "test": arrays}`` in the module's format.
    manifest
        JSON-serialisable description; ``format_version`` and ``counts`` (examples per split) are added.

    Returns
    -------
    Path
        ``dataset_dir``.
    """
    dataset_dir = Path(dataset_dir)
    if set(splits) != set(SPLITS):
        raise ValueError(f"splits must have exactly the keys {SPLITS}, got {sorted(splits)}")
    hop_size = int(manifest.get("hop_size", 64))
    counts = {name: validate_split_arrays(splits[name], where=f"split {name!r}", hop_size=hop_size) for name in SPLITS}
    dataset_dir.mkdir(parents=True, exist_ok=True)
    (dataset_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for name in SPLITS:
        save_npz_atomic(dataset_dir / f"{name}.npz", {key: splits[name][key] for key in ARRAY_FIELDS})
    save_json_atomic(dataset_dir / MANIFEST_NAME, {**manifest, "format_version": FORMAT_VERSION, "counts": counts})
    logger.info("wrote %s: %s", dataset_dir, ", ".join(f"{n} {c}" for n, c in counts.items()))
    return dataset_dir


def load_manifest(dataset_dir: Path) -> dict[str, Any]:
    """Read ``<dataset_dir>/manifest.json``.

    Raises
    ------
    DataError
        If the folder has no manifest (never prepared, or interrupted), it is not valid JSON, or its
        ``format_version`` differs from :data:`FORMAT_VERSION`.
    """
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{path}: no manifest (the dataset was never prepared, or preparing it was interrupted)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable JSON ({error}); delete the folder to rebuild") from error
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: expected format_version {FORMAT_VERSION}, got {manifest.get('format_version')!r}")
    return manifest


def load_split(dataset_dir: Path, split: str) -> dict[str, np.ndarray]:
    """Load one split of a prepared dataset as numpy arrays.

    Parameters
    ----------
    dataset_dir
        A folder written by one of the ``prepare_*`` functions.
    split
        ``"train"``, ``"validation"`` or ``"test"``.

    Returns
    -------
    dict[str, numpy.ndarray]
        The arrays listed in this module's docstring, each with N rows.

    Raises
    ------
    ValueError
        For an unknown split name.
    DataError
        If the manifest is missing, the split file is unreadable, or its arrays do not match the format or the
        manifest's counts.

    Examples
    --------
    >>> train = load_split(Path("data/offline-demo"), "train")  # doctest: +SKIP
    >>> train["audio"].shape, train["f0_hz"].shape  # doctest: +SKIP
    ((240, 64000), (240, 1000))

    See Also
    --------
    batch_iterator : numpy batches from the loaded arrays.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = load_manifest(dataset_dir)
    path = Path(dataset_dir) / f"{split}.npz"
    arrays = load_npz(path)
    n_examples = validate_split_arrays(arrays, where=str(path), hop_size=int(manifest.get("hop_size", 64)))
    expected = manifest.get("counts", {}).get(split)
    if expected != n_examples:
        raise DataError(f"{path}: holds {n_examples} examples but the manifest says {expected}")
    return arrays


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Number of full batches per epoch (the remainder is dropped)."""
    return n_examples // batch_size


def epoch_permutation(n_examples: int, *, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: ``jax.random.permutation(fold_in(key(seed), epoch), n_examples)``.

    Depends only on ``(seed, epoch, n_examples)``; the datarax source
    (:class:`ddsp_datarax.sources.PreparedSource`) uses the same permutation, so both paths give the same batches.
    """
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return np.asarray(jax.random.permutation(key, n_examples))


def batch_iterator(
    examples: Mapping[str, np.ndarray],
    batch_size: int,
    *,
    seed: int,
    start_step: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield shuffled numpy batches forever; the batch at global step ``s`` depends only on ``(seed, s)``.

    The global batch of a step is ``G = batch_size * shard_count`` examples. Step ``s`` belongs to epoch
    ``e = s // steps_per_epoch`` with ``steps_per_epoch = N // G`` (each epoch's remainder is dropped); the epoch's
    order is :func:`epoch_permutation` ``(seed, e)`` and step ``s`` takes its positions
    ``[(s % steps_per_epoch) * G, ... + G)``. Shard ``k`` receives rows ``[k * batch_size, (k + 1) * batch_size)``
    of that global batch, so the shards of one step are disjoint and together form the global batch, and resuming
    with ``start_step=s`` continues exactly where a run stopped.

    Parameters
    ----------
    examples
        Arrays with a common leading axis N (e.g. from :func:`load_split`); every key is batched.
    batch_size
        Examples per step for THIS shard (the per-process batch); ``batch_size * shard_count <= N``.
    seed
        Shuffling seed.
    start_step
        First global step to yield.
    shard_index, shard_count
        This process's shard (``jax.process_index()``) and the number of shards (``jax.process_count()``).

    Yields
    ------
    dict[str, numpy.ndarray]
        Same keys as ``examples``, leading axis ``batch_size``.

    Examples
    --------
    >>> batches = batch_iterator(load_split(path, "train"), 8, seed=0)  # doctest: +SKIP
    >>> next(batches)["audio"].shape  # doctest: +SKIP
    (8, 64000)

    See Also
    --------
    ddsp_datarax.sources.build_pipeline : the same batches through a datarax pipeline.
    """
    n_examples = _common_length(examples)
    _check_batching(n_examples, batch_size, shard_index=shard_index, shard_count=shard_count, start_step=start_step)
    global_batch = batch_size * shard_count
    per_epoch = steps_per_epoch(n_examples, global_batch)
    step = start_step
    epoch, order = -1, np.zeros(0, np.int64)
    while True:
        if step // per_epoch != epoch:
            epoch = step // per_epoch
            order = epoch_permutation(n_examples, seed=seed, epoch=epoch)
        start = (step % per_epoch) * global_batch + shard_index * batch_size
        rows = order[start : start + batch_size]
        yield {name: np.asarray(array)[rows] for name, array in examples.items()}
        step += 1


def _common_length(examples: Mapping[str, np.ndarray]) -> int:
    lengths = {name: len(array) for name, array in examples.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"examples must be a non-empty dict of arrays with one common length, got {lengths}")
    return next(iter(lengths.values()))


def _check_batching(n_examples: int, batch_size: int, *, shard_index: int, shard_count: int, start_step: int) -> None:
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"need shard_count >= 1 and 0 <= shard_index < shard_count, got {shard_index=}, {shard_count=}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size * shard_count > n_examples:
        raise ValueError(
            f"batch_size * shard_count = {batch_size * shard_count} exceeds the {n_examples} examples available"
        )
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")


__all__ = [
    "ARRAY_FIELDS",
    "DataError",
    "FEATURE_FIELDS",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SPLITS",
    "assign_splits",
    "batch_iterator",
    "empty_split",
    "epoch_permutation",
    "load_manifest",
    "load_npz",
    "load_split",
    "npz_bytes",
    "save_json_atomic",
    "save_npz_atomic",
    "steps_per_epoch",
    "validate_split_arrays",
    "write_prepared",
]
