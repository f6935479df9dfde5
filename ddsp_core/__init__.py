"""ddsp_core: Differentiable Digital Signal Processing (Engel et al., ICLR 2020) as pure, shape-checked JAX functions.

One module per concept (``core`` helpers, ``synths``, ``noise``, ``effects``, ``spectral``, ``resample``, ``crepe``
with ``crepe_decoding`` and ``crepe_weights``, ``decoder``, ``model``); the most used names are re-exported here.
Every function works on one example and is batched with ``jax.vmap``; sizes and rates are explicit keyword
arguments.
"""

from ddsp_core import (
    core,
    crepe,
    crepe_decoding,
    crepe_weights,
    decoder,
    effects,
    model,
    noise,
    resample,
    spectral,
    stream,
    stream_features,
    synths,
)
from ddsp_core.core import (
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    exp_sigmoid,
    hann_window,
    harmonic_frequencies,
    hz_to_midi,
    midi_to_hz,
    normalize_harmonics,
    power_to_db,
    remove_above_nyquist,
    safe_divide,
    safe_log,
    upsample_linear,
    upsample_with_windows,
)
from ddsp_core.crepe import (
    CrepeParams,
    crepe_activations,
    decode_local_average,
    decode_viterbi,
    estimate_f0,
    frame_audio,
    gate_by_confidence,
    gate_by_loudness,
    load_crepe_params,
    resample_to_crepe_rate,
)
from ddsp_core.decoder import DDSPDecoder, MfccEncoder, parameter_count
from ddsp_core.effects import exp_decay_impulse_response, fft_convolve, learned_ir_init, reverb
from ddsp_core.model import DDSPAutoencoder, ModelOutputs, autoencode, spectral_loss
from ddsp_core.noise import filtered_noise, filtered_noise_controls, frequency_filter, frequency_impulse_response
from ddsp_core.spectral import (
    a_weighting_db,
    compute_loudness,
    magnitudes,
    mfcc,
    multiscale_spectral_loss,
    stft,
)
from ddsp_core.synths import harmonic_controls, harmonic_synthesis, sinusoidal_synthesis, wavetable_synthesis

__version__ = "0.1.0"

__all__ = [
    "CrepeParams",
    "DDSPAutoencoder",
    "DDSPDecoder",
    "MfccEncoder",
    "ModelOutputs",
    "a_weighting_db",
    "amplitude_to_db",
    "autoencode",
    "compute_loudness",
    "core",
    "crepe",
    "crepe_activations",
    "crepe_decoding",
    "crepe_weights",
    "db_to_amplitude",
    "db_to_power",
    "decode_local_average",
    "decode_viterbi",
    "decoder",
    "effects",
    "estimate_f0",
    "exp_decay_impulse_response",
    "exp_sigmoid",
    "hann_window",
    "fft_convolve",
    "filtered_noise",
    "filtered_noise_controls",
    "frame_audio",
    "frequency_filter",
    "frequency_impulse_response",
    "gate_by_confidence",
    "gate_by_loudness",
    "harmonic_controls",
    "harmonic_frequencies",
    "harmonic_synthesis",
    "hz_to_midi",
    "learned_ir_init",
    "load_crepe_params",
    "magnitudes",
    "mfcc",
    "midi_to_hz",
    "model",
    "multiscale_spectral_loss",
    "noise",
    "normalize_harmonics",
    "parameter_count",
    "power_to_db",
    "remove_above_nyquist",
    "resample",
    "resample_to_crepe_rate",
    "reverb",
    "safe_divide",
    "safe_log",
    "sinusoidal_synthesis",
    "spectral",
    "spectral_loss",
    "stft",
    "stream",
    "stream_features",
    "synths",
    "upsample_linear",
    "upsample_with_windows",
    "wavetable_synthesis",
]
