"""Shared sizes, a small instrument and random controls for the datarax operator and pipeline tests."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ddsp_core.model import build_instrument
from ddsp_core.processors import Instrument

N_FRAMES = 16
HOP = 64
N_SAMPLES = N_FRAMES * HOP
N_HARMONICS, N_BANDS = 6, 5


def small_instrument(ir_scale: float = 30.0) -> Instrument:
    """harmonic (6) 1.0 + noise (5 bands) 0.1, then a reverb of 200 taps made louder than its quiet start."""
    instrument = build_instrument(
        [
            {"type": "harmonic", "n_harmonics": N_HARMONICS, "weight": 1.0},
            {"type": "filtered_noise", "n_bands": N_BANDS, "weight": 0.1},
            {"type": "reverb", "ir_length": 200},
        ],
        hop_size=HOP,
        key=jax.random.key(0),
    )
    room = instrument.effects[0]
    return eqx.tree_at(lambda i: i.effects[0].impulse_response, instrument, room.impulse_response * ir_scale)


def random_controls(seed: int = 0) -> dict:
    """Element fields of :func:`small_instrument`'s controls for ``N_FRAMES`` frames."""
    rng = np.random.default_rng(seed)
    return {
        "harmonic/f0_hz": jnp.asarray(rng.uniform(100.0, 500.0, N_FRAMES), jnp.float32),
        "harmonic/amplitude": jnp.asarray(rng.uniform(0.1, 0.5, N_FRAMES), jnp.float32),
        "harmonic/harmonic_distribution": jnp.asarray(rng.dirichlet(np.ones(N_HARMONICS), N_FRAMES), jnp.float32),
        "noise/magnitudes": jnp.asarray(rng.uniform(0.0, 0.2, (N_FRAMES, N_BANDS)), jnp.float32),
    }
