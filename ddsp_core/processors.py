"""Processors: the synthesisers and effects of a DDSP instrument as small Equinox modules that compose.

A processor splits, as magenta's ``Processor`` does, two steps:

* ``get_controls(raw, f0_hz)``: raw network outputs -> physically meaningful controls (Hz, linear amplitude);
* ``get_signal(controls, n_samples=..., key=...)`` (a :class:`Source`) or ``apply(controls, audio)`` (an
  :class:`Effect`): controls -> audio.

It declares the raw decoder outputs it needs with ``control_sizes()`` (name -> size per frame) and owns its learnable
arrays as fields (the learned reverb's impulse response); its settings are static fields. Everything works on ONE
example at frame rate; batches come from ``jax.vmap``.

:class:`Instrument` is the description of how processors combine: a weighted sum of sources, then effects in series.
From it come the decoder's heads (:meth:`Instrument.control_sizes`), the pure forward function (:func:`render`), the
datarax composite (``ddsp_datarax.pipeline.composite_from_instrument``), the per-processor signals of an evaluation
and, through :func:`build_processor`, the processors named in a run's config.

A new processor is a subclass of :class:`Source` or :class:`Effect` in the user's own file; pass it to
:class:`Instrument` directly, or register it by name with :func:`register_processor` (or name it in a config as
``"package.module:ClassName"``).

Examples
--------
>>> import jax, jax.numpy as jnp
>>> instrument = Instrument(
...     sources=(Harmonic(n_harmonics=8, sample_rate=16000), FilteredNoise(n_bands=5)),
...     weights=(1.0, 0.1),
...     effects=(Reverb(ir_length=64, key=jax.random.key(0)),),
...     sample_rate=16000,
...     hop_size=64,
... )
>>> instrument.control_sizes()
{'harmonic/amplitude': 1, 'harmonic/harmonic_distribution': 8, 'noise/magnitudes': 5}
>>> raw = {name: jnp.zeros((10, size)) for name, size in instrument.control_sizes().items()}
>>> rendered = render(instrument, raw, jnp.full((10,), 220.0), key=jax.random.key(1))
>>> rendered.audio.shape, sorted(rendered.signals)
((640,), ['harmonic', 'noise'])
"""

from __future__ import annotations

import abc
import importlib
import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core import stream
from ddsp_core._typing import AnyArray, Key
from ddsp_core.core import exp_sigmoid, midi_to_hz
from ddsp_core.effects import exp_decay_impulse_response, learned_ir_init, reverb
from ddsp_core.noise import filtered_noise, filtered_noise_controls
from ddsp_core.synths import harmonic_controls, harmonic_synthesis, sinusoidal_synthesis, wavetable_synthesis

__all__ = [
    "ConvolutionReverb",
    "Effect",
    "ExpDecayReverb",
    "FilteredNoise",
    "FilteredNoiseReverb",
    "Harmonic",
    "Instrument",
    "Processor",
    "Rendered",
    "Reverb",
    "Sinusoidal",
    "Source",
    "Wavetable",
    "build_processor",
    "processor_is_source",
    "processor_settings",
    "processor_types",
    "register_processor",
    "render",
]

Controls = dict[str, Array]
"""A processor's controls for one example: control name -> array at frame rate (``(n_frames, ...)``)."""


class Processor(eqx.Module):
    """Base of every processor: a name, the raw decoder outputs it needs, and its ``get_controls`` step.

    Subclasses set ``name`` (a static field, unique within an instrument) and implement :meth:`control_sizes` and
    :meth:`get_controls`; a processor with no network controls keeps the defaults (no controls).
    """

    name: eqx.AbstractVar[str]

    def control_sizes(self) -> dict[str, int]:
        """Raw decoder outputs this processor needs: control name -> values per frame (empty: none)."""
        return {}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[Array, " n_frames"]) -> Controls:
        """Raw network outputs ``{name: (n_frames, size)}`` -> physical controls (same names or new ones)."""
        del f0_hz
        return dict(raw)


