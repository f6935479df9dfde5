"""The public ddsp_core functions check their inputs without jaxtyping's import hook (as users call them).

The suite runs with the hook on, which would catch these shapes first; so every case runs once in a plain Python
subprocess (hook off) and reports the error type and message, or numbers, as JSON. Covers ddsp_core/_shapes.py and
the checks at the entry points of synths, noise, effects and spectral, and what negative or NaN f0 does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, sys
import numpy as np
import jax, jax.numpy as jnp
from ddsp_core import effects, noise, spectral, synths

assert not any("jaxtyping" in type(finder).__module__ for finder in sys.meta_path)  # the import hook is off

def harmonic(amps, dist, f0, n=256):
    return synths.harmonic_synthesis(amps, dist, f0, n_samples=n, sample_rate=16000)

key = jax.random.key(0)
cases = {
    "harmonic_1d_distribution": lambda: harmonic(jnp.ones(4), jnp.ones(250), jnp.full(4, 440.0)),
    "harmonic_f0_wrong_length": lambda: harmonic(jnp.ones(4), jnp.ones((4, 3)), jnp.full(8, 440.0)),
    "harmonic_controls_f0_wrong_length": lambda: synths.harmonic_controls(
        jnp.ones(4), jnp.ones((4, 3)), jnp.full(5, 440.0), sample_rate=16000),
    "sinusoidal_mismatch": lambda: synths.sinusoidal_synthesis(
        jnp.ones((4, 2)), jnp.ones((4, 3)), n_samples=256, sample_rate=16000),
    "wavetable_1d": lambda: synths.wavetable_synthesis(
        jnp.ones(4), jnp.ones(64), jnp.full(4, 440.0), n_samples=256, sample_rate=16000),
    "filtered_noise_1d": lambda: noise.filtered_noise(jnp.ones(65), n_samples=256, key=key),
    "frequency_filter_2d_audio": lambda: noise.frequency_filter(jnp.ones((2, 256)), jnp.ones((4, 9))),
    "fft_convolve_2d_audio": lambda: effects.fft_convolve(jnp.ones((2, 256)), jnp.ones(16)),
    "reverb_2d_ir": lambda: effects.reverb(jnp.ones(256), jnp.ones((2, 16))),
    "loudness_2d": lambda: spectral.compute_loudness(jnp.ones((2, 4096))),
    "loss_two_lengths": lambda: spectral.multiscale_spectral_loss(jnp.ones(4096), jnp.ones(4000)),
    "harmonic_under_vmap_wrong_length": lambda: jax.vmap(harmonic)(
        jnp.ones((2, 4)), jnp.ones((2, 4, 3)), jnp.full((2, 6), 440.0)),
}
results = {}
for name, call in cases.items():
    try:
        call()
        results[name] = {"type": None, "message": ""}
    except Exception as error:
        results[name] = {"type": type(error).__name__, "message": str(error)}

amps, dist = jnp.full(8, 0.5), jnp.ones((8, 1))
f0 = np.full(8, 440.0, np.float32)
negative, zero = f0.copy(), f0.copy()
negative[3], zero[3] = -7000.0, 0.0
with_nan = f0.copy()
with_nan[3] = np.nan
results["negative_f0_equals_zero_f0"] = bool(jnp.array_equal(harmonic(amps, dist, negative, 512),
                                                              harmonic(amps, dist, zero, 512)))
nan_audio = harmonic(amps, dist, with_nan, 512)
results["nan_f0_is_finite"] = bool(jnp.all(jnp.isfinite(nan_audio)))
results["nan_f0_equals_zero_f0"] = bool(jnp.array_equal(nan_audio, harmonic(amps, dist, zero, 512)))
print(json.dumps(results))
'''


@pytest.fixture(scope="module")
def hook_off_results() -> dict:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=environment,
                          cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("harmonic_1d_distribution", "harmonic_synthesis: harmonic_distribution must have shape (n_frames, "
                                     "n_harmonics), got (250,)"),
        ("harmonic_f0_wrong_length", "harmonic_synthesis: f0_hz has n_frames=8, but amplitude has n_frames=4"),
        ("harmonic_controls_f0_wrong_length", "harmonic_controls: f0_hz has n_frames=5"),
        ("sinusoidal_mismatch", "sinusoidal_synthesis: frequencies_hz has n_sinusoids=3, but amplitudes has "
                                "n_sinusoids=2"),
        ("wavetable_1d", "wavetable_synthesis: wavetables must have shape (n_frames, n_wavetable), got (64,)"),
        ("filtered_noise_1d", "filtered_noise: magnitudes must have shape (n_frames, n_bands), got (65,)"),
        ("frequency_filter_2d_audio", "frequency_filter: audio must have shape (n_samples), got (2, 256)"),
        ("fft_convolve_2d_audio", "fft_convolve: audio must have shape (n_samples), got (2, 256)"),
        ("reverb_2d_ir", "reverb: impulse_response must have shape (ir_size), got (2, 16)"),
        ("loudness_2d", "compute_loudness: audio must have shape (n_samples), got (2, 4096)"),
        ("loss_two_lengths", "target and pred must have the same shape (*batch, n_samples), got target (4096,) "
                             "and pred (4000,)"),
        ("harmonic_under_vmap_wrong_length", "harmonic_synthesis: f0_hz has n_frames=6, but amplitude has "
                                             "n_frames=4"),
    ],
)
def test_wrong_shapes_fail_at_the_call_naming_the_argument_without_the_hook(hook_off_results, case, message):
    result = hook_off_results[case]
    assert result["type"] == "ValueError", result
    assert message in result["message"], result


def test_negative_f0_is_taken_as_zero_hz_so_it_cannot_alias(hook_off_results):
    assert hook_off_results["negative_f0_equals_zero_f0"]


def test_one_nan_f0_frame_is_taken_as_zero_hz_and_the_clip_stays_finite(hook_off_results):
    assert hook_off_results["nan_f0_is_finite"]
    assert hook_off_results["nan_f0_equals_zero_f0"]
