"""Figures, WAVs and the Markdown report of a run.

Every file is written to a temporary name in the same folder and renamed when complete, so an interrupted report
never leaves a half-written PNG or WAV behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from ddsp_core._io import atomic_open, write_text_atomic  # noqa: E402
from ddsp_core.spectral import magnitudes  # noqa: E402


WAV_SUBTYPES = ("PCM_16", "FLOAT")
"""WAV sample formats offered: 16-bit PCM (peak-limited to [-1, 1]) or 32-bit float (kept as computed)."""


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16") -> None:
    """Write mono float audio as a WAV file, atomically.

    ``subtype`` ``"PCM_16"`` (default) clips to [-1, 1]; ``"FLOAT"`` writes 32-bit float samples unclipped.
    Non-finite samples are refused (``ValueError``): a WAV must never hide a diverged model as full-scale noise.
    """
    if subtype not in WAV_SUBTYPES:
        raise ValueError(f"WAV subtype {subtype!r}; expected one of {', '.join(WAV_SUBTYPES)}")
    samples = np.asarray(audio, np.float32)
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"refusing to write {path}: the audio holds NaN or infinite samples")
    if subtype == "PCM_16":
        samples = np.clip(samples, -1.0, 1.0)
    with atomic_open(path, "wb") as handle:
        sf.write(handle, samples, sample_rate, subtype=subtype, format="WAV")


def _save(figure: plt.Figure, path: Path) -> None:
    try:
        with atomic_open(path, "wb") as handle:
            figure.savefig(handle, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Training and validation loss curves from a run's ``metrics.jsonl``."""
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "validation": []}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                curves.setdefault(record["split"], []).append((record["step"], record["loss"]))
    return curves


def plot_losses(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """Training and validation multi-scale spectral loss against step."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for split, style in (("train", "-"), ("validation", "o-")):
        if curves.get(split):
            steps, values = zip(*curves[split])
            axis.plot(steps, values, style, label=split, markersize=3)
    axis.set_xlabel("step")
    axis.set_ylabel("multi-scale spectral loss")
    axis.set_title("Loss")
    axis.grid(alpha=0.3)
    axis.legend()
    _save(figure, path)


def _log_spectrogram(audio: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    spectrum = magnitudes(np.asarray(audio, np.float32), n_fft=n_fft, hop_size=hop, padding="center")
    return 20 * np.log10(np.asarray(spectrum).T + 1e-5)  # [n_bins, n_frames]


def plot_spectrograms(named_audio: dict[str, np.ndarray], sample_rate: int, path: Path) -> None:
    """Log-magnitude spectrograms side by side (e.g. input vs resynthesis)."""
    figure, axes = plt.subplots(1, len(named_audio), figsize=(4.5 * len(named_audio), 4), squeeze=False)
    for axis, (name, audio) in zip(axes[0], named_audio.items()):
        spectrogram = _log_spectrogram(np.asarray(audio))
        duration = len(audio) / sample_rate
        axis.imshow(spectrogram, origin="lower", aspect="auto", vmin=-80, vmax=spectrogram.max(),
                    extent=(0, duration, 0, sample_rate / 2), cmap="magma")
        axis.set_title(name)
        axis.set_xlabel("time (s)")
        axis.set_ylabel("frequency (Hz)")
    _save(figure, path)


def plot_tracks(tracks: dict[str, dict[str, np.ndarray]], frame_rate: float, path: Path) -> None:
    """f0 (Hz) and loudness (dB) tracks, one panel each, several sources per panel."""
    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for axis, (quantity, unit) in zip(axes, (("f0_hz", "f0 (Hz)"), ("loudness_db", "loudness (dB)"))):
        for name, values in tracks.items():
            track = np.asarray(values[quantity])
            axis.plot(np.arange(len(track)) / frame_rate, track, label=name)
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        axis.legend()
    axes[-1].set_xlabel("time (s)")
    _save(figure, path)


def plot_harmonic_distribution(distribution: np.ndarray, frame_rate: float, path: Path) -> None:
    """Harmonic distribution (frames x harmonics) over time, in dB."""
    figure, axis = plt.subplots(figsize=(8, 4))
    values = 20 * np.log10(np.asarray(distribution).T + 1e-6)
    image = axis.imshow(values, origin="lower", aspect="auto", vmin=-80, vmax=0, cmap="viridis",
                        extent=(0, distribution.shape[0] / frame_rate, 1, distribution.shape[1]))
    figure.colorbar(image, ax=axis, label="dB")
    axis.set_xlabel("time (s)")
    axis.set_ylabel("harmonic")
    axis.set_title("Harmonic distribution")
    _save(figure, path)


def plot_impulse_response(impulse_response: np.ndarray, sample_rate: int, path: Path) -> None:
    """The learned reverb impulse response: waveform and its energy envelope in dB."""
    ir = np.asarray(impulse_response)
    time_s = np.arange(len(ir)) / sample_rate
    figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    axes[0].plot(time_s, ir, linewidth=0.5)
    axes[0].set_ylabel("amplitude")
    axes[0].set_title("Learned reverb impulse response")
    envelope = 10 * np.log10(np.convolve(ir**2, np.ones(64) / 64, mode="same") + 1e-12)
    axes[1].plot(time_s, envelope)
    axes[1].set_ylabel("energy (dB)")
    axes[1].set_xlabel("time (s)")
    for axis in axes:
        axis.grid(alpha=0.3)
    _save(figure, path)


def write_markdown(path: Path, title: str, numbers: dict[str, Any], figures: list[str], audio: list[str]) -> None:
    """A short Markdown report linking the figures and WAVs, with a table of the numbers."""
    lines = [f"# {title}", "", "| metric | value |", "|---|---:|"]
    for key, value in numbers.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{Path(name).stem}]({name})" for name in figures]
    lines += ["", "## Audio", ""]
    lines += [f"- [{Path(name).name}]({name})" for name in audio]
    write_text_atomic(path, "\n".join(lines) + "\n")
