"""Shared sizes and random synth controls for the datarax operator and pipeline tests."""

import jax.numpy as jnp
import numpy as np

from ddsp_datarax.operators import AMPLITUDE, F0_HZ, HARMONIC_DISTRIBUTION, NOISE_MAGNITUDES

N_FRAMES = 16
HOP = 64
N_SAMPLES = N_FRAMES * HOP


def random_controls(seed: int = 0) -> dict:
    """f0, amplitude, a 6-harmonic distribution and 5 noise bands for ``N_FRAMES`` frames."""
    rng = np.random.default_rng(seed)
    return {
        F0_HZ: jnp.asarray(rng.uniform(100.0, 500.0, N_FRAMES), jnp.float32),
        AMPLITUDE: jnp.asarray(rng.uniform(0.1, 0.5, N_FRAMES), jnp.float32),
        HARMONIC_DISTRIBUTION: jnp.asarray(rng.dirichlet(np.ones(6), N_FRAMES), jnp.float32),
        NOISE_MAGNITUDES: jnp.asarray(rng.uniform(0.0, 0.2, (N_FRAMES, 5)), jnp.float32),
    }
