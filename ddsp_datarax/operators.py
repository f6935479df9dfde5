"""datarax ``OperatorModule`` adapters around the pure ddsp_core functions (datarax 0.1.4 contract).

Each operator holds configuration (plain Python ints, static) and, where it has any, parameters as ``nnx`` state;
its ``apply`` works on ONE element (a dict of arrays, no batch axis) and calls a ddsp_core function. None of them
re-implements DSP. datarax batches them with ``jax.vmap`` (``OperatorModule._vmap_apply``).

Element keys (constants below): the source gives ``audio``; :class:`CrepeF0` adds ``f0_hz`` and ``f0_confidence``,
:class:`Loudness` adds ``loudness_db``, :class:`DecoderControls` adds the three controls, and the synthesisers
write ``synth_audio``.

datarax 0.1.4 behaviours handled here on purpose:

* ``WEIGHTED_PARALLEL`` multiplies EVERY field of its children's output dicts by the weights and sums them, so a
  field passed through by both children comes out scaled by ``sum(weights)`` (1.1 for DDSP's 1.0/0.1 mix). The
  two parallel synthesisers (:class:`HarmonicSynth`, :class:`FilteredNoise`) therefore return ONLY
  ``{"synth_audio": signal}``: the mixed dict holds nothing but the mix, and controls stay out of it.
* ``apply`` is called with ``random_params=None`` outside a pipeline (and by datarax itself, through
  ``get_output_structure``'s ``eval_shape``). :class:`FilteredNoise` then draws its noise from its own stable base
  key instead of failing.
* Module graphdefs are not hashable (the composite's config holds lists), so never pass an operator or its
  graphdef as a static ``jit`` argument: close over the graphdef or use ``nnx.jit`` (see
  ``ddsp_datarax.pipeline``).
"""

from typing import Any

import jax
import jax.numpy as jnp
from datarax.core.config import OperatorConfig
from datarax.core.operator import OperatorModule
from flax import nnx
from jaxtyping import PyTree

from ddsp_core._typing import AnyArray, Key
from ddsp_core.crepe import CrepeParams, Decoder, estimate_f0
from ddsp_core.decoder import DDSPDecoder
from ddsp_core.effects import reverb
from ddsp_core.model import controls_from_decoder
from ddsp_core.noise import filtered_noise
from ddsp_core.spectral import compute_loudness
from ddsp_core.synths import harmonic_synthesis

__all__ = [
    "AMPLITUDE",
    "AUDIO",
    "CrepeF0",
    "DecoderControls",
    "F0_CONFIDENCE",
    "F0_HZ",
    "FilteredNoise",
    "HARMONIC_DISTRIBUTION",
    "HarmonicSynth",
    "LOUDNESS_DB",
    "Loudness",
    "NOISE_MAGNITUDES",
    "Reverb",
    "SYNTH_AUDIO",
]

AUDIO = "audio"
"""Input (target) audio, ``(n_samples,)``."""
F0_HZ = "f0_hz"
"""Fundamental frequency per frame, Hz, ``(n_frames,)``."""
F0_CONFIDENCE = "f0_confidence"
"""CREPE confidence per frame in [0, 1], ``(n_frames,)``."""
LOUDNESS_DB = "loudness_db"
"""A-weighted loudness per frame, dB, ``(n_frames,)``."""
AMPLITUDE = "amplitude"
"""Overall linear amplitude of the harmonic synthesiser, ``(n_frames,)``."""
HARMONIC_DISTRIBUTION = "harmonic_distribution"
"""Normalised harmonic distribution, ``(n_frames, n_harmonics)``."""
NOISE_MAGNITUDES = "noise_magnitudes"
"""Linear noise-filter magnitudes, ``(n_frames, n_noise_bands)``."""
SYNTH_AUDIO = "synth_audio"
"""Synthesised audio, ``(n_samples,)``."""