class Source(Processor):
    """A processor that makes a signal from its controls (a synthesiser).

    ``stochastic`` (a class attribute) says whether ``get_signal`` draws from its ``key``; deterministic sources
    ignore the key.
    """

    stochastic: ClassVar[bool] = False

    @abc.abstractmethod
    def get_signal(self, controls: Controls, *, n_samples: int, key: Key) -> Float[Array, " n_samples"]:
        """Controls of ONE example -> ``(n_samples,)`` audio; ``key`` is this source's own PRNG key."""

    def stream_latency(self, *, hop_size: int) -> int:
        """Fewest samples by which the block form (:meth:`stream_signal`) can trail :meth:`get_signal`."""
        raise NotImplementedError(_no_block_form(self))

    def init_stream(self, *, hop_size: int, latency_samples: int) -> Any:
        """State of the block form before the first block, its output trailing :meth:`get_signal` by
        ``latency_samples`` (at least :meth:`stream_latency`)."""
        raise NotImplementedError(_no_block_form(self))

    def stream_signal(self, state: Any, controls: Controls, *, hop_size: int, key: Key) -> tuple[Any, Array]:
        """Block form of :meth:`get_signal`: controls of ``k`` frames -> ``(state, (k * hop_size,) audio)``.

        The outputs of consecutive calls are :meth:`get_signal` of all their frames, delayed by the latency given
        to :meth:`init_stream`. ``key`` is the source's key for the whole stream (the same for every block).
        """
        raise NotImplementedError(_no_block_form(self))


class Effect(Processor):
    """A processor that transforms the mixed signal (e.g. a reverb)."""

    @abc.abstractmethod
    def apply(self, controls: Controls, audio: Float[Array, " n_samples"]) -> Float[Array, " n_samples"]:
        """``(n_samples,)`` audio and controls of ONE example -> ``(n_samples,)`` processed audio."""

    def init_stream(self, *, hop_size: int) -> Any:
        """State of the block form (:meth:`stream_apply`) before the first block."""
        raise NotImplementedError(_no_block_form(self))

    def stream_apply(
        self, state: Any, controls: Controls, audio: Float[Array, " k_hop"], *, hop_size: int
    ) -> tuple[Any, Float[Array, " k_hop"]]:
        """Block form of :meth:`apply`, without latency: consecutive outputs are :meth:`apply` of the whole
        stream."""
        raise NotImplementedError(_no_block_form(self))


def _no_block_form(processor: Processor) -> str:
    return (f"processor {processor.name!r} ({type(processor).__name__}) has no block form for streaming; "
            "give it init_stream and stream_signal/stream_apply (see ddsp_core.stream)")


def _check_name(name: str) -> None:
    if not name or "/" in name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"processor name must be a non-empty word without '/', got {name!r}")


