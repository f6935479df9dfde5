"""datarax ``OperatorModule`` adapters around the pure ddsp_core functions (datarax 0.1.4 contract).

Each operator holds configuration (plain Python ints, static) and, where it has any, parameters as ``nnx`` state;
its ``apply`` works on ONE element (a dict of arrays, no batch axis) and calls a ddsp_core function. None of them
re-implements DSP. datarax batches them with ``jax.vmap`` (``OperatorModule._vmap_apply``).

Element keys (constants below): the source gives ``audio``; :class:`CrepeF0` adds ``f0_hz`` and ``f0_confidence``,
:class:`Loudness` adds ``loudness_db``, :class:`DecoderControls` adds every processor's controls as
``"<processor>/<control>"`` fields, and the processor operators write ``synth_audio``.

The synthesisers and effects are the ``ddsp_core.processors`` themselves, wrapped generically:
:class:`SourceOperator` and :class:`EffectOperator` work for every built-in processor and for a user's own.

datarax 0.1.4 behaviours handled here on purpose:

* ``WEIGHTED_PARALLEL`` multiplies EVERY field of its children's output dicts by the weights and sums them, so a
  field passed through by both children would come out scaled by ``sum(weights)``. Source operators therefore
  return ONLY ``{"synth_audio": signal}``: the mixed dict holds nothing but the mix, and controls stay out of it.
* datarax discovers output structures by calling ``apply`` with ``random_params=None`` under ``eval_shape``.
  :class:`SourceOperator` overrides ``get_output_structure`` (placeholder key, shapes only), so a stochastic
  source called without a key can refuse instead of silently reusing a fixed one; the composites in
  ``ddsp_datarax.pipeline`` do the same.
* Module graphdefs are not hashable (the composite's config holds lists), so never pass an operator or its
  graphdef as a static ``jit`` argument: close over the graphdef or use ``nnx.jit`` (see
  ``ddsp_datarax.pipeline``).
"""

from typing import Any

import equinox as eqx
import jax
from datarax.core.config import OperatorConfig
from datarax.core.operator import OperatorModule
from flax import nnx
from jaxtyping import PyTree

from ddsp_core._checks import check_positive_int
from ddsp_core._typing import AnyArray, Key
from ddsp_core.crepe import CrepeParams, Decoder, estimate_f0
from ddsp_core.decoder import AnyDecoder
from ddsp_core.processors import Effect, Instrument, Processor, Source
from ddsp_core.spectral import compute_loudness

__all__ = [
    "AUDIO",
    "CrepeF0",
    "DecoderControls",
    "EffectOperator",
    "F0_CONFIDENCE",
    "F0_HZ",
    "LOUDNESS_DB",
    "Loudness",
    "SYNTH_AUDIO",
    "SourceOperator",
    "controls_element",
]

AUDIO = "audio"
"""Input (target) audio, ``(n_samples,)``."""
F0_HZ = "f0_hz"
"""Fundamental frequency per frame, Hz, ``(n_frames,)``."""
F0_CONFIDENCE = "f0_confidence"
"""CREPE confidence per frame in [0, 1], ``(n_frames,)``."""
LOUDNESS_DB = "loudness_db"
"""A-weighted loudness per frame, dB, ``(n_frames,)``."""
SYNTH_AUDIO = "synth_audio"
"""Synthesised audio, ``(n_samples,)``."""

Element = dict[str, Any]
ApplyResult = tuple[Element, PyTree, dict[str, Any] | None]


def _dummy_key() -> Key:
    """A key for shape discovery only (``jax.eval_shape`` never draws from it)."""
    return jax.random.key(0)


def controls_element(controls: dict[str, dict[str, Any]]) -> Element:
    """Flatten an instrument's controls ``{processor: {control: array}}`` into element fields
    ``"<processor>/<control>"``, the layout the operators read."""
    return {f"{name}/{control}": value for name, own in controls.items() for control, value in own.items()}


def _own_controls(data: Element, name: str) -> dict[str, Any]:
    prefix = f"{name}/"
    return {key[len(prefix):]: value for key, value in data.items() if key.startswith(prefix)}


