"""NSynth (Engel et al. 2017) as a prepared dataset, through tensorflow-datasets or from the raw TFRecords.

Two routes, both giving the fields of :mod:`train.data.dataset`:

- **tensorflow-datasets**: ``nsynth/full``, ``nsynth/gansynth_subset`` and ``nsynth/gansynth_subset.f0_and_loudness``
  read with ``tfds.load(..., download=False)`` from ``data_dir`` (build them first with ``tfds build`` or copy a
  prepared ``tensorflow_datasets`` folder; nothing is downloaded here). Splits ``train``/``valid``/``test`` become
  ``train``/``validation``/``test``.
- **raw NSynth TFRecords** (``nsynth-{train,valid,test}.tfrecord`` from the NSynth site), one ``tf.train.Example``
  per note with NSynth's schema (``note_str``, ``audio`` 64000 floats, ``pitch``, ``velocity``, ``sample_rate``,
  ``instrument_str``, ``instrument_family_str``, ``instrument_source_str``, ``qualities``, ...).

f0: from the ``f0_and_loudness`` config where present (CREPE full, Viterbi, as tfds computed it), else CREPE here.
Loudness: always ours (:func:`ddsp_core.spectral.compute_loudness`, n_fft 2048, 80 dB range), because tfds's
``loudness/db`` uses a 120 dB range and a different reference, and training, evaluation and resynthesis must all
use one loudness definition. The NSynth splits are kept as they are (NSynth's own splits never share a note).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train.data import _build
from train.data.dataset import SHARD_SIZE, SPLITS, DataError
from train.data.features import FeatureConfig

logger = logging.getLogger(__name__)

NSYNTH_CONFIGS = ("full", "gansynth_subset", "gansynth_subset.f0_and_loudness")
"""The tfds configs of ``nsynth``."""

TFDS_SPLIT_NAMES = {"train": "train", "validation": "valid", "test": "test"}
"""Our split name to NSynth's."""

NSYNTH_SAMPLE_RATE = 16000
NSYNTH_N_SAMPLES = 64000


def _note(
    *, audio: np.ndarray, note_id: str, pitch: int, velocity: int, instrument: str, family: str
) -> dict[str, Any]:
    return {
        "audio": np.asarray(audio, np.float32),
        "id": note_id,
        "pitch": pitch,
        "velocity": velocity,
        "instrument": instrument,
        "family": family,
    }


def iter_tfds(
    config_name: str, split: str, *, data_dir: Path | None = None, max_examples: int | None = None, skip: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield the notes of one split of a tfds NSynth config, converted to our field names.

    Parameters
    ----------
    config_name
        One of :data:`NSYNTH_CONFIGS`.
    split
        ``"train"``, ``"validation"`` or ``"test"``.
    data_dir
        tensorflow-datasets data folder; default tfds's (``~/tensorflow_datasets``).
    max_examples
        Stop after this many notes (``None``: all), counted from the start of the split.
    skip
        Start after this many notes (``tf.data`` skips them; used to resume a build).

    Yields
    ------
    dict
        ``audio`` (64000,) float32, ``id``, ``pitch``, ``velocity``, ``instrument`` (label name), ``family``
        (family name) and, for ``f0_and_loudness``, ``f0_hz`` and ``f0_confidence`` (1000,) float32.

    Raises
    ------
    DataError
        If the dataset is not prepared in ``data_dir`` (no download is attempted).
    """
    import tensorflow_datasets as tfds

    if config_name not in NSYNTH_CONFIGS:
        raise ValueError(f"config_name must be one of {NSYNTH_CONFIGS}, got {config_name!r}")
    if split not in TFDS_SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    tfds_split = TFDS_SPLIT_NAMES[split]
    if max_examples is not None:
        tfds_split = f"{tfds_split}[:{max_examples}]"
    name = f"nsynth/{config_name}"
    try:
        dataset, info = tfds.load(
            name, split=tfds_split, data_dir=None if data_dir is None else str(data_dir), download=False,
            with_info=True,
        )
    except (AssertionError, tfds.core.DatasetNotFoundError) as error:
        where = data_dir or "the default tensorflow_datasets folder"
        raise DataError(
            f"{where}: {name} is not prepared there (expected a tfds build of NSynth; run `tfds build {name}` on a "
            f"machine that can download it, then copy the folder) ({error})"
        ) from error
    label = info.features["instrument"]["label"]
    family = info.features["instrument"]["family"]
    remaining = None if max_examples is None else max(max_examples - skip, 0)
    for example in itertools.islice(tfds.as_numpy(dataset.skip(skip)), remaining):
        note = _note(
            audio=example["audio"],
            note_id=example["id"].decode(),
            pitch=int(example["pitch"]),
            velocity=int(example["velocity"]),
            instrument=label.int2str(int(example["instrument"]["label"])),
            family=family.int2str(int(example["instrument"]["family"])),
        )
        if "f0" in example:
            note["f0_hz"] = np.asarray(example["f0"]["hz"], np.float32)
            note["f0_confidence"] = np.asarray(example["f0"]["confidence"], np.float32)
        yield note


def iter_tfrecords(paths: Sequence[Path], *, max_examples: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the notes of raw NSynth TFRecord files (NSynth's ``tf.train.Example`` schema).

    Parameters
    ----------
    paths
        TFRecord files, read in order.
    max_examples
        Stop after this many notes (``None``: all).

    Yields
    ------
    dict
        ``audio`` (64000,) float32, ``id`` (``note_str``), ``pitch``, ``velocity``, ``instrument``
        (``instrument_str``), ``family`` (``instrument_family_str``).

    Raises
    ------
    DataError
        Naming the file, if it is missing or not a TFRecord, or a record lacks NSynth's features, has a sample
        rate other than 16000 or audio other than 64000 samples.
    """
    import tensorflow as tf

    count = 0
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: file not found (expected an NSynth TFRecord)")
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(str(path))):
                if max_examples is not None and count >= max_examples:
                    return
                yield _parse_nsynth_record(record.numpy(), where=f"{path} record {index}")
                count += 1
        except tf.errors.DataLossError as error:
            raise DataError(f"{path}: not a readable TFRecord file ({error.message})") from error