def _check_size(what: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")


# Sources ------------------------------------------------------------------------------------------------------------
class Harmonic(Source):
    """Additive harmonic synthesiser (magenta ``synths.Harmonic``).

    Controls: ``amplitude (n_frames,)`` = ``exp_sigmoid`` of the raw output; ``harmonic_distribution
    (n_frames, n_harmonics)`` = ``exp_sigmoid``, harmonics at or above Nyquist zeroed, normalised to sum 1;
    ``f0_hz (n_frames,)`` passed through. Signal: :func:`ddsp_core.synths.harmonic_synthesis`.

    Parameters
    ----------
    n_harmonics : int
        Harmonics of the oscillator bank.
    sample_rate : int
        Audio sample rate, Hz.
    amp_resample : str
        ``"window"`` (overlapping Hann windows, default) or ``"linear"`` amplitude upsampling.
    name : str
        Processor name (default ``"harmonic"``).
    """

    n_harmonics: int = eqx.field(static=True)
    sample_rate: int = eqx.field(static=True)
    amp_resample: str = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, n_harmonics: int = 100, sample_rate: int = 16000, amp_resample: str = "window",
                 name: str = "harmonic"):
        _check_size("harmonic n_harmonics", n_harmonics)
        _check_size("harmonic sample_rate", sample_rate)
        if amp_resample not in ("window", "linear"):
            raise ValueError(f"harmonic amp_resample must be 'window' or 'linear', got {amp_resample!r}")
        _check_name(name)
        self.n_harmonics, self.sample_rate, self.amp_resample, self.name = n_harmonics, sample_rate, amp_resample, name

    def control_sizes(self) -> dict[str, int]:
        return {"amplitude": 1, "harmonic_distribution": self.n_harmonics}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[Array, " n_frames"]) -> Controls:
        amplitude, distribution = harmonic_controls(
            raw["amplitude"][:, 0], raw["harmonic_distribution"], f0_hz, sample_rate=self.sample_rate
        )  # [n_frames], [n_frames, n_harmonics]
        return {"amplitude": amplitude, "harmonic_distribution": distribution, "f0_hz": jnp.asarray(f0_hz)}

    def get_signal(self, controls: Controls, *, n_samples: int, key: Key) -> Float[Array, " n_samples"]:
        del key
        return harmonic_synthesis(
            controls["amplitude"], controls["harmonic_distribution"], controls["f0_hz"],
            n_samples=n_samples, sample_rate=self.sample_rate, amp_resample=self.amp_resample,
        )

    def stream_latency(self, *, hop_size: int) -> int:
        return stream.OSCILLATOR_LATENCY_FRAMES * hop_size

    def init_stream(self, *, hop_size: int, latency_samples: int) -> Any:
        delay = stream.oscillator_delay_init(hop_size=hop_size, latency_samples=latency_samples)
        return stream.harmonic_init(self.n_harmonics), delay

    def stream_signal(self, state: Any, controls: Controls, *, hop_size: int, key: Key) -> tuple[Any, Array]:
        del key
        oscillator, delay = state
        oscillator, audio = stream.harmonic_block(
            oscillator, controls["amplitude"], controls["harmonic_distribution"], controls["f0_hz"],
            sample_rate=self.sample_rate, hop_size=hop_size, amp_resample=self.amp_resample,
        )
        delay, audio = stream.delay_block(delay, audio)
        return (oscillator, delay), audio


class FilteredNoise(Source):
    """Filtered white noise (magenta ``synths.FilteredNoise``).

    Controls: ``magnitudes (n_frames, n_bands)`` = ``exp_sigmoid(raw + initial_bias)``. Signal:
    :func:`ddsp_core.noise.filtered_noise` (uniform noise from this source's key through per-frame FIR filters).

    Parameters
    ----------
    n_bands : int
        Filter bands, uniform from 0 Hz to Nyquist.
    window_size : int
        Hann window of each frame's filter (default 257; 0: the full filter).
    initial_bias : float
        Added to the raw output before ``exp_sigmoid`` (default -5: the noise starts about 94 dB down).
    name : str
        Processor name (default ``"noise"``).
    """

    stochastic: ClassVar[bool] = True
    n_bands: int = eqx.field(static=True)
    window_size: int = eqx.field(static=True)
    initial_bias: float = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, n_bands: int = 65, window_size: int = 257, initial_bias: float = -5.0,
                 name: str = "noise"):
        _check_size("filtered_noise n_bands", n_bands, minimum=2)
        _check_size("filtered_noise window_size", window_size, minimum=0)
        if not math.isfinite(initial_bias):
            raise ValueError(f"filtered_noise initial_bias must be finite, got {initial_bias}")
        _check_name(name)
        self.n_bands, self.window_size, self.initial_bias, self.name = n_bands, window_size, initial_bias, name

    def control_sizes(self) -> dict[str, int]:
        return {"magnitudes": self.n_bands}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[Array, " n_frames"]) -> Controls:
        del f0_hz
        return {"magnitudes": filtered_noise_controls(raw["magnitudes"], initial_bias=self.initial_bias)}

    def get_signal(self, controls: Controls, *, n_samples: int, key: Key) -> Float[Array, " n_samples"]:
        return filtered_noise(controls["magnitudes"], n_samples=n_samples, window_size=self.window_size, key=key)

    def stream_latency(self, *, hop_size: int) -> int:
        return stream.filtered_noise_lookahead(self.n_bands, window_size=self.window_size)

    def init_stream(self, *, hop_size: int, latency_samples: int) -> Any:
        return stream.filtered_noise_init(self.n_bands, window_size=self.window_size, latency_samples=latency_samples)

    def stream_signal(self, state: Any, controls: Controls, *, hop_size: int, key: Key) -> tuple[Any, Array]:
        return stream.filtered_noise_block(
            state, controls["magnitudes"], hop_size=hop_size, window_size=self.window_size, key=key
        )


