"""Resynthesis and timbre transfer of a whole audio file through a trained model.

The input (any format soundfile reads, any sample rate, mono or stereo) is mixed to mono and resampled to the
model's rate, its f0/loudness features are extracted exactly as for the training data, optionally shifted (octaves,
dB), and the model renders audio of the same duration, written at the input's sample rate.

Timbre transfer's ``auto_adjust`` follows magenta's timbre-transfer demo: shift the octave so the input's mean
voiced pitch lies nearest the training data's mean pitch, and shift loudness so the input's mean voiced loudness
matches the training data's.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import soundfile
import soxr

from train import report
from train.checkpoint import CheckpointError, load_trained
from train.data.features import FeatureConfig, compute_features
from train.data.folder import load_audio
from train.data.statistics import SILENCE_DB, dataset_statistics, outside_training_range, read_statistics

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.25


def check_shifts(octave_shift: float, loudness_shift_db: float) -> None:
    """Refuse a NaN or infinite shift (it would turn every frame into NaN or silence), naming the value."""
    for name, value in (("octave shift", octave_shift), ("loudness shift (dB)", loudness_shift_db)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


def shift_controls(f0_hz: np.ndarray, loudness_db: np.ndarray, *, octave_shift: float,
                   loudness_shift_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Multiply f0 by ``2 ** octave_shift`` and add ``loudness_shift_db`` (no clipping: the model sees the values)."""
    check_shifts(octave_shift, loudness_shift_db)
    return f0_hz * 2.0**octave_shift, loudness_db + loudness_shift_db


def auto_adjust_shifts(features: dict[str, np.ndarray], statistics: dict[str, float]) -> tuple[float, float]:
    """(octave shift, loudness shift dB) that bring the input's voiced mean pitch/loudness to the training data's."""
    own = dataset_statistics(features["f0_hz"], features["f0_confidence"], features["loudness_db"])
    octave = float(np.round((statistics["mean_pitch_midi"] - own["mean_pitch_midi"]) / 12.0))
    return octave, statistics["mean_loudness_db"] - own["mean_loudness_db"]


def _check_output_path(output_path: Path) -> None:
    if output_path.is_dir():
        raise ValueError(f"output {output_path} is a folder; expected a .wav file path")
    if not output_path.parent.exists():
        raise FileNotFoundError(f"output folder {output_path.parent} does not exist")


def _input_features(input_path: Path, model_rate: int, hop: int, crepe_model: str):
    """(resampled audio, features with a batch axis of 1, input rate, input length) of ``input_path``."""
    resampled = load_audio(input_path, sample_rate=model_rate)
    info = soundfile.info(str(input_path))
    duration = info.frames / info.samplerate
    if duration < MIN_SECONDS:
        raise ValueError(f"input {input_path} is {duration:.3f} s long; expected at least {MIN_SECONDS} s")
    n_frames = -(-len(resampled) // hop)
    padded = np.pad(resampled, (0, n_frames * hop - len(resampled)))[None]
    features = compute_features(padded, FeatureConfig(crepe_model=crepe_model, hop_size=hop))
    if float(np.max(features["loudness_db"])) <= SILENCE_DB:
        raise ValueError(f"input {input_path} is silent (loudness never above {SILENCE_DB} dB)")
    return resampled, features, info.samplerate, info.frames


def resynthesize_file(run_dir: Path, input_path: Path, output_path: Path, *, octave_shift: float = 0.0,
                      loudness_shift_db: float = 0.0, auto_adjust: bool = False, step: str | int = "newest",
                      wav_subtype: str = "PCM_16") -> tuple[np.ndarray, str]:
    """Render ``input_path`` through the model trained in ``run_dir``; write ``output_path``.

    The f0 and loudness fed to the model are the input's (after the shifts), never clipped; when they leave the
    range of the run's training data (``dataset_statistics.json``) a warning names the feature and the range.

    Returns
    -------
    tuple of (numpy.ndarray, str)
        The audio written, and a line saying which checkpoint rendered it.

    Raises
    ------
    ValueError
        The input is shorter than ``MIN_SECONDS`` or silent; the output path is a folder; a shift is not finite.
    CheckpointError
        ``run_dir`` holds no usable checkpoint.
    """
    from train.evaluate import run_model

    _check_output_path(output_path)
    check_shifts(octave_shift, loudness_shift_db)
    config, params, static, loaded = load_trained(run_dir, step)
    model_rate = config.model.sample_rate
    resampled, features, input_rate, input_length = _input_features(
        input_path, model_rate, config.model.hop_size, config.data.crepe_model)
    statistics = read_statistics(run_dir)
    if auto_adjust:
        if statistics is None:
            raise CheckpointError(f"--auto-adjust needs {run_dir / 'dataset_statistics.json'}, written by fit")
        extra_octaves, extra_db = auto_adjust_shifts({name: value[0] for name, value in features.items()}, statistics)
        octave_shift += extra_octaves
        loudness_shift_db += extra_db
        logger.info("auto-adjust: %+.0f octaves, %+.1f dB", extra_octaves, extra_db)
    f0_hz, loudness_db = shift_controls(features["f0_hz"], features["loudness_db"], octave_shift=octave_shift,
                                        loudness_shift_db=loudness_shift_db)
    for message in outside_training_range({**features, "f0_hz": f0_hz, "loudness_db": loudness_db},
                                          statistics or {}):
        logger.warning("input %s: %s; the model was not trained there", input_path, message)
    n_frames = f0_hz.shape[-1]
    padded = np.pad(resampled, (0, n_frames * config.model.hop_size - len(resampled)))[None]  # z-encoder input
    rendered = run_model(params, static, f0_hz.astype(np.float32), loudness_db.astype(np.float32), padded)
    output = rendered["audio"][0][: len(resampled)]
    if input_rate != model_rate:
        output = soxr.resample(output, model_rate, input_rate).astype(np.float32)
    output = np.pad(output, (0, max(0, input_length - len(output))))[:input_length]
    report.write_wav(output_path, output, input_rate, subtype=wav_subtype)
    return output, loaded.describe()
