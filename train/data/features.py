"""Feature extraction for prepared datasets: CREPE f0 + confidence and A-weighted loudness, batched, jitted, cached.

Every example of ``n_samples`` samples gets exactly ``n_frames = n_samples // hop_size`` frames (1000 for a 4 s
note at 16 kHz, hop 64 = 250 frames/s); frame ``t`` is centred on sample ``t * hop_size``:

- ``f0_hz``, ``f0_confidence``: :func:`ddsp_core.crepe.estimate_f0` (1024-sample frames centred on the frame
  times, zero-mean / unit-variance normalised, weighted average of +-4 bins around the argmax; confidence = the
  maximum activation), with the ``tiny`` or ``full`` model.
- ``loudness_db``: :func:`ddsp_core.spectral.compute_loudness` with ``n_fft = 2048`` (design.md and the
  ``nsynth/*.f0_and_loudness`` tfds configs use 2048; magenta's ``ddsp_prepare_tfrecord`` uses 512 at 16 kHz, and
  we keep 2048 so the dataset, the training loss and resynthesis all use one definition).

The result is cached in ``cache_dir`` under a key that hashes the audio bytes and the extractor configuration, in
one ``.npz`` written atomically (temporary file, then rename): an interrupted run leaves no cache file at all, and
a cache file that exists but cannot be read is an error naming it (delete it to recompute), never silently trusted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np
from jaxtyping import Float
from tqdm.auto import tqdm

from ddsp_core import crepe, spectral
from ddsp_core._checks import check_positive_int
from ddsp_core._typing import AnyArray
from train.data.dataset import DataError, load_npz, save_npz_atomic

logger = logging.getLogger(__name__)

EXTRACTOR_VERSION = 1
"""Bumped when the feature code changes what it computes; part of the cache key."""


@dataclass(frozen=True)
class FeatureConfig:
    """How features are computed; everything here is part of the cache key and of the dataset manifest.

    Attributes
    ----------
    crepe_model
        CREPE capacity, ``"tiny"`` (fast, a few cents less accurate) or ``"full"``.
    sample_rate
        Audio rate, Hz (CREPE needs 16000).
    hop_size
        Samples between frames (64 at 16 kHz = 250 frames/s).
    loudness_n_fft
        FFT size of the loudness STFT.
    batch_size
        Examples per jitted call (does not change the results; not part of the cache key).
    chunk_frames
        CREPE frames per network call inside each example (bounds memory; does not change the results).
    """

    crepe_model: str = "full"
    sample_rate: int = 16000
    hop_size: int = 64
    loudness_n_fft: int = 2048
    batch_size: int = 4
    chunk_frames: int = 256

    def __post_init__(self) -> None:
        if self.crepe_model not in ("tiny", "full"):
            raise ValueError(f"crepe_model must be 'tiny' or 'full', got {self.crepe_model!r}")
        if self.sample_rate != crepe.CREPE_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be {crepe.CREPE_SAMPLE_RATE} (CREPE's rate), got {self.sample_rate}")
        check_positive_int(
            hop_size=self.hop_size,
            loudness_n_fft=self.loudness_n_fft,
            batch_size=self.batch_size,
            chunk_frames=self.chunk_frames,
        )
        if self.sample_rate % self.hop_size:
            raise ValueError(f"hop_size must divide sample_rate={self.sample_rate}, got {self.hop_size}")

    def to_dict(self) -> dict[str, int | str]:
        """What determines the features, as a JSON-serialisable dict (with the extractor version; the batching
        fields, which do not change the results, are left out)."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("batch_size", "chunk_frames")}
        return {**settings, "extractor_version": EXTRACTOR_VERSION}


def _check_audio(audio: AnyArray, config: FeatureConfig) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 2 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be a float (n_examples, n_samples) array, got {audio.shape} {audio.dtype}")
    if audio.shape[1] < config.hop_size:
        raise ValueError(f"audio must hold at least hop_size={config.hop_size} samples, got {audio.shape[1]}")
    if not np.all(np.isfinite(audio)):
        bad = sorted(set(np.nonzero(~np.isfinite(audio))[0].tolist()))
        raise ValueError(f"audio rows {bad[:10]} hold NaN or infinite samples (expected finite audio)")
    return audio.astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _batched_extractor(config: FeatureConfig) -> Callable[..., tuple[jax.Array, ...]]:
    """``jit(vmap(...))`` of the per-example feature function, one per configuration (compiled once per shape).

    Called with CREPE parameters it returns ``(f0_hz, f0_confidence, loudness_db)``, with ``None`` only
    ``(loudness_db,)``.
    """
    frame_rate = config.sample_rate // config.hop_size

    def one_example(params: crepe.CrepeParams | None, audio: jax.Array) -> tuple[jax.Array, ...]:
        n_frames = audio.shape[0] // config.hop_size
        loudness_db = spectral.compute_loudness(
            audio, sample_rate=config.sample_rate, frame_rate=frame_rate, n_fft=config.loudness_n_fft
        )[:n_frames]  # centred frames: n_samples // hop + 1, keep the first n_frames
        if params is None:
            return (loudness_db,)
        f0_hz, f0_confidence = crepe.estimate_f0(
            params, audio, sample_rate=config.sample_rate, hop_size=config.hop_size, padding="center",
            decoder="viterbi", chunk_frames=config.chunk_frames,
        )
        return f0_hz[:n_frames], f0_confidence[:n_frames], loudness_db

    return jax.jit(jax.vmap(one_example, in_axes=(None, 0)))