class Sinusoidal(Source):
    """A bank of free sinusoids, each with its own frequency and amplitude (magenta ``synths.Sinusoidal``).

    Controls: ``amplitudes (n_frames, n_sinusoids)`` = ``exp_sigmoid`` of the raw outputs; ``frequencies_hz
    (n_frames, n_sinusoids)`` = ``midi_to_hz(127 * sigmoid(raw))``, a log-frequency scale from 8.2 Hz to 12.5 kHz
    (magenta's default is a softmax over frequency bins; a sigmoid on a MIDI scale is cheaper and keeps gradients
    smooth). Oscillators at or above Nyquist are silent. Signal: :func:`ddsp_core.synths.sinusoidal_synthesis`.

    Parameters
    ----------
    n_sinusoids : int
        Oscillators in the bank.
    sample_rate : int
        Audio sample rate, Hz.
    name : str
        Processor name (default ``"sinusoidal"``).
    """

    n_sinusoids: int = eqx.field(static=True)
    sample_rate: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, n_sinusoids: int = 64, sample_rate: int = 16000, name: str = "sinusoidal"):
        _check_size("sinusoidal n_sinusoids", n_sinusoids)
        _check_size("sinusoidal sample_rate", sample_rate)
        _check_name(name)
        self.n_sinusoids, self.sample_rate, self.name = n_sinusoids, sample_rate, name

    def control_sizes(self) -> dict[str, int]:
        return {"amplitudes": self.n_sinusoids, "frequencies": self.n_sinusoids}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[Array, " n_frames"]) -> Controls:
        del f0_hz
        frequencies_hz = midi_to_hz(127.0 * jax.nn.sigmoid(raw["frequencies"]))  # [n_frames, n_sinusoids]
        return {"amplitudes": exp_sigmoid(raw["amplitudes"]), "frequencies_hz": frequencies_hz}

    def get_signal(self, controls: Controls, *, n_samples: int, key: Key) -> Float[Array, " n_samples"]:
        del key
        return sinusoidal_synthesis(
            controls["amplitudes"], controls["frequencies_hz"], n_samples=n_samples, sample_rate=self.sample_rate
        )

    def stream_latency(self, *, hop_size: int) -> int:
        return stream.OSCILLATOR_LATENCY_FRAMES * hop_size

    def init_stream(self, *, hop_size: int, latency_samples: int) -> Any:
        delay = stream.oscillator_delay_init(hop_size=hop_size, latency_samples=latency_samples)
        return stream.sinusoidal_init(self.n_sinusoids), delay

    def stream_signal(self, state: Any, controls: Controls, *, hop_size: int, key: Key) -> tuple[Any, Array]:
        del key
        oscillator, delay = state
        oscillator, audio = stream.sinusoidal_block(
            oscillator, controls["amplitudes"], controls["frequencies_hz"], sample_rate=self.sample_rate,
            hop_size=hop_size,
        )
        delay, audio = stream.delay_block(delay, audio)
        return (oscillator, delay), audio


