"""Resynthesis and timbre transfer of a whole audio file through a trained model.

The input (any format soundfile reads, any sample rate, mono or stereo) is mixed to mono and resampled to the
model's rate, its f0/loudness features are extracted exactly as for the training data, optionally shifted (octaves,
dB), and the model renders audio of the same duration, written at the input's sample rate.

Timbre transfer's ``auto_adjust`` follows magenta's timbre-transfer demo: shift the octave so the input's mean
voiced pitch lies nearest the training data's mean pitch, and shift loudness so the input's mean voiced loudness
matches the training data's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import soundfile
import soxr

from ddsp_core.core import hz_to_midi
from ddsp_core.crepe_decoding import VOICED_CONFIDENCE
from train import report
from train.checkpoint import CheckpointError
from train.data.features import FeatureConfig, compute_features
from train.data.folder import load_audio

logger = logging.getLogger(__name__)

MIN_SECONDS = 0.25
SILENCE_DB = -70.0


def dataset_statistics(f0_hz: np.ndarray, f0_confidence: np.ndarray, loudness_db: np.ndarray) -> dict[str, float]:
    """Mean MIDI pitch and mean loudness (dB) over confidently voiced frames, used by ``auto_adjust``."""
    voiced = (f0_confidence >= VOICED_CONFIDENCE) & (f0_hz > 0) & (loudness_db > SILENCE_DB)
    if not voiced.any():
        return {"mean_pitch_midi": 60.0, "mean_loudness_db": float(np.mean(loudness_db))}
    midi = np.asarray(hz_to_midi(f0_hz[voiced]))
    return {"mean_pitch_midi": float(np.mean(midi)), "mean_loudness_db": float(np.mean(loudness_db[voiced]))}


def shift_controls(f0_hz: np.ndarray, loudness_db: np.ndarray, *, octave_shift: float,
                   loudness_shift_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Multiply f0 by ``2 ** octave_shift`` and add ``loudness_shift_db`` (clipped to the model's input range)."""
    return f0_hz * 2.0**octave_shift, np.clip(loudness_db + loudness_shift_db, -80.0, 0.0)


def auto_adjust_shifts(features: dict[str, np.ndarray], statistics: dict[str, float]) -> tuple[float, float]:
    """(octave shift, loudness shift dB) that bring the input's voiced mean pitch/loudness to the training data's."""
    own = dataset_statistics(features["f0_hz"], features["f0_confidence"], features["loudness_db"])
    octave = float(np.round((statistics["mean_pitch_midi"] - own["mean_pitch_midi"]) / 12.0))
    return octave, statistics["mean_loudness_db"] - own["mean_loudness_db"]


def resynthesize_file(run_dir: Path, input_path: Path, output_path: Path, *, octave_shift: float = 0.0,
                      loudness_shift_db: float = 0.0, auto_adjust: bool = False) -> np.ndarray:
    """Render ``input_path`` through the model trained in ``run_dir``; write ``output_path``; return the audio.

    Raises
    ------
    ValueError
        The input is shorter than ``MIN_SECONDS`` or silent; the output path is a folder.
    CheckpointError
        ``run_dir`` holds no usable checkpoint.
    """
    from train.evaluate import run_model
    from train.fit import load_trained

    if output_path.is_dir():
        raise ValueError(f"output {output_path} is a folder; expected a .wav file path")
    if not output_path.parent.exists():
        raise FileNotFoundError(f"output folder {output_path.parent} does not exist")
    config, params, static = load_trained(run_dir)
    model_rate, hop = config.model.sample_rate, config.model.hop_size

    resampled = load_audio(input_path, sample_rate=model_rate)
    info = soundfile.info(str(input_path))
    input_rate, input_length = info.samplerate, info.frames
    duration = input_length / input_rate
    if duration < MIN_SECONDS:
        raise ValueError(f"input {input_path} is {duration:.3f} s long; expected at least {MIN_SECONDS} s")
    n_frames = -(-len(resampled) // hop)
    padded = np.pad(resampled, (0, n_frames * hop - len(resampled)))[None]
    features = compute_features(padded, FeatureConfig(crepe_model=config.data.crepe_model, hop_size=hop))
    if float(np.max(features["loudness_db"])) <= SILENCE_DB:
        raise ValueError(f"input {input_path} is silent (loudness never above {SILENCE_DB} dB)")

    if auto_adjust:
        stats_path = run_dir / "dataset_statistics.json"
        if not stats_path.exists():
            raise CheckpointError(f"--auto-adjust needs {stats_path}, written by `ddsp-train fit`")
        extra_octaves, extra_db = auto_adjust_shifts(
            {name: value[0] for name, value in features.items()}, json.loads(stats_path.read_text()))
        octave_shift += extra_octaves
        loudness_shift_db += extra_db
        logger.info("auto-adjust: %+.0f octaves, %+.1f dB", extra_octaves, extra_db)
    f0_hz, loudness_db = shift_controls(features["f0_hz"], features["loudness_db"], octave_shift=octave_shift,
                                        loudness_shift_db=loudness_shift_db)
    rendered = run_model(config, params, static, f0_hz.astype(np.float32), loudness_db.astype(np.float32))
    output = rendered["audio"][0][: len(resampled)]
    if input_rate != model_rate:
        output = soxr.resample(output, model_rate, input_rate).astype(np.float32)
    output = np.pad(output, (0, max(0, input_length - len(output))))[:input_length]
    report.write_wav(output_path, output, input_rate)
    return output