@functools.lru_cache(maxsize=2)
def _crepe_params(model: str) -> crepe.CrepeParams:
    return crepe.load_crepe_params(model)


def compute_features(
    audio: Float[AnyArray, "n_examples n_samples"],
    config: FeatureConfig = FeatureConfig(),
    *,
    include_f0: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """f0, confidence and loudness of each row of ``audio``, computed in jitted batches of ``config.batch_size``.

    Parameters
    ----------
    audio
        ``(n_examples, n_samples)`` float mono audio at ``config.sample_rate`` (16 kHz), finite.
    config
        Extractor settings (CREPE model, hop, loudness FFT size, batch size).
    include_f0
        Run CREPE (``False``: loudness only, for sources that ship f0).
    progress
        Show a tqdm progress bar over batches.

    Returns
    -------
    dict[str, numpy.ndarray]
        ``loudness_db`` and (with ``include_f0``) ``f0_hz``, ``f0_confidence``: ``(n_examples, n_frames)``
        float32 with ``n_frames = n_samples // config.hop_size``; frame ``t`` is centred on sample ``t * hop``.

    Raises
    ------
    ValueError
        If ``audio`` is not 2-D float, is shorter than one hop, or holds NaN/inf (the rows are named).

    Examples
    --------
    >>> audio = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)[None].astype(np.float32)
    >>> compute_features(audio, FeatureConfig(crepe_model="tiny"))["f0_hz"].shape
    (1, 250)

    See Also
    --------
    cached_features : the same, cached on disk.
    ddsp_core.crepe.estimate_f0, ddsp_core.spectral.compute_loudness : the per-example functions.
    """
    audio = _check_audio(audio, config)
    n_examples = audio.shape[0]
    names = ("f0_hz", "f0_confidence", "loudness_db") if include_f0 else ("loudness_db",)
    extractor = _batched_extractor(config)
    params = _crepe_params(config.crepe_model) if include_f0 else None
    batch = min(config.batch_size, n_examples)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    starts = range(0, n_examples, batch)
    for start in tqdm(starts, desc=f"features ({config.crepe_model} CREPE)", unit="batch", disable=not progress):
        rows = audio[start : start + batch]
        n_rows = len(rows)
        if n_rows < batch:  # pad the last batch to the compiled size
            rows = np.concatenate([rows, np.repeat(rows[-1:], batch - n_rows, axis=0)])
        for name, value in zip(names, extractor(params, rows), strict=True):
            outputs[name].append(np.asarray(value[:n_rows], np.float32))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def extract_features(
    audio: Float[AnyArray, "n_examples n_samples"], *, crepe_model: str = "full", progress: bool = False
) -> dict[str, np.ndarray]:
    """:func:`compute_features` with the default configuration and the given CREPE model."""
    return compute_features(audio, FeatureConfig(crepe_model=crepe_model), progress=progress)


def cache_key(
    audio: Float[np.ndarray, "n_examples n_samples"], config: FeatureConfig, *, include_f0: bool = True
) -> str:
    """Hex sha256 of the audio (shape, dtype, bytes) and the extractor configuration: the cache file's name."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"config": config.to_dict(), "include_f0": include_f0, "shape": list(audio.shape),
                              "dtype": str(audio.dtype)}, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(audio).tobytes())
    return digest.hexdigest()


def cached_features(
    audio: Float[AnyArray, "n_examples n_samples"],
    config: FeatureConfig,
    *,
    cache_dir: Path,
    include_f0: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """:func:`compute_features`, read from ``cache_dir/features-<key>.npz`` if present, else computed and stored.

    The key (:func:`cache_key`) hashes the audio and the configuration, so a different source or extractor
    setting never reads a stale entry. The file is written atomically (temporary file in ``cache_dir``, then
    rename): an interrupted run leaves no entry, and the next run recomputes.

    Raises
    ------
    DataError
        If the cache file exists but is unreadable or does not hold the expected arrays and shapes; the message
        names the file (delete it to recompute).
    """
    audio = _check_audio(audio, config)
    cache_dir = Path(cache_dir)
    path = cache_dir / f"features-{cache_key(audio, config, include_f0=include_f0)}.npz"
    names = ("f0_hz", "f0_confidence", "loudness_db") if include_f0 else ("loudness_db",)
    expected_shape = (audio.shape[0], audio.shape[1] // config.hop_size)
    if path.exists():
        cached = load_npz(path)
        for name in names:
            if name not in cached or cached[name].shape != expected_shape or cached[name].dtype != np.float32:
                raise DataError(
                    f"{path}: feature cache does not hold {name} as {expected_shape} float32; delete it to recompute"
                )
        logger.info("features read from cache %s", path)
        return {name: cached[name] for name in names}
    features = compute_features(audio, config, include_f0=include_f0, progress=progress)
    save_npz_atomic(path, features)
    logger.info("features cached in %s", path)
    return features


__all__ = [
    "EXTRACTOR_VERSION",
    "FeatureConfig",
    "cache_key",
    "cached_features",
    "compute_features",
    "extract_features",
]
