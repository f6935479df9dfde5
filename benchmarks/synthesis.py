"""Synthesis throughput: time per call and real-time factor of the DDSP signal blocks, forward and forward+backward.

Run ``python benchmarks/synthesis.py`` (``--quick`` for a short smoke run). For each block, batch size and pass
(forward, or forward + gradient of a scalar) it jit-compiles ``vmap`` of the one-example function, warms up, and
reports the median wall time over ``--repeats`` calls and the real-time factor: seconds of audio produced per
second of compute (batch x audio length / time; above 1 is faster than real time).

Blocks (the seed configuration: 4 s at 16 kHz, 250 frames/s):

- harmonic: ``ddsp_core.synths.harmonic_synthesis`` with 100 harmonics;
- harmonic, oscillator bank: the straightforward formulation written here (every harmonic's frequency and
  amplitude upsampled to audio rate, phase from one cumulative sum, as magenta's ``core.oscillator_bank`` does),
  measured in the same run as the baseline;
- filtered noise: ``ddsp_core.noise.filtered_noise``, 65 bands;
- reverb: ``ddsp_core.effects.reverb``, 16000-tap impulse response;
- spectral loss: ``ddsp_core.spectral.multiscale_spectral_loss``, FFT sizes 2048..64 (skipped if not available).

Magenta's timings, measured in the same run on the same inputs, come from ``benchmarks/versus_magenta.py``.
"""

import argparse
import dataclasses
import functools
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ddsp_core.core import normalize_harmonics, upsample_linear, upsample_with_windows
from ddsp_core.effects import learned_ir_init, reverb
from ddsp_core.noise import filtered_noise
from ddsp_core.synths import harmonic_synthesis

try:
    from ddsp_core.spectral import multiscale_spectral_loss
except ImportError:  # the spectral module is optional here: its rows are skipped with a note
    multiscale_spectral_loss = None

logger = logging.getLogger("benchmarks.synthesis")

SAMPLE_RATE = 16000
FRAME_RATE = 250
N_HARMONICS = 100
N_BANDS = 65
IR_LENGTH = 16000



@dataclasses.dataclass(frozen=True)
class Row:
    """One measured configuration."""

    block: str
    mode: str
    batch: int
    seconds_per_call: float
    audio_seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.batch * self.audio_seconds / self.seconds_per_call


def oscillator_bank_harmonic(
    amplitude: Float[Array, " n_frames"],
    harmonic_distribution: Float[Array, "n_frames n_harmonics"],
    f0_hz: Float[Array, " n_frames"],
    *,
    n_samples: int,
    sample_rate: int,
) -> Float[Array, " n_samples"]:
    """The straightforward harmonic synthesiser (magenta ``core.harmonic_synthesis`` + ``oscillator_bank``).

    Normalise the distribution below Nyquist at frame rate, then upsample every harmonic's frequency (linear)
    and amplitude (Hann windows) to audio rate, zero those at/above Nyquist, accumulate each phase with one float32
    cumulative sum over all samples and sum the sinusoids: ``(n_samples, n_harmonics)`` arrays throughout.
    """
    n_harmonics = harmonic_distribution.shape[-1]
    distribution = normalize_harmonics(harmonic_distribution, f0_hz, sample_rate)
    amplitudes = amplitude[:, jnp.newaxis] * distribution  # [n_frames, n_harmonics]
    frequencies_hz = f0_hz[:, jnp.newaxis] * jnp.arange(1, n_harmonics + 1, dtype=jnp.float32)
    frequency_envelopes = upsample_linear(frequencies_hz, n_samples)  # [n_samples, n_harmonics]
    amplitude_envelopes = upsample_with_windows(amplitudes, n_samples)  # [n_samples, n_harmonics]
    amplitude_envelopes = jnp.where(frequency_envelopes >= sample_rate / 2.0, 0.0, amplitude_envelopes)
    phases = jnp.cumsum(2.0 * jnp.pi * frequency_envelopes / sample_rate, axis=0)  # [n_samples, n_harmonics]
    return jnp.sum(amplitude_envelopes * jnp.sin(phases), axis=-1)