Element = dict[str, Any]
ApplyResult = tuple[Element, PyTree, dict[str, Any] | None]


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class HarmonicSynth(OperatorModule):
    """Additive harmonic synthesiser: ``f0_hz``, ``amplitude``, ``harmonic_distribution`` -> ``{"synth_audio"}``.

    Calls :func:`ddsp_core.synths.harmonic_synthesis` with ``n_samples = n_frames * hop_size``. Returns only the
    signal (see the module notes on ``WEIGHTED_PARALLEL``). Deterministic, no parameters.

    Parameters
    ----------
    sample_rate : int
        Audio sample rate, Hz.
    hop_size : int
        Audio samples per control frame.

    Examples
    --------
    >>> synth = HarmonicSynth(sample_rate=16000, hop_size=64)
    >>> element = {"f0_hz": f0, "amplitude": amplitude, "harmonic_distribution": distribution}
    >>> out, _, _ = synth.apply(element, {}, None)  # out["synth_audio"]: (n_frames * 64,)
    """

    def __init__(self, *, sample_rate: int = 16000, hop_size: int = 64):
        _check_positive(sample_rate=sample_rate, hop_size=hop_size)
        super().__init__(OperatorConfig(), name="harmonic")
        self.sample_rate = sample_rate
        self.hop_size = hop_size

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Synthesise one element's harmonic audio; see the class docstring."""
        del random_params, stats
        n_samples = data[F0_HZ].shape[0] * self.hop_size
        audio = harmonic_synthesis(
            data[AMPLITUDE],
            data[HARMONIC_DISTRIBUTION],
            data[F0_HZ],
            n_samples=n_samples,
            sample_rate=self.sample_rate,
        )
        return {SYNTH_AUDIO: audio}, state, metadata


class FilteredNoise(OperatorModule):
    """Filtered-noise synthesiser: ``noise_magnitudes`` -> ``{"synth_audio": noise}`` (stochastic).

    Calls :func:`ddsp_core.noise.filtered_noise`. In a pipeline or composite, datarax hands each element a PRNG key
    as its random parameter (one per record: ``fold_in(base_key, record_index)``), so the noise is reproducible per
    record. Called with ``random_params=None`` (directly, outside a pipeline), it uses the operator's own base key:
    the same noise every call. Pass a key as ``random_params`` to choose the noise.

    Parameters
    ----------
    hop_size : int
        Audio samples per control frame.
    window_size : int
        Hann window of the noise filters (default 257).
    rngs : nnx.Rngs
        Supplies the base key (stream ``"noise"``, or the default stream).
    """

    def __init__(self, *, hop_size: int = 64, window_size: int = 257, rngs: nnx.Rngs):
        _check_positive(hop_size=hop_size)
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0, got {window_size}")
        super().__init__(OperatorConfig(stochastic=True, stream_name="noise"), rngs=rngs, name="noise")
        self.hop_size = hop_size
        self.window_size = window_size

    def generate_random_params(self, element_keys: jax.Array | None, data_shapes: PyTree) -> jax.Array | None:
        """One PRNG key per record: the keys datarax derived, passed through unchanged."""
        del data_shapes
        return element_keys

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Key | None = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Synthesise one element's filtered noise; ``random_params`` is its PRNG key (or None: the base key)."""
        del stats
        key = self._base_key[...] if random_params is None else random_params
        magnitudes = data[NOISE_MAGNITUDES]
        n_samples = magnitudes.shape[0] * self.hop_size
        audio = filtered_noise(magnitudes, n_samples=n_samples, window_size=self.window_size, key=key)
        return {SYNTH_AUDIO: audio}, state, metadata


class Reverb(OperatorModule):
    """Learned convolution reverb on ``synth_audio``; the impulse response is an ``nnx.Param``.

    Calls :func:`ddsp_core.effects.reverb` (first tap masked, dry added). Other fields pass through unchanged.

    Parameters
    ----------
    impulse_response : Float[AnyArray, "ir_length"]
        Initial impulse response, e.g. ``DDSPAutoencoder.impulse_response`` or
        :func:`ddsp_core.effects.learned_ir_init`.
    """

    def __init__(self, impulse_response: AnyArray):
        if impulse_response.ndim != 1 or impulse_response.shape[0] < 2:
            raise ValueError(f"impulse_response must be 1-D with at least 2 taps, got shape {impulse_response.shape}")
        super().__init__(OperatorConfig(), name="reverb")
        self.impulse_response = nnx.Param(jnp.asarray(impulse_response, dtype=jnp.float32))

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Reverberate one element's ``synth_audio``."""
        del random_params, stats
        wet = reverb(data[SYNTH_AUDIO], self.impulse_response[...])
        return {**data, SYNTH_AUDIO: wet}, state, metadata