class Wavetable(Source):
    """A wavetable oscillator at f0 whose single-cycle waveform the network draws per frame.

    Controls: ``amplitude (n_frames,)`` = ``exp_sigmoid``; ``wavetable (n_frames, n_points)`` = ``tanh`` of the raw
    outputs (a bipolar waveform in (-1, 1)); ``f0_hz`` passed through. Signal:
    :func:`ddsp_core.synths.wavetable_synthesis`. (magenta's ``synths.Wavetable`` learns one table per frame the
    same way.)

    Parameters
    ----------
    n_points : int
        Samples per wavetable period (default 64).
    sample_rate : int
        Audio sample rate, Hz.
    name : str
        Processor name (default ``"wavetable"``).
    """

    n_points: int = eqx.field(static=True)
    sample_rate: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, n_points: int = 64, sample_rate: int = 16000, name: str = "wavetable"):
        _check_size("wavetable n_points", n_points, minimum=2)
        _check_size("wavetable sample_rate", sample_rate)
        _check_name(name)
        self.n_points, self.sample_rate, self.name = n_points, sample_rate, name

    def control_sizes(self) -> dict[str, int]:
        return {"amplitude": 1, "wavetable": self.n_points}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[Array, " n_frames"]) -> Controls:
        return {
            "amplitude": exp_sigmoid(raw["amplitude"][:, 0]),
            "wavetable": jnp.tanh(raw["wavetable"]),
            "f0_hz": jnp.asarray(f0_hz),
        }

    def get_signal(self, controls: Controls, *, n_samples: int, key: Key) -> Float[Array, " n_samples"]:
        del key
        return wavetable_synthesis(
            controls["amplitude"], controls["wavetable"], controls["f0_hz"],
            n_samples=n_samples, sample_rate=self.sample_rate,
        )

    def stream_latency(self, *, hop_size: int) -> int:
        return stream.OSCILLATOR_LATENCY_FRAMES * hop_size

    def init_stream(self, *, hop_size: int, latency_samples: int) -> Any:
        delay = stream.oscillator_delay_init(hop_size=hop_size, latency_samples=latency_samples)
        return stream.wavetable_init(self.n_points), delay

    def stream_signal(self, state: Any, controls: Controls, *, hop_size: int, key: Key) -> tuple[Any, Array]:
        del key
        oscillator, delay = state
        oscillator, audio = stream.wavetable_block(
            oscillator, controls["amplitude"], controls["wavetable"], controls["f0_hz"],
            sample_rate=self.sample_rate, hop_size=hop_size,
        )
        delay, audio = stream.delay_block(delay, audio)
        return (oscillator, delay), audio


# Effects ------------------------------------------------------------------------------------------------------------
class ConvolutionReverb(Effect):
    """An effect that convolves the mix with an impulse response (first tap masked, dry added:
    :func:`ddsp_core.effects.reverb`; in blocks: a partitioned convolution). Subclasses say where the response
    comes from with :meth:`get_impulse_response`."""

    @abc.abstractmethod
    def get_impulse_response(self) -> Float[Array, " ir_length"]:
        """The current impulse response."""

    def apply(self, controls: Controls, audio: Float[Array, " n_samples"]) -> Float[Array, " n_samples"]:
        del controls
        return reverb(audio, self.get_impulse_response())

    def init_stream(self, *, hop_size: int) -> Any:
        return stream.reverb_init(self.get_impulse_response().shape[0], hop_size=hop_size)

    def stream_apply(
        self, state: Any, controls: Controls, audio: Float[Array, " k_hop"], *, hop_size: int
    ) -> tuple[Any, Float[Array, " k_hop"]]:
        del controls
        return stream.reverb_block(state, audio, self.get_impulse_response(), hop_size=hop_size)


class Reverb(ConvolutionReverb):
    """Convolution reverb with a learned impulse response (magenta ``effects.Reverb(trainable=True)``).

    The impulse response is a learnable field, initialised by :func:`ddsp_core.effects.learned_ir_init` (quiet,
    exponentially decaying noise); :func:`ddsp_core.effects.reverb` masks its first tap and adds the dry signal.

    Parameters
    ----------
    ir_length : int
        Impulse-response taps (16000 = 1 s at 16 kHz).
    key : Key
        PRNG key of the initial impulse response.
    name : str
        Processor name (default ``"reverb"``).
    """

    impulse_response: Float[Array, " ir_length"]
    name: str = eqx.field(static=True)

    def __init__(self, *, ir_length: int = 16000, key: Key, name: str = "reverb"):
        _check_size("reverb ir_length", ir_length, minimum=2)
        _check_name(name)
        self.impulse_response = learned_ir_init(ir_length, key=key)
        self.name = name

    def get_impulse_response(self) -> Float[Array, " ir_length"]:
        """The current impulse response (the learned field)."""
        return self.impulse_response



