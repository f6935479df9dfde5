"""Evaluation of a trained model: numbers on the test split, WAVs and figures, and the run's report.

Metrics (each averaged over the evaluated test examples):
- ``spectral_loss``: the training loss (multi-scale spectral, design.md 4) between input and resynthesis.
- ``f0_error_cents``: mean |1200 log2(f0_resynth / f0_input)| over frames where CREPE is confident on the input
  (confidence >= ``VOICED_CONFIDENCE``) and the note is audible (loudness > ``AUDIBLE_DB``); f0 of the resynthesis
  is CREPE run on it with the same settings as the dataset's features.
- ``loudness_l1_db``: mean |loudness_resynth - loudness_input| in dB over all frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ddsp_core.crepe_decoding import VOICED_CONFIDENCE
from ddsp_core.spectral import multiscale_spectral_loss
from train import modeling, report
from train.config import Config
from train.data import load_split
from train.data.features import extract_features

logger = logging.getLogger(__name__)

AUDIBLE_DB = -60.0


def cents_error(f0_reference_hz: np.ndarray, f0_estimate_hz: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute pitch difference in cents over the frames where ``mask`` is true (NaN if none)."""
    valid = mask & (f0_reference_hz > 0) & (f0_estimate_hz > 0)
    if not valid.any():
        return float("nan")
    return float(np.mean(np.abs(1200.0 * np.log2(f0_estimate_hz[valid] / f0_reference_hz[valid]))))


def _audible_f0(f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
    """f0 with inaudible frames blanked (NaN), so plots do not show CREPE's guesses on silence."""
    return np.where(loudness_db > AUDIBLE_DB, f0_hz, np.nan)


def score_resynthesis(test: dict[str, np.ndarray], resynthesis: np.ndarray, *, crepe_model: str
                      ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The evaluation's three numbers for a resynthesis of the first ``len(resynthesis)`` test examples, and the
    resynthesis's features (f0, confidence, loudness).

    ``test`` holds the split's ``audio``, ``f0_hz``, ``f0_confidence`` and ``loudness_db``; ``resynthesis`` is
    ``(count, n_samples)`` audio from any system (ours, or a peer's for ``benchmarks/quality.py``); f0 and loudness
    of the resynthesis are extracted with ``crepe_model`` as the dataset's features were.
    """
    count = len(resynthesis)
    if resynthesis.shape != test["audio"][:count].shape:
        raise ValueError(f"resynthesis has shape {resynthesis.shape}; expected {test['audio'][:count].shape} "
                         "(the test audio's)")
    features = extract_features(resynthesis, crepe_model=crepe_model)
    voiced = (test["f0_confidence"][:count] >= VOICED_CONFIDENCE) & (test["loudness_db"][:count] > AUDIBLE_DB)
    return {
        "spectral_loss": float(multiscale_spectral_loss(test["audio"][:count], resynthesis)),
        "f0_error_cents": cents_error(test["f0_hz"][:count], features["f0_hz"], voiced),
        "loudness_l1_db": float(np.mean(np.abs(features["loudness_db"] - test["loudness_db"][:count]))),
    }, features


def run_model(params: Any, static: Any, f0_hz: np.ndarray, loudness_db: np.ndarray, audio: np.ndarray | None = None,
              *, seed: int = 0, batch_size: int = 8) -> dict[str, np.ndarray]:
    """Run the autoencoder over many examples in batches; return stacked host arrays of every output
    (:func:`train.modeling.batch_outputs`). ``audio`` is the input audio, needed by a model with a z-encoder."""
    forward = jax.jit(modeling.batch_outputs(static))
    outputs: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(f0_hz), batch_size):
        key = jax.random.fold_in(jax.random.key(seed), start)
        rows = slice(start, start + batch_size)
        result = forward(params, f0_hz[rows], loudness_db[rows], key, None if audio is None else audio[rows])
        for name, value in result.items():
            outputs.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in outputs.items()}


def evaluate_run(config: Config, params: Any, static: Any, dataset_dir: Path, out_dir: Path,
                 *, max_examples: int = 32, n_audio_examples: int = 3, checkpoint: str = "",
                 wav_subtype: str = "PCM_16") -> dict[str, Any]:
    """Evaluate on the test split; write WAVs, figures and ``report.md`` into ``out_dir``; return the numbers.

    ``checkpoint`` (which checkpoint the parameters come from) is reported with the numbers; ``wav_subtype`` is
    ``"PCM_16"`` or ``"FLOAT"`` (:func:`train.report.write_wav`).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"output directory {out_dir} is a file; expected a folder")
    test = load_split(dataset_dir, "test", max_examples=max_examples)
    count = min(max_examples, len(test["audio"]))
    if count == 0:
        raise ValueError(f"the test split of {dataset_dir} is empty")
    audio = test["audio"][:count]
    outputs = run_model(params, static, test["f0_hz"][:count], test["loudness_db"][:count], audio)
    resynthesis = outputs["audio"]

    scores, features = score_resynthesis(test, resynthesis, crepe_model=config.data.crepe_model)
    numbers = {**({"checkpoint": checkpoint} if checkpoint else {}), "test examples": count, **scores}

    out_dir.mkdir(parents=True, exist_ok=True)
    sample_rate = config.model.sample_rate
    frame_rate = sample_rate / config.model.hop_size
    audio_files = []
    sources = [name.removeprefix("signal/") for name in outputs if name.startswith("signal/")]
    for index in range(min(n_audio_examples, count)):
        signals = [("input", audio[index]), ("resynthesis", resynthesis[index])]
        signals += [(source, outputs[f"signal/{source}"][index]) for source in sources]
        for kind, signal in signals:
            name = f"example{index}_{kind}.wav"
            report.write_wav(out_dir / name, signal, sample_rate, subtype=wav_subtype)
            audio_files.append(name)
    figures = {
        "spectrograms.png": lambda p: report.plot_spectrograms(
            {"input": audio[0], "resynthesis": resynthesis[0]}, sample_rate, p),
        "f0_loudness.png": lambda p: report.plot_tracks(
            {"input": {"f0_hz": _audible_f0(test["f0_hz"][0], test["loudness_db"][0]),
                       "loudness_db": test["loudness_db"][0]},
             "resynthesis": {"f0_hz": _audible_f0(features["f0_hz"][0], features["loudness_db"][0]),
                             "loudness_db": features["loudness_db"][0]}},
            frame_rate, p),
    }
    for key, value in outputs.items():
        if key.startswith("control/") and key.endswith("/harmonic_distribution"):
            name = key.split("/")[1]
            figures[f"{name}_distribution.png"] = lambda p, v=value: report.plot_harmonic_distribution(
                v[0], frame_rate, p)
        elif key.startswith("impulse_response/"):
            name = key.split("/")[1]
            figures[f"{name}_impulse_response.png"] = lambda p, v=value: report.plot_impulse_response(
                v[0], sample_rate, p)
    metrics_path = Path(config.run_dir) / "metrics.jsonl"
    if metrics_path.exists():
        figures["losses.png"] = lambda p: report.plot_losses(report.read_metrics(metrics_path), p)
    for name, draw in figures.items():
        draw(out_dir / name)
    report.write_markdown(out_dir / "report.md", f"ddsp-jax evaluation: {config.preset}", numbers,
                          list(figures), audio_files)
    return numbers
