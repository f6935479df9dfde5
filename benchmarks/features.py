"""Feature-extraction throughput of ``train.data.features.compute_features`` on this machine.

Usage::

    python benchmarks/features.py                  # 8 notes of 4 s per configuration
    python benchmarks/features.py --notes 2        # quicker

Renders ``--notes`` violin notes (4 s, 16 kHz) with the offline SoundFont renderer, then times the whole extractor
(CREPE f0 + confidence with Viterbi decoding, and loudness; jitted, batched) for CREPE ``tiny`` and ``full``, and
loudness alone. Prints seconds of audio per second and frames per second (wall clock, best of ``--repeats`` after a
compile call; CPU seconds beside it, useful on a shared machine), and what that implies for each offline preset.
The CREPE network alone, beside datarax's ``CrepeModel``, is timed by ``benchmarks/crepe.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from train.data.features import FeatureConfig, compute_features
from train.data.offline import PRESETS, OfflinePreset, render_preset


def _timed(fn, repeats: int) -> tuple[float, float]:
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=8, help="4 s notes per timed call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    pitches = (55, 55 + args.notes - 1)
    notes, _ = render_preset(OfflinePreset("bench", programs=(40,), velocities=(100,), pitch_range=pitches))
    audio = notes["audio"]
    seconds = audio.shape[0] * audio.shape[1] / 16000
    frames = audio.shape[0] * (audio.shape[1] // 64)
    rows = []
    for label, config, include_f0 in (
        ("CREPE tiny + loudness", FeatureConfig(crepe_model="tiny", batch_size=args.batch_size), True),
        ("CREPE full + loudness", FeatureConfig(crepe_model="full", batch_size=args.batch_size), True),
        ("loudness only", FeatureConfig(batch_size=args.batch_size), False),
    ):
        wall, cpu = _timed(lambda c=config, f=include_f0: compute_features(audio, c, include_f0=f), args.repeats)
        rows.append((label, seconds / wall, frames / wall, cpu / seconds))
    print(f"{audio.shape[0]} notes x 4 s ({frames} frames), batch {args.batch_size}")
    print(f"{'extractor':<24} {'audio s/s':>10} {'frames/s':>10} {'CPU s per audio s':>18}")
    for label, rate, frame_rate, cpu_per_second in rows:
        print(f"{label:<24} {rate:>10.2f} {frame_rate:>10.0f} {cpu_per_second:>18.2f}")
    print()
    for name, preset in PRESETS.items():
        model_rate = rows[0][1] if preset.crepe_model == "tiny" else rows[1][1]
        audio_seconds = 4.0 * len(preset.notes())
        print(f"preset {name:<5} {len(preset.notes()):>5} notes, CREPE {preset.crepe_model:<4}: "
              f"~{audio_seconds / model_rate:,.0f} s of feature extraction")


if __name__ == "__main__":
    main()