class ExpDecayReverb(ConvolutionReverb):
    """Reverb whose impulse response is exponentially decaying noise with two learned scalars (magenta
    ``effects.ExpDecayReverb``).

    ``ir = exp_sigmoid(gain) * exp(-(2 + exp(decay)) t) * noise`` (:func:`ddsp_core.effects.exp_decay_impulse_response`);
    the noise comes from a fixed ``seed`` so the same parameters always give the same room (magenta draws new noise
    every call).

    Parameters
    ----------
    ir_length : int
        Impulse-response taps.
    gain, decay : float
        Initial pre-activation gain and decay (magenta: 2.0 and 4.0).
    seed : int
        Seed of the impulse response's noise.
    name : str
        Processor name (default ``"reverb"``).
    """

    gain: Float[Array, ""]
    decay: Float[Array, ""]
    ir_length: int = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, ir_length: int = 16000, gain: float = 2.0, decay: float = 4.0, seed: int = 0,
                 name: str = "reverb"):
        _check_size("exp_decay_reverb ir_length", ir_length, minimum=2)
        for what, value in (("gain", gain), ("decay", decay)):
            if not math.isfinite(value):
                raise ValueError(f"exp_decay_reverb {what} must be finite, got {value}")
        _check_name(name)
        self.gain = jnp.asarray(gain, dtype=jnp.float32)
        self.decay = jnp.asarray(decay, dtype=jnp.float32)
        self.ir_length, self.seed, self.name = ir_length, seed, name

    def get_impulse_response(self) -> Float[Array, " ir_length"]:
        """The current impulse response."""
        return exp_decay_impulse_response(self.gain, self.decay, ir_length=self.ir_length,
                                          key=jax.random.key(self.seed))



class FilteredNoiseReverb(ConvolutionReverb):
    """Reverb whose impulse response is filtered noise with learned, time-varying magnitudes (magenta
    ``effects.FilteredNoiseReverb``): the room's decay per frequency band is learned directly.

    The learned array ``magnitudes (n_ir_frames, n_bands)`` goes through ``exp_sigmoid(m + initial_bias)`` and
    shapes noise of a fixed ``seed`` into an ``ir_length``-tap response (:func:`ddsp_core.noise.filtered_noise`).

    Parameters
    ----------
    ir_length : int
        Impulse-response taps; a multiple of ``n_ir_frames``.
    n_bands : int
        Frequency bands of the response.
    n_ir_frames : int
        Time frames of the response (default 50).
    initial_bias : float
        Bias before ``exp_sigmoid`` (default -3.0, magenta's).
    seed : int
        Seed of the noise.
    key : Key
        PRNG key of the initial magnitudes (small Gaussian values).
    name : str
        Processor name (default ``"reverb"``).
    """

    magnitudes: Float[Array, "n_ir_frames n_bands"]
    ir_length: int = eqx.field(static=True)
    initial_bias: float = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, *, ir_length: int = 16000, n_bands: int = 16, n_ir_frames: int = 50,
                 initial_bias: float = -3.0, seed: int = 0, key: Key, name: str = "reverb"):
        _check_size("filtered_noise_reverb ir_length", ir_length, minimum=2)
        _check_size("filtered_noise_reverb n_bands", n_bands, minimum=2)
        _check_size("filtered_noise_reverb n_ir_frames", n_ir_frames)
        if ir_length % n_ir_frames:
            raise ValueError(f"filtered_noise_reverb ir_length={ir_length} must be a multiple of "
                             f"n_ir_frames={n_ir_frames}")
        _check_name(name)
        self.magnitudes = 0.1 * jax.random.normal(key, (n_ir_frames, n_bands))
        self.ir_length, self.initial_bias, self.seed, self.name = ir_length, initial_bias, seed, name

    def get_impulse_response(self) -> Float[Array, " ir_length"]:
        """The current impulse response."""
        magnitudes = filtered_noise_controls(self.magnitudes, initial_bias=self.initial_bias)
        return filtered_noise(magnitudes, n_samples=self.ir_length, window_size=0, key=jax.random.key(self.seed))



# The instrument ----------------------------------------------------------------------------------------------------
class Rendered(NamedTuple):
    """What :func:`render` computes for ONE example.

    Attributes
    ----------
    audio : Float[Array, "n_samples"]
        The instrument's output: weighted sum of the sources through the effects.
    signals : dict[str, Float[Array, "n_samples"]]
        Each source's own (unweighted, dry) signal, by processor name.
    controls : dict[str, dict[str, Array]]
        Each processor's controls, by processor name.
    """

    audio: Float[Array, " n_samples"]
    signals: dict[str, Array]
    controls: dict[str, Controls]