def _parse_nsynth_record(serialized: bytes, *, where: str) -> dict[str, Any]:
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(serialized).features.feature
        note_id = features["note_str"].bytes_list.value[0].decode()
        audio = np.asarray(features["audio"].float_list.value, np.float32)
        sample_rate = features["sample_rate"].int64_list.value[0]
        note = _note(
            audio=audio,
            note_id=note_id,
            pitch=int(features["pitch"].int64_list.value[0]),
            velocity=int(features["velocity"].int64_list.value[0]),
            instrument=features["instrument_str"].bytes_list.value[0].decode(),
            family=features["instrument_family_str"].bytes_list.value[0].decode(),
        )
    except (IndexError, UnicodeDecodeError, DecodeError) as error:
        raise DataError(f"{where}: not an NSynth example ({type(error).__name__}: {error})") from error
    if sample_rate != NSYNTH_SAMPLE_RATE or len(audio) != NSYNTH_N_SAMPLES:
        raise DataError(
            f"{where}: expected {NSYNTH_N_SAMPLES} samples at {NSYNTH_SAMPLE_RATE} Hz, got {len(audio)} at {sample_rate}"
        )
    return note


def _stack(notes: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {
        "audio": np.stack([n["audio"] for n in notes]),
        "pitch": np.asarray([n["pitch"] for n in notes], np.int32),
        "velocity": np.asarray([n["velocity"] for n in notes], np.int32),
        "instrument": np.asarray([n["instrument"] for n in notes], dtype=str),
        "family": np.asarray([n["family"] for n in notes], dtype=str),
        "id": np.asarray([n["id"] for n in notes], dtype=str),
    }
    if all("f0_hz" in n for n in notes):
        columns["f0_hz"] = np.stack([n["f0_hz"] for n in notes])
        columns["f0_confidence"] = np.stack([n["f0_confidence"] for n in notes])
    return columns


NoteSource = Callable[[int], Iterator[dict[str, Any]]]
"""``skip -> notes``: one split's notes after the first ``skip``."""


def _prepare_from_notes(
    notes: Mapping[str, NoteSource], out_dir: Path, *, build: dict[str, Any], feature_config: FeatureConfig,
    cache_dir: Path | None, progress: bool, shard_size: int,
) -> Path:
    """Stream each split's notes into shards (chunks of ``feature_config.batch_size`` notes at a time)."""

    def chunks(split: str) -> _build.ChunkSource:
        return lambda skip: map(_stack, _build.batched(notes[split](skip), feature_config.batch_size))

    try:
        return _build.build_sharded(
            out_dir,
            {split: chunks(split) for split in SPLITS},
            build=build,
            manifest=_build.describe(NSYNTH_N_SAMPLES, feature_config, details={}, skipped=[]),
            feature_config=feature_config,
            cache_dir=cache_dir,
            progress=progress,
            shard_size=shard_size,
        )
    except DataError as error:
        if "nothing usable" in str(error):
            raise DataError(f"{out_dir}: NSynth gave no example in any split") from error
        raise


def _check_split_sizes(split_sizes: Mapping[str, int] | None) -> dict[str, int | None]:
    sizes: dict[str, int | None] = dict.fromkeys(SPLITS)
    for split, size in (split_sizes or {}).items():
        if split not in SPLITS or size < 0:
            raise ValueError(f"split_sizes must map {SPLITS} to counts >= 0, got {dict(split_sizes or {})}")
        sizes[split] = size
    return sizes


def prepare_nsynth(
    config_name: str,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    split_sizes: Mapping[str, int] | None = None,
    crepe_model: str = "full",
    cache_dir: Path | None = None,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Build (or reuse) a prepared dataset from a tfds NSynth config, streaming: memory holds one shard.

    An interrupted build continues from its last complete shard (tfds reads from there).

    Parameters
    ----------
    config_name
        ``"full"``, ``"gansynth_subset"`` or ``"gansynth_subset.f0_and_loudness"``.
    out_dir
        Folder to write (``manifest.json`` and the shards of each split).
    data_dir
        tensorflow-datasets data folder holding the prepared NSynth; default tfds's.
    split_sizes
        Optional cap on notes per split, e.g. ``{"train": 10000, "validation": 500, "test": 500}`` (the first
        notes of each split, in tfds order).
    crepe_model
        CREPE model for configs without f0.
    cache_dir
        Feature cache folder; default ``out_dir / "cache"``.
    progress
        Show a progress bar while extracting features.
    shard_size
        Notes per shard (256 notes = 64 MiB of audio).

    Returns
    -------
    Path
        ``out_dir``.

    Examples
    --------
    >>> prepare_nsynth("gansynth_subset.f0_and_loudness", Path("data/nsynth"),
    ...                split_sizes={"train": 10000})  # doctest: +SKIP

    See Also
    --------
    prepare_nsynth_tfrecords : the same from raw NSynth TFRecord files.
    """
    sizes = _check_split_sizes(split_sizes)
    feature_config = FeatureConfig(crepe_model=crepe_model)
    build = {
        "source": "nsynth-tfds",
        "config": config_name,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "split_sizes": sizes,
        "features": feature_config.to_dict(),
    }
    if _build.is_up_to_date(out_dir, build):
        logger.info("%s is up to date (nsynth/%s)", out_dir, config_name)
        return Path(out_dir)
    def notes(split: str) -> NoteSource:
        return lambda skip: iter_tfds(config_name, split, data_dir=data_dir, max_examples=sizes[split], skip=skip)

    return _prepare_from_notes(
        {split: notes(split) for split in SPLITS}, Path(out_dir), build=build, feature_config=feature_config,
        cache_dir=cache_dir, progress=progress, shard_size=shard_size,
    )


def prepare_nsynth_tfrecords(
    tfrecords: Mapping[str, Sequence[Path]],
    out_dir: Path,
    *,
    split_sizes: Mapping[str, int] | None = None,
    crepe_model: str = "full",
    cache_dir: Path | None = None,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Build (or reuse) a prepared dataset from raw NSynth TFRecord files, streaming, resumable.

    Parameters
    ----------
    tfrecords
        Our split name (``train``, ``validation``, ``test``) to its TFRecord files; a missing split is empty.
    out_dir, split_sizes, crepe_model, cache_dir, progress, shard_size
        As :func:`prepare_nsynth`.

    Returns
    -------
    Path
        ``out_dir``.

    Examples
    --------
    >>> prepare_nsynth_tfrecords({"train": [Path("nsynth-train.tfrecord")],
    ...                           "test": [Path("nsynth-test.tfrecord")]}, Path("data/nsynth-raw"))  # doctest: +SKIP
    """
    unknown = set(tfrecords) - set(SPLITS)
    if unknown:
        raise ValueError(f"tfrecords keys must be among {SPLITS}, got {sorted(unknown)}")
    sizes = _check_split_sizes(split_sizes)
    feature_config = FeatureConfig(crepe_model=crepe_model)
    paths = {split: [Path(p) for p in tfrecords.get(split, ())] for split in SPLITS}
    build = {
        "source": "nsynth-tfrecord",
        "files": {split: [str(p.resolve()) for p in files] for split, files in paths.items()},
        "sizes_bytes": {split: [p.stat().st_size if p.is_file() else -1 for p in files] for split, files in paths.items()},
        "split_sizes": sizes,
        "features": feature_config.to_dict(),
    }
    if _build.is_up_to_date(out_dir, build):
        logger.info("%s is up to date (NSynth TFRecords)", out_dir)
        return Path(out_dir)
    def notes(split: str) -> NoteSource:
        return lambda skip: itertools.islice(iter_tfrecords(paths[split], max_examples=sizes[split]), skip, None)

    return _prepare_from_notes(
        {split: notes(split) for split in SPLITS}, Path(out_dir), build=build, feature_config=feature_config,
        cache_dir=cache_dir, progress=progress, shard_size=shard_size,
    )


__all__ = [
    "NSYNTH_CONFIGS",
    "TFDS_SPLIT_NAMES",
    "iter_tfds",
    "iter_tfrecords",
    "prepare_nsynth",
    "prepare_nsynth_tfrecords",
]