def harmonic(
    amplitude: Float[Array, " n_frames"],
    harmonic_distribution: Float[Array, "n_frames n_harmonics"],
    f0_hz: Float[Array, " n_frames"],
    *,
    n_samples: int,
    sample_rate: int,
) -> Float[Array, " n_samples"]:
    """Our harmonic synthesiser with the same work as the baseline: normalise below Nyquist, then synthesise."""
    distribution = normalize_harmonics(harmonic_distribution, f0_hz, sample_rate)
    return harmonic_synthesis(amplitude, distribution, f0_hz, n_samples=n_samples, sample_rate=sample_rate)


def _controls(batch: int, n_samples: int, seed: int = 0) -> dict[str, Array]:
    """Random but plausible controls for ``batch`` examples of ``n_samples``: notes of 110-880 Hz with vibrato."""
    rng = np.random.default_rng(seed)
    n_frames = n_samples * FRAME_RATE // SAMPLE_RATE
    time_s = np.arange(n_frames) / FRAME_RATE
    base_hz = 110.0 * 2.0 ** rng.uniform(0.0, 3.0, (batch, 1))
    f0_hz = base_hz * (1.0 + 0.01 * np.sin(2.0 * np.pi * 5.0 * time_s))
    return {
        "f0_hz": jnp.asarray(f0_hz, jnp.float32),
        "amplitude": jnp.asarray(rng.uniform(0.0, 1.0, (batch, n_frames)), jnp.float32),
        "harmonic_distribution": jnp.asarray(rng.uniform(0.0, 1.0, (batch, n_frames, N_HARMONICS)), jnp.float32),
        "noise_magnitudes": jnp.asarray(rng.uniform(0.0, 0.1, (batch, n_frames, N_BANDS)), jnp.float32),
        "audio": jnp.asarray(rng.uniform(-0.5, 0.5, (batch, n_samples)), jnp.float32),
        "target": jnp.asarray(rng.uniform(-0.5, 0.5, (batch, n_samples)), jnp.float32),
        "impulse_response": jnp.stack(
            [learned_ir_init(IR_LENGTH, key=key) for key in jax.random.split(jax.random.key(seed), batch)]
        ),
        "keys": jax.random.split(jax.random.key(seed + 1), batch),
    }


def _median_seconds(fn: Callable[..., object], args: Sequence[object], repeats: int) -> float:
    """Compile and warm up ``fn`` (two calls), then the median wall time of ``repeats`` calls."""
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sum_of_squares(fn: Callable[..., Array]) -> Callable[..., Array]:
    """A scalar of a batched synthesiser's output, for the forward+backward pass."""
    return lambda *args: jnp.sum(fn(*args) ** 2)


def _cases(
    n_samples: int, c: dict[str, Array], *, with_baseline: bool
) -> list[tuple[str, str, Callable[..., object], tuple]]:
    """(block, mode, jitted function, arguments) for every block and pass."""
    harmonic_args = (c["amplitude"], c["harmonic_distribution"], c["f0_hz"])
    harmonic_blocks = [("harmonic", harmonic)]
    if with_baseline:
        harmonic_blocks.append(("harmonic, oscillator bank", oscillator_bank_harmonic))
    noise = jax.vmap(lambda m, k: filtered_noise(m, n_samples=n_samples, key=k))
    batched_reverb = jax.vmap(reverb)
    cases = []
    for name, synthesiser in harmonic_blocks:
        synth = jax.vmap(functools.partial(synthesiser, n_samples=n_samples, sample_rate=SAMPLE_RATE))
        cases.append((name, "fwd", jax.jit(synth), harmonic_args))
        cases.append((name, "fwd+bwd", jax.jit(jax.grad(_sum_of_squares(synth), argnums=(0, 1, 2))), harmonic_args))
    noise_args = (c["noise_magnitudes"], c["keys"])
    cases.append(("filtered noise", "fwd", jax.jit(noise), noise_args))
    cases.append(("filtered noise", "fwd+bwd", jax.jit(jax.grad(_sum_of_squares(noise))), noise_args))
    reverb_args = (c["audio"], c["impulse_response"])
    cases.append(("reverb", "fwd", jax.jit(batched_reverb), reverb_args))
    cases.append(
        ("reverb", "fwd+bwd", jax.jit(jax.grad(_sum_of_squares(batched_reverb), argnums=(0, 1))), reverb_args)
    )
    if multiscale_spectral_loss is not None:
        loss_args = (c["target"], c["audio"])
        cases.append(("spectral loss", "fwd", jax.jit(multiscale_spectral_loss), loss_args))
        cases.append(("spectral loss", "fwd+bwd", jax.jit(jax.grad(multiscale_spectral_loss, argnums=1)), loss_args))
    return cases