class Instrument(eqx.Module):
    """How processors combine: ``effects[-1](... effects[0](sum_i weights[i] * sources[i]))``.

    Parameters
    ----------
    sources : tuple of Source
        Synthesisers, at least one.
    weights : tuple of float
        Mix weight of each source (same length as ``sources``).
    effects : tuple of Effect
        Effects applied in series to the mix (may be empty).
    sample_rate : int
        Audio sample rate, Hz.
    hop_size : int
        Audio samples per control frame.
    """

    sources: tuple[Source, ...]
    effects: tuple[Effect, ...]
    weights: tuple[float, ...] = eqx.field(static=True)
    sample_rate: int = eqx.field(static=True)
    hop_size: int = eqx.field(static=True)

    def __init__(self, *, sources, weights=None, effects=(), sample_rate: int = 16000, hop_size: int = 64):
        sources, effects = tuple(sources), tuple(effects)
        weights = tuple(float(w) for w in (weights if weights is not None else (1.0,) * len(sources)))
        if not sources:
            raise ValueError("an instrument needs at least one source processor")
        for processor in sources:
            if not isinstance(processor, Source):
                raise ValueError(f"sources must be Source processors, got {type(processor).__name__}")
        for processor in effects:
            if not isinstance(processor, Effect):
                raise ValueError(f"effects must be Effect processors, got {type(processor).__name__}")
        if len(weights) != len(sources):
            raise ValueError(f"weights must have one entry per source ({len(sources)}), got {len(weights)}")
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"weights must be finite numbers, got {weights}")
        names = [p.name for p in sources + effects]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"processor names must be unique in an instrument; repeated: {', '.join(duplicates)}")
        _check_size("sample_rate", sample_rate)
        _check_size("hop_size", hop_size)
        self.sources, self.effects, self.weights = sources, effects, weights
        self.sample_rate, self.hop_size = sample_rate, hop_size

    @property
    def processors(self) -> tuple[Processor, ...]:
        """Sources then effects, in signal order."""
        return self.sources + self.effects

    def control_sizes(self) -> dict[str, int]:
        """Every raw decoder output the processors need: ``"<processor>/<control>" -> size``, in signal order."""
        return {f"{p.name}/{name}": size for p in self.processors for name, size in p.control_sizes().items()}

    def get_controls(self, raw: Mapping[str, Array], f0_hz: Float[AnyArray, " n_frames"]) -> dict[str, Controls]:
        """Raw decoder outputs (``"<processor>/<control>" -> (n_frames, size)``) -> each processor's controls."""
        f0_hz = jnp.asarray(f0_hz, dtype=jnp.float32)
        missing = sorted(set(self.control_sizes()) - set(raw))
        if missing:
            raise ValueError(f"raw decoder outputs are missing {', '.join(missing)}")
        controls = {}
        for processor in self.processors:
            own = {name: raw[f"{processor.name}/{name}"] for name in processor.control_sizes()}
            controls[processor.name] = processor.get_controls(own, f0_hz)
        return controls

    def source_key(self, key: Key, index: int) -> Key:
        """The PRNG key of source ``index``: ``fold_in(key, index)`` (the datarax composite draws the same)."""
        return jax.random.fold_in(key, index)


def render(
    instrument: Instrument, raw: Mapping[str, Array], f0_hz: Float[AnyArray, " n_frames"], *, key: Key
) -> Rendered:
    """Run an instrument on ONE example: raw decoder outputs -> controls -> sources -> weighted mix -> effects.

    Parameters
    ----------
    instrument : Instrument
        The processors and how they combine.
    raw : dict of str to Array
        Raw decoder outputs, ``"<processor>/<control>" -> (n_frames, size)`` (see :meth:`Instrument.control_sizes`).
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz.
    key : Key
        PRNG key; source ``i`` uses ``fold_in(key, i)``.

    Returns
    -------
    Rendered
        ``audio`` of ``n_frames * hop_size`` samples, each source's dry signal and every processor's controls.
    """
    n_samples = jnp.shape(f0_hz)[0] * instrument.hop_size
    with jax.named_scope("instrument"):
        controls = instrument.get_controls(raw, f0_hz)
        signals = {}
        for index, source in enumerate(instrument.sources):
            with jax.named_scope(source.name):
                signals[source.name] = source.get_signal(
                    controls[source.name], n_samples=n_samples, key=instrument.source_key(key, index)
                )  # [n_samples]
        audio = sum(w * signals[s.name] for w, s in zip(instrument.weights, instrument.sources, strict=True))
        for effect in instrument.effects:
            with jax.named_scope(effect.name):
                audio = effect.apply(controls[effect.name], audio)  # [n_samples]
        return Rendered(audio=audio, signals=signals, controls=controls)


