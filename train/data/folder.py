"""A folder of the user's own recordings as a prepared dataset: decode, resample, mix to mono, chunk, drop silence.

Every regular, non-hidden file under the folder (recursively, in sorted order) is tried with ``soundfile``
(libsndfile: WAV, FLAC, OGG/Vorbis, AIFF, ... at any rate, channel count and bit depth):

1. decoded to float64, mixed to mono (mean of the channels), resampled to 16 kHz with soxr (high quality);
2. cut into examples of ``example_seconds`` every ``hop_seconds`` (a tail shorter than one example is dropped);
3. a chunk whose RMS level is below ``silence_db`` dBFS is dropped as silence.

Bad files are skipped, never fatal (each with a logged warning naming the file and what was expected, and an
entry in the manifest's ``skipped`` list): a file libsndfile cannot decode (not audio, or a corrupt header), a
truncated WAV (its header declares more sample data than the file holds), a file shorter than one example, a file
holding NaN or infinite samples. If nothing usable remains, or the folder is empty or missing, preparing stops
with :class:`~train.data.dataset.DataError` naming the folder.

Splits: chunks are assigned to train/validation/test by :func:`~train.data.dataset.assign_splits` on their ids
(by default about 10 % validation and 10 % test; ``validation_fraction`` / ``test_fraction``, in the config
``data.validation_fraction`` / ``data.test_fraction``, change that, down to 0);
when chunks overlap (``hop_seconds < example_seconds``) a chunk overlapping one of a held-out split (test first,
then validation) in the same file is dropped, so no audio is shared between splits.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import soxr
from jaxtyping import Float

from train.data import _build
from train.data.dataset import DataError, assign_splits
from train.data.features import FeatureConfig

logger = logging.getLogger(__name__)

_SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2}


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, a message if its ``data`` chunk declares more bytes than the file holds, else None.

    Streaming writers leave the size 0 or 0xFFFFFFFF (unknown); those are not reported.
    """
    with path.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        file_size = path.stat().st_size
        position = 12
        while position + 8 <= file_size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"data":
                available = file_size - position - 8
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    return f"truncated WAV: header declares {chunk_size} data bytes, file holds {available}"
                return None
            position += 8 + chunk_size + (chunk_size % 2)
    return None


def load_audio(path: Path, *, sample_rate: int = 16000) -> Float[np.ndarray, " n_samples"]:
    """Decode one audio file to mono float32 at ``sample_rate``.

    Parameters
    ----------
    path
        Any file libsndfile reads (WAV, FLAC, OGG, AIFF...), any rate, channel count or bit depth.
    sample_rate
        Output rate, Hz.

    Returns
    -------
    numpy.ndarray
        ``(n_samples,)`` float32, the channel mean, resampled with soxr (``HQ``).

    Raises
    ------
    DataError
        Naming the file and what was expected, if it is not decodable audio, is a truncated WAV, or holds NaN
        or infinite samples.

    Examples
    --------
    >>> audio = load_audio(Path("take1.flac"))  # doctest: +SKIP
    >>> audio.dtype, audio.ndim  # doctest: +SKIP
    (dtype('float32'), 1)
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    truncation = _wav_truncation(path)
    if truncation is not None:
        raise DataError(f"{path}: {truncation} (expected a complete audio file)")
    try:
        samples, file_rate = soundfile.read(path, dtype="float64", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise DataError(f"{path}: not readable as audio by libsndfile ({error}); expected WAV/FLAC/OGG") from error
    if not np.all(np.isfinite(samples)):
        raise DataError(f"{path}: holds NaN or infinite samples (expected finite audio)")
    mono = samples.mean(axis=1)  # [n_file_samples]
    if file_rate != sample_rate:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ")
    return mono.astype(np.float32)


def chunk_audio(
    audio: Float[np.ndarray, " length"], *, n_samples: int, hop_samples: int
) -> Float[np.ndarray, "n_chunks {n_samples}"]:
    """Cut ``(length,)`` audio into ``(n_chunks, n_samples)`` examples starting every ``hop_samples``.

    Chunk ``i`` is ``audio[i * hop_samples : i * hop_samples + n_samples]``; a tail shorter than ``n_samples``
    is dropped, so ``n_chunks = 1 + (length - n_samples) // hop_samples`` (0 when ``length < n_samples``).
    """
    if n_samples <= 0 or hop_samples <= 0:
        raise ValueError(f"n_samples and hop_samples must be positive, got {n_samples=}, {hop_samples=}")
    if len(audio) < n_samples:
        return np.zeros((0, n_samples), np.float32)
    starts = np.arange(0, len(audio) - n_samples + 1, hop_samples)
    return np.stack([audio[start : start + n_samples] for start in starts]).astype(np.float32)


def rms_db(audio: Float[np.ndarray, "n_chunks n_samples"]) -> Float[np.ndarray, " n_chunks"]:
    """RMS level in dBFS of each row, ``20 log10(max(rms, 1e-10))``."""
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=-1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _drop_overlaps(starts: list[int], splits: list[str], n_samples: int) -> list[bool]:
    """Keep-mask over one file's chunks: drop a chunk overlapping a chunk of a higher-priority split."""
    keep = []
    for i, (start, split) in enumerate(zip(starts, splits, strict=True)):
        clashes = any(
            abs(start - other_start) < n_samples and _SPLIT_PRIORITY[other_split] < _SPLIT_PRIORITY[split]
            for j, (other_start, other_split) in enumerate(zip(starts, splits, strict=True))
            if j != i
        )
        keep.append(not clashes)
    return keep