def _n_samples(audio_seconds: float) -> int:
    """Audio length in samples, rounded down to whole frames."""
    n_samples = int(round(audio_seconds * SAMPLE_RATE))
    return n_samples - n_samples % (SAMPLE_RATE // FRAME_RATE)


def run(batches: Sequence[int], repeats: int, audio_seconds: float, baseline_max_batch: int) -> list[Row]:
    """Measure every block at every batch size (the baseline up to ``baseline_max_batch``); returns the rows."""
    n_samples = _n_samples(audio_seconds)
    rows = []
    for batch in batches:
        controls = _controls(batch, n_samples)
        for block, mode, fn, args in _cases(n_samples, controls, with_baseline=batch <= baseline_max_batch):
            logger.info("timing %s %s batch %d", block, mode, batch)
            seconds = _median_seconds(fn, args, repeats)
            rows.append(Row(block, mode, batch, seconds, n_samples / SAMPLE_RATE))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table, grouped by block (in measuring order) and pass."""
    header = f"{'block':<26} {'pass':<8} {'batch':>5} {'ms/call':>10} {'x real time':>12}"
    lines = [header, "-" * len(header)]
    block_order = {block: i for i, block in reversed(list(enumerate(row.block for row in rows)))}
    for row in sorted(rows, key=lambda r: (block_order[r.block], r.mode, r.batch)):
        lines.append(
            f"{row.block:<26} {row.mode:<8} {row.batch:>5} {row.seconds_per_call * 1e3:>10.2f} "
            f"{row.real_time_factor:>12.1f}"
        )
    return "\n".join(lines)


def harmonic_agreement(audio_seconds: float) -> float:
    """Max |ours - oscillator bank| over one example, relative to its peak: both rows must make the same sound.

    The two differ by the float32 phase drift of the baseline's single cumulative sum (magenta measured -0.36 cents
    after 1 s), which grows with the length of the audio.
    """
    n_samples = _n_samples(audio_seconds)
    c = _controls(1, n_samples)
    args = (c["amplitude"][0], c["harmonic_distribution"][0], c["f0_hz"][0])
    ours = harmonic(*args, n_samples=n_samples, sample_rate=SAMPLE_RATE)
    baseline = oscillator_bank_harmonic(*args, n_samples=n_samples, sample_rate=SAMPLE_RATE)
    return float(jnp.max(jnp.abs(ours - baseline)) / jnp.max(jnp.abs(baseline)))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (default 1 8 32)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per case after warm-up (default 10)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length per example (default 4)")
    parser.add_argument(
        "--baseline-max-batch",
        type=int,
        default=None,
        help="largest batch for the oscillator-bank baseline, whose (batch, n_samples, n_harmonics) arrays are "
        "slow and large (default: every batch)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: batch 1 and 8, 1 s of audio, 3 repeats (overrides others)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.seconds = [1, 8], 3, 1.0
    if min(args.batch) < 1 or args.repeats < 1 or args.seconds <= 0.0:
        parser.error("--batch values and --repeats must be >= 1 and --seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table to stdout."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    baseline_max_batch = max(args.batch) if args.baseline_max_batch is None else args.baseline_max_batch
    rows = run(args.batch, args.repeats, args.seconds, baseline_max_batch)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.devices()[0].device_kind}), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
        f"{args.seconds:g} s at {SAMPLE_RATE} Hz per example, median of {args.repeats} calls"
    )
    print(format_table(rows))
    print(
        "harmonic vs harmonic, oscillator bank: max |difference| / peak = "
        f"{harmonic_agreement(args.seconds):.1e} (float32 phase drift of the single cumsum)"
    )
    if multiscale_spectral_loss is None:
        print("spectral loss: skipped, ddsp_core.spectral.multiscale_spectral_loss is not available.")


if __name__ == "__main__":
    main()
