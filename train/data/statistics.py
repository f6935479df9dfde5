"""Statistics of a training set's features, stored with each run (``<run_dir>/dataset_statistics.json``).

They say what the model saw in training: the mean voiced pitch and loudness (timbre transfer's ``auto_adjust``
moves an input towards them) and the range of loudness and of voiced f0 (resynthesis and transfer warn when an
input lies outside it: the model was never trained there).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from ddsp_core.core import hz_to_midi
from ddsp_core.crepe_decoding import VOICED_CONFIDENCE

logger = logging.getLogger(__name__)

SILENCE_DB = -70.0
"""Frames at or below this loudness count as silent (not voiced)."""
STATISTICS_NAME = "dataset_statistics.json"


def voiced_mask(f0_hz: np.ndarray, f0_confidence: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
    """Frames where CREPE is confident (``VOICED_CONFIDENCE``), f0 is positive and the frame is not silent."""
    return (f0_confidence >= VOICED_CONFIDENCE) & (f0_hz > 0) & (loudness_db > SILENCE_DB)


def dataset_statistics(
    f0_hz: Float[np.ndarray, "*frames"],
    f0_confidence: Float[np.ndarray, "*frames"],
    loudness_db: Float[np.ndarray, "*frames"],
) -> dict[str, Any]:
    """Mean voiced MIDI pitch and loudness, and the ranges of loudness (all frames) and voiced f0.

    Returns
    -------
    dict
        ``mean_pitch_midi``, ``mean_loudness_db`` (voiced frames; 60 and the overall mean when none is voiced),
        ``loudness_db_range`` ``[min, max]`` over all frames and ``f0_hz_range`` ``[min, max]`` over voiced frames
        (``None`` when none is voiced).
    """
    f0_hz, f0_confidence, loudness_db = (np.asarray(x, np.float64) for x in (f0_hz, f0_confidence, loudness_db))
    voiced = voiced_mask(f0_hz, f0_confidence, loudness_db)
    loudness_range = [float(np.min(loudness_db)), float(np.max(loudness_db))]
    if not voiced.any():
        return {"mean_pitch_midi": 60.0, "mean_loudness_db": float(np.mean(loudness_db)),
                "loudness_db_range": loudness_range, "f0_hz_range": None}
    midi = np.asarray(hz_to_midi(f0_hz[voiced]))
    return {
        "mean_pitch_midi": float(np.mean(midi)),
        "mean_loudness_db": float(np.mean(loudness_db[voiced])),
        "loudness_db_range": loudness_range,
        "f0_hz_range": [float(np.min(f0_hz[voiced])), float(np.max(f0_hz[voiced]))],
    }


def read_statistics(run_dir: Path) -> dict[str, Any] | None:
    """The run's stored statistics, or None when the run has none (made before they were stored)."""
    path = Path(run_dir) / STATISTICS_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def outside_training_range(features: dict[str, np.ndarray], statistics: dict[str, Any]) -> list[str]:
    """One message per feature of the input (``f0_hz``, ``f0_confidence``, ``loudness_db``) outside the range the
    model was trained on, e.g. ``loudness reaches +31.2 dB, above the training range [-80.0, +23.4] dB``."""
    messages = []
    low, high = statistics.get("loudness_db_range") or (None, None)
    loudness = np.asarray(features["loudness_db"])
    if low is not None and (loudness.max() > high or loudness.min() < low):
        value, side = (loudness.max(), "above") if loudness.max() > high else (loudness.min(), "below")
        messages.append(f"loudness reaches {value:+.1f} dB, {side} the training range [{low:+.1f}, {high:+.1f}] dB")
    f0_range = statistics.get("f0_hz_range")
    voiced = voiced_mask(np.asarray(features["f0_hz"]), np.asarray(features["f0_confidence"]), loudness)
    if f0_range is not None and voiced.any():
        f0 = np.asarray(features["f0_hz"])[voiced]
        low, high = f0_range
        if f0.max() > high or f0.min() < low:
            value, side = (f0.max(), "above") if f0.max() > high else (f0.min(), "below")
            messages.append(f"f0 reaches {value:.1f} Hz, {side} the training range [{low:.1f}, {high:.1f}] Hz")
    return messages