def prepare_folder(
    folder: Path,
    out_dir: Path,
    *,
    example_seconds: float = 4.0,
    hop_seconds: float | None = None,
    silence_db: float = -50.0,
    crepe_model: str = "full",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse) a prepared dataset from a folder of the user's audio files.

    Parameters
    ----------
    folder
        Folder searched recursively for audio files (hidden files and folders are ignored).
    out_dir
        Folder to write (``manifest.json`` and the shards of each split).
    example_seconds
        Length of each example, seconds (``n_samples = round(example_seconds * 16000)``).
    hop_seconds
        Seconds between example starts; default ``example_seconds`` (no overlap).
    silence_db
        Chunks with an RMS level below this, dBFS, are dropped.
    crepe_model
        ``"tiny"`` or ``"full"`` CREPE for f0.
    validation_fraction, test_fraction
        Shares of the examples held out for validation and test (:func:`~train.data.dataset.assign_splits`);
        0 holds out none, so a small folder can go entirely to training.
    cache_dir
        Feature cache folder; default ``out_dir / "cache"``.
    progress
        Show a progress bar while extracting features.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DataError
        If ``folder`` is missing or empty, or no file gives a usable example.

    Examples
    --------
    >>> prepare_folder(Path("~/recordings/cello").expanduser(), Path("data/cello"), crepe_model="tiny")  # doctest: +SKIP

    See Also
    --------
    load_audio : decoding one file.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    hop_seconds = example_seconds if hop_seconds is None else hop_seconds
    feature_config = FeatureConfig(crepe_model=crepe_model)
    n_samples, hop_samples = _chunk_sizes(example_seconds, hop_seconds, feature_config)
    files = _audio_files(folder)
    build = {
        "source": "folder",
        "folder": str(folder.resolve()),
        "files": {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
        "example_seconds": example_seconds,
        "hop_seconds": hop_seconds,
        "silence_db": silence_db,
        "split_fractions": {"validation": validation_fraction, "test": test_fraction},
        "features": feature_config.to_dict(),
    }
    if _build.is_up_to_date(out_dir, build):
        logger.info("%s is up to date (folder %s)", out_dir, folder)
        return out_dir
    chunks = _read_chunks(folder, files, n_samples=n_samples, hop_samples=hop_samples, silence_db=silence_db,
                          sample_rate=feature_config.sample_rate)
    if not chunks.ids:
        raise DataError(
            f"{folder}: no usable example ({len(files)} files, {len(chunks.skipped)} skipped, {chunks.n_silent} "
            f"silent chunks; expected audio at least {example_seconds} s long and louder than {silence_db} dBFS)"
        )
    split_of_id = assign_splits(chunks.ids, validation_fraction=validation_fraction, test_fraction=test_fraction)
    kept = _kept_without_overlap(chunks, split_of_id, n_samples)
    logger.info(
        "%s: %d examples from %d files (%d skipped, %d silent chunks, %d dropped for split overlap)",
        folder, len(kept), len(files) - len(chunks.skipped), len(chunks.skipped), chunks.n_silent,
        len(chunks.ids) - len(kept),
    )
    return _build.build_dataset(
        out_dir,
        _examples(chunks, kept),
        build=build,
        details={
            "n_files": len(files),
            "n_silent_chunks": chunks.n_silent,
            "n_overlap_dropped": int(len(chunks.ids) - len(kept)),
        },
        skipped=chunks.skipped,
        feature_config=feature_config,
        cache_dir=cache_dir,
        progress=progress,
        split_of_group={chunks.ids[i]: split_of_id[chunks.ids[i]] for i in kept},
    )


def _chunk_sizes(example_seconds: float, hop_seconds: float, feature_config: FeatureConfig) -> tuple[int, int]:
    """(n_samples, hop_samples) of the examples, after checking the lengths."""
    if example_seconds <= 0 or hop_seconds <= 0:
        raise ValueError(f"example_seconds and hop_seconds must be positive, got {example_seconds=}, {hop_seconds=}")
    n_samples = int(round(example_seconds * feature_config.sample_rate))
    if n_samples < feature_config.hop_size:
        raise ValueError(f"example_seconds={example_seconds} is shorter than one frame")
    return n_samples, int(round(hop_seconds * feature_config.sample_rate))


def _audio_files(folder: Path) -> list[Path]:
    """The candidate files of ``folder``; :class:`DataError` when it is missing or empty."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected a folder of WAV/FLAC/OGG files)")
    files = _files(folder)
    if not files:
        raise DataError(f"{folder}: the folder is empty (expected WAV/FLAC/OGG files)")
    return files


@dataclass
class _Chunks:
    """The loud chunks of every readable file, with their ids, start samples and file names."""

    audio: list[np.ndarray] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    n_silent: int = 0


def _read_chunks(folder: Path, files: list[Path], *, n_samples: int, hop_samples: int, silence_db: float,
                 sample_rate: int) -> _Chunks:
    """Decode each file and cut it into loud chunks; a bad or short file is skipped with a warning."""
    chunks = _Chunks()
    for path in files:
        name = str(path.relative_to(folder))
        try:
            audio = load_audio(path, sample_rate=sample_rate)
        except DataError as error:
            logger.warning("skipping %s", error)
            chunks.skipped.append({"file": name, "reason": str(error).removeprefix(f"{path}: ")})
            continue
        if len(audio) < n_samples:
            reason = (f"shorter than one example ({len(audio) / sample_rate:.2f} s, expected >= "
                      f"{n_samples / sample_rate} s)")
            logger.warning("skipping %s: %s", path, reason)
            chunks.skipped.append({"file": name, "reason": reason})
            continue
        file_chunks = chunk_audio(audio, n_samples=n_samples, hop_samples=hop_samples)
        loud = rms_db(file_chunks) >= silence_db
        chunks.n_silent += int(np.sum(~loud))
        for index in np.flatnonzero(loud):
            chunks.audio.append(file_chunks[index])
            chunks.ids.append(f"{name}@{index * hop_samples / sample_rate:.3f}s")
            chunks.starts.append(int(index * hop_samples))
            chunks.names.append(name)
    return chunks


def _kept_without_overlap(chunks: _Chunks, split_of_id: dict[str, str], n_samples: int) -> np.ndarray:
    """Indices of the chunks kept after dropping those overlapping a held-out chunk of the same file."""
    keep = np.ones(len(chunks.ids), bool)
    for name in sorted(set(chunks.names)):
        rows = [i for i, n in enumerate(chunks.names) if n == name]
        keep[rows] = _drop_overlaps([chunks.starts[i] for i in rows], [split_of_id[chunks.ids[i]] for i in rows],
                                    n_samples)
    return np.flatnonzero(keep)


def _examples(chunks: _Chunks, kept: np.ndarray) -> dict[str, np.ndarray]:
    """The example columns of the kept chunks (pitch and velocity unknown: -1)."""
    return {
        "audio": np.stack([chunks.audio[i] for i in kept]),
        "pitch": np.full(len(kept), -1, np.int32),
        "velocity": np.full(len(kept), -1, np.int32),
        "instrument": np.asarray([chunks.names[i] for i in kept], dtype=str),
        "family": np.full(len(kept), "", dtype="<U1"),
        "id": np.asarray([chunks.ids[i] for i in kept], dtype=str),
        "group": np.asarray([chunks.ids[i] for i in kept], dtype=str),
    }


__all__ = ["chunk_audio", "load_audio", "prepare_folder", "rms_db"]