class SourceOperator(OperatorModule):
    """A :class:`ddsp_core.processors.Source` as an operator: its controls -> ``{"synth_audio": signal}``.

    Reads the fields ``"<name>/<control>"`` of the element (see :func:`controls_element`), calls the processor's
    ``get_signal`` with ``n_samples = n_frames * hop_size``, and returns ONLY the signal (see the module notes on
    ``WEIGHTED_PARALLEL``). The processor (and any learnable array it has) is held in one ``nnx.Param``.

    A stochastic processor (``processor.stochastic``, e.g. filtered noise) needs a PRNG key as ``random_params``:
    datarax hands each record one inside a pipeline or composite (``fold_in(base_key, record_index)``); called
    directly without one it raises instead of silently reusing a fixed key.

    Parameters
    ----------
    processor : Source
        The synthesiser.
    hop_size : int
        Audio samples per control frame.
    rngs : nnx.Rngs
        Base key of the operator's stream (named after the processor).

    Examples
    --------
    >>> from ddsp_core.processors import Harmonic
    >>> op = SourceOperator(Harmonic(n_harmonics=4), hop_size=64, rngs=nnx.Rngs(0))
    >>> import jax.numpy as jnp
    >>> element = {"harmonic/amplitude": jnp.ones(3), "harmonic/harmonic_distribution": jnp.full((3, 4), 0.25),
    ...            "harmonic/f0_hz": jnp.full(3, 220.0)}
    >>> op.apply(element, {}, None)[0]["synth_audio"].shape
    (192,)
    """

    def __init__(self, processor: Processor, *, hop_size: int, rngs: nnx.Rngs):
        check_positive_int(hop_size=hop_size)
        if not isinstance(processor, Source):
            raise ValueError(f"processor must be a ddsp_core Source, got {type(processor).__name__}")
        stochastic = bool(processor.stochastic)
        config = OperatorConfig(stochastic=stochastic, stream_name=processor.name if stochastic else None)
        super().__init__(config, rngs=rngs if stochastic else None, name=processor.name)
        self.processor = nnx.Param(processor)
        self.hop_size = hop_size

    def generate_random_params(self, element_keys: jax.Array | None, data_shapes: PyTree) -> jax.Array | None:
        """One PRNG key per record: the keys datarax derived, passed through unchanged."""
        del data_shapes
        return element_keys

    def get_output_structure(self, sample_data: PyTree, sample_state: PyTree) -> tuple[PyTree, PyTree]:
        """``{"synth_audio": 0}`` and the state, found by ``eval_shape`` with a placeholder key."""
        out = jax.eval_shape(lambda d, s: self.apply(d, s, None, _dummy_key())[:2], sample_data, sample_state)
        return jax.tree.map(lambda _: 0, out[0]), jax.tree.map(lambda _: 0, out[1])

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Key | None = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Synthesise one element's signal; ``random_params`` is its PRNG key (required if stochastic)."""
        del stats
        processor: Source = self.processor.get_value()
        if random_params is None:
            if processor.stochastic:
                raise ValueError(
                    f"operator {processor.name!r} is stochastic and needs a PRNG key: pass random_params=key, or run "
                    "it inside a datarax pipeline/composite, which derives one per record"
                )
            random_params = _dummy_key()  # deterministic processors ignore their key
        controls = _own_controls(data, processor.name)
        if not controls:
            raise ValueError(f"element has no fields '{processor.name}/...' for operator {processor.name!r}; "
                             f"got {sorted(data)}")
        n_frames = jax.tree.leaves(controls)[0].shape[0]
        audio = processor.get_signal(controls, n_samples=n_frames * self.hop_size, key=random_params)
        return {SYNTH_AUDIO: audio}, state, metadata


class EffectOperator(OperatorModule):
    """A :class:`ddsp_core.processors.Effect` as an operator on ``synth_audio`` (other fields pass through).

    The processor, with its learnable arrays (e.g. the reverb's impulse response), is held in one ``nnx.Param``, so
    ``nnx.state(op, nnx.Param)`` trains it.

    Parameters
    ----------
    processor : Effect
        The effect.
    """

    def __init__(self, processor: Processor):
        if not isinstance(processor, Effect):
            raise ValueError(f"processor must be a ddsp_core Effect, got {type(processor).__name__}")
        if processor.control_sizes():
            raise ValueError(f"effect {processor.name!r} takes decoder controls, which the datarax composite cannot "
                             "route past the mix; use the pure path (ddsp_core.model.autoencode)")
        super().__init__(OperatorConfig(), name=processor.name)
        self.processor = nnx.Param(processor)

    def apply(
        self,
        data: Element,
        state: PyTree,
        metadata: dict[str, Any] | None,
        random_params: Any = None,
        stats: dict[str, Any] | None = None,
    ) -> ApplyResult:
        """Process one element's ``synth_audio``."""
        del random_params, stats
        processor: Effect = self.processor.get_value()
        return {**data, SYNTH_AUDIO: processor.apply({}, data[SYNTH_AUDIO])}, state, metadata


class DecoderControls(OperatorModule):
    """The Equinox decoder and the instrument's ``get_controls`` as an operator: ``f0_hz`` + ``loudness_db`` ->
    every processor's controls, as fields ``"<processor>/<control>"``.

    Holds the decoder inside one ``nnx.Param`` (its value is the Equinox module, so ``nnx.state(op, nnx.Param)``
    trains it). The instrument is used for its ``get_controls`` steps only (which depend on settings, not on
    learned arrays).

    Parameters
    ----------
    decoder : DDSPDecoder or RnnFcDecoder
        A decoder without z (``z_dims == 0``) whose outputs match ``instrument.control_sizes()``.
    instrument : Instrument
        Supplies the processors' ``get_controls``.
    """

    def __init__(self, decoder: AnyDecoder, instrument: Instrument):
        if decoder.z_dims != 0:
            raise ValueError(f"decoder must take no z (z_dims=0), got z_dims={decoder.z_dims}")
        super().__init__(OperatorConfig(), name="decoder_controls")
        self.decoder = nnx.Param(decoder)
        # get_controls depends on settings only: keep the instrument's structure, without its learnable arrays
        # (those live in the composite's operators).
        self.instrument = eqx.filter(instrument, eqx.is_array, inverse=True)

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
        decoder: AnyDecoder = self.decoder.get_value()
        raw = decoder(data[F0_HZ], data[LOUDNESS_DB])
        controls = self.instrument.get_controls(raw, data[F0_HZ])
        return {**data, **controls_element(controls)}, state, metadata


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
        check_positive_int(sample_rate=sample_rate, hop_size=hop_size)
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
        check_positive_int(sample_rate=sample_rate, hop_size=hop_size, n_fft=n_fft)
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