# Building processors from a description --------------------------------------------------------------------------
_REGISTRY: dict[str, type[Processor]] = {
    "harmonic": Harmonic,
    "filtered_noise": FilteredNoise,
    "sinusoidal": Sinusoidal,
    "wavetable": Wavetable,
    "reverb": Reverb,
    "exp_decay_reverb": ExpDecayReverb,
    "filtered_noise_reverb": FilteredNoiseReverb,
}


def register_processor(type_name: str, cls: type[Processor]) -> None:
    """Make a processor class buildable by ``type_name`` in a description (e.g. a config file)."""
    if not (isinstance(cls, type) and issubclass(cls, (Source, Effect))):
        raise ValueError(f"{type_name!r}: a processor must be a Source or Effect subclass, got {cls!r}")
    _REGISTRY[type_name] = cls


def processor_types() -> tuple[str, ...]:
    """The registered processor type names."""
    return tuple(sorted(_REGISTRY))


def _processor_class(type_name: str) -> type[Processor]:
    if type_name in _REGISTRY:
        return _REGISTRY[type_name]
    if ":" in type_name:
        module_name, _, class_name = type_name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"processor type {type_name!r} cannot be imported: {error}") from None
        if isinstance(cls, type) and issubclass(cls, (Source, Effect)):
            return cls
        raise ValueError(f"processor type {type_name!r} is not a Source or Effect subclass")
    raise ValueError(f"unknown processor type {type_name!r}; expected one of {', '.join(processor_types())} "
                     "or 'package.module:ClassName'")


def processor_settings(type_name: str) -> dict[str, Any]:
    """The settings a processor type takes and their defaults (``inspect.Parameter.empty`` when required);
    ``sample_rate`` and ``key`` are supplied by the builder and left out.

    Examples
    --------
    >>> processor_settings("filtered_noise")
    {'n_bands': 65, 'window_size': 257, 'initial_bias': -5.0, 'name': 'noise'}
    """
    parameters = inspect.signature(_processor_class(type_name).__init__).parameters
    return {
        name: p.default for name, p in parameters.items()
        if p.kind == p.KEYWORD_ONLY and name not in ("key", "sample_rate")
    }


def processor_is_source(type_name: str) -> bool:
    """Whether a processor type is a :class:`Source` (else an :class:`Effect`)."""
    return issubclass(_processor_class(type_name), Source)


def build_processor(type_name: str, settings: Mapping[str, Any], *, sample_rate: int, key: Key) -> Processor:
    """Build a processor from its type name and settings, e.g. ``("harmonic", {"n_harmonics": 60})``.

    ``sample_rate`` and ``key`` are passed to the constructor when it takes them. Unknown settings are refused
    with the list of valid ones.
    """
    cls = _processor_class(type_name)
    parameters = inspect.signature(cls.__init__).parameters
    accepted = {name for name, p in parameters.items() if p.kind == p.KEYWORD_ONLY}
    valid = processor_settings(type_name)
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ValueError(f"processor {type_name!r} has no setting {', '.join(unknown)}; valid settings: "
                         f"{', '.join(valid)}")
    extra: dict[str, Any] = {}
    if "sample_rate" in accepted:
        extra["sample_rate"] = sample_rate
    if "key" in accepted:
        extra["key"] = key
    try:
        return cls(**settings, **extra)
    except TypeError as error:
        raise ValueError(f"processor {type_name!r}: {error}") from None