class DecoderControls(OperatorModule):
    """The Equinox decoder as an operator: ``f0_hz`` + ``loudness_db`` -> the three synthesiser controls.

    Holds a :class:`ddsp_core.decoder.DDSPDecoder` inside one ``nnx.Param`` (its value is the Equinox module, so
    ``nnx.state(op, nnx.Param)`` trains it), runs it and :func:`ddsp_core.model.controls_from_decoder`, and adds
    ``amplitude``, ``harmonic_distribution`` and ``noise_magnitudes`` to the element.

    Parameters
    ----------
    decoder : DDSPDecoder
        A decoder without z (``z_dims == 0``).
    sample_rate : int
        Audio sample rate, Hz (for the Nyquist mask).
    """

    def __init__(self, decoder: DDSPDecoder, *, sample_rate: int = 16000):
        _check_positive(sample_rate=sample_rate)
        if decoder.z_dims != 0:
            raise ValueError(f"decoder must take no z (z_dims=0), got z_dims={decoder.z_dims}")
        super().__init__(OperatorConfig(), name="decoder_controls")
        self.decoder = nnx.Param(decoder)
        self.sample_rate = sample_rate

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Decode one element's features into controls."""
        del random_params, stats
        decoder: DDSPDecoder = self.decoder.get_value()
        raw = decoder(data[F0_HZ], data[LOUDNESS_DB])
        controls = controls_from_decoder(raw, data[F0_HZ], sample_rate=self.sample_rate)
        return {**data, **controls._asdict()}, state, metadata


class CrepeF0(OperatorModule):
    """CREPE pitch as a feature operator: ``audio`` -> ``f0_hz`` and ``f0_confidence``, jit/scan/vmap-safe.

    Calls :func:`ddsp_core.crepe.estimate_f0` with ``padding="same"`` so there are ``n_samples // hop_size``
    frames, the count the synthesisers expect. Unlike datarax's built-in CREPE operator it runs entirely in JAX
    (no host callbacks), so it works inside ``jit`` and ``Pipeline.scan``. The network weights are held as a
    non-trainable ``nnx.Variable``.

    Parameters
    ----------
    params : CrepeParams
        From :func:`ddsp_core.crepe.load_crepe_params` (or ``init_crepe_params`` in tests).
    sample_rate : int
        Audio sample rate, Hz.
    hop_size : int
        Hop in samples at 16 kHz (64 -> 250 frames/s).
    decoder : str
        ``"viterbi"`` or ``"local_average"`` (see ``estimate_f0``).
    """

    def __init__(
        self, params: CrepeParams, *, sample_rate: int = 16000, hop_size: int = 64, decoder: Decoder = "viterbi"
    ):
        _check_positive(sample_rate=sample_rate, hop_size=hop_size)
        super().__init__(OperatorConfig(), name="crepe_f0")
        self.params = nnx.Variable(params)
        self.sample_rate = sample_rate
        self.hop_size = hop_size
        self.decoder = decoder

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Estimate one element's f0 and confidence."""
        del random_params, stats
        f0_hz, confidence = estimate_f0(
            self.params.get_value(),
            data[AUDIO],
            sample_rate=self.sample_rate,
            hop_size=self.hop_size,
            padding="same",
            decoder=self.decoder,
        )
        return {**data, F0_HZ: f0_hz, F0_CONFIDENCE: confidence}, state, metadata


class Loudness(OperatorModule):
    """A-weighted loudness as a feature operator: ``audio`` -> ``loudness_db``, jit/scan/vmap-safe.

    Calls :func:`ddsp_core.spectral.compute_loudness` with ``frame_rate = sample_rate // hop_size`` and
    ``padding="same"`` (``n_samples // hop_size`` frames).

    Parameters
    ----------
    sample_rate : int
        Audio sample rate, Hz.
    hop_size : int
        Audio samples per frame; must divide ``sample_rate``.
    n_fft : int
        FFT size (default 2048, the training-time loudness; magenta's data preparation uses 512).
    """

    def __init__(self, *, sample_rate: int = 16000, hop_size: int = 64, n_fft: int = 2048):
        _check_positive(sample_rate=sample_rate, hop_size=hop_size, n_fft=n_fft)
        if sample_rate % hop_size:
            raise ValueError(f"hop_size must divide sample_rate, got hop_size={hop_size}, sample_rate={sample_rate}")
        super().__init__(OperatorConfig(), name="loudness")
        self.sample_rate = sample_rate
        self.hop_size = hop_size
        self.n_fft = n_fft

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Compute one element's loudness."""
        del random_params, stats
        loudness_db = compute_loudness(
            data[AUDIO],
            sample_rate=self.sample_rate,
            frame_rate=self.sample_rate // self.hop_size,
            n_fft=self.n_fft,
            padding="same",
        )
        return {**data, LOUDNESS_DB: loudness_db}, state, metadata

