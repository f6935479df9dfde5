"""The DDSP decoder: an Equinox network that maps pitch and loudness (and an optional z) to synthesiser controls.

Architecture (Engel et al. 2020, section 3 and appendix B; magenta ddsp ``RnnFcDecoder`` with one input layer):

    [f0_scaled, loudness_scaled (, z)]  per frame
      -> Linear(hidden)
      -> GRU(hidden), run over frames with ``lax.scan``
      -> n_mlp_layers x (Linear(hidden) -> LayerNorm -> ReLU)
      -> three linear heads: overall amplitude (1), harmonic distribution (n_harmonics), noise magnitudes (n_bands)

The heads return *raw* network outputs. Turning them into physical controls (``exp_sigmoid``, removing harmonics above
Nyquist, normalising the distribution) is the synthesisers' ``get_controls`` step, kept separate as magenta does
(see ``ddsp_core.model``).

The GRU is written so that the input projection ``W_ih x_t + b`` of every frame is one matrix product *outside* the
scan; only the recurrent product ``W_hh h_{t-1}`` stays inside the loop. The parameters are those of
``equinox.nn.GRUCell`` (same layout and initialisation), and the maths is the same, step for step.

This module also holds the optional z-encoder (:class:`MfccEncoder`), magenta's ``MfccTimeDistributedRnnEncoder``:
MFCC -> LayerNorm -> GRU -> Linear to ``z_dims`` per frame, used for timbre conditioning.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core._typing import AnyArray, Key
from ddsp_core.core import hz_to_midi, upsample_linear
from ddsp_core.spectral import mfcc

__all__ = [
    "DDSPDecoder",
    "DecoderOutputs",
    "MfccEncoder",
    "decoder_parameter_count",
    "parameter_count",
    "parameter_summary",
    "scale_decoder_inputs",
]

F0_RANGE_MIDI = 127.0
"""f0 is scaled as ``hz_to_midi(f0_hz) / 127`` (magenta ``F0LoudnessPreprocessor``)."""
LOUDNESS_RANGE_DB = 80.0
"""Loudness is scaled as ``loudness_db / 80 + 1`` (magenta ``F0LoudnessPreprocessor``)."""


class DecoderOutputs(NamedTuple):
    """Raw (unscaled) decoder outputs for one example, at frame rate.

    Attributes
    ----------
    amplitude : Float[Array, "n_frames"]
        Raw overall amplitude; ``exp_sigmoid`` of it is the linear amplitude.
    harmonic_distribution : Float[Array, "n_frames n_harmonics"]
        Raw harmonic distribution; ``exp_sigmoid``, the Nyquist mask and normalisation make it a distribution.
    noise_magnitudes : Float[Array, "n_frames n_noise_bands"]
        Raw noise filter magnitudes; the noise ``get_controls`` step scales them with ``exp_sigmoid``.
    """

    amplitude: Float[Array, " n_frames"]
    harmonic_distribution: Float[Array, "n_frames n_harmonics"]
    noise_magnitudes: Float[Array, "n_frames n_noise_bands"]


def scale_decoder_inputs(
    f0_hz: Float[AnyArray, " n_frames"], loudness_db: Float[AnyArray, " n_frames"]
) -> Float[Array, "n_frames 2"]:
    """Scale pitch and loudness to roughly [0, 1], the decoder's input features.

    Parameters
    ----------
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz. 0 Hz (unvoiced) maps to MIDI 0.
    loudness_db : Float[AnyArray, "n_frames"]
        A-weighted loudness per frame, dB (>= -80; loud notes reach about +25, see ``compute_loudness``).

    Returns
    -------
    Float[Array, "n_frames 2"]
        Columns ``[hz_to_midi(f0_hz) / 127, loudness_db / 80 + 1]``.

    Notes
    -----
    Matches magenta ddsp ``F0LoudnessPreprocessor`` (``F0_RANGE = 127``, ``DB_RANGE = 80``).

    Examples
    --------
    >>> scale_decoder_inputs(jnp.array([440.0]), jnp.array([-40.0]))  # [[69/127, 0.5]]

    See Also
    --------
    DDSPDecoder : consumes these features.
    """
    f0_scaled = hz_to_midi(jnp.asarray(f0_hz)) / F0_RANGE_MIDI
    loudness_scaled = jnp.asarray(loudness_db) / LOUDNESS_RANGE_DB + 1.0
    return jnp.stack([f0_scaled, loudness_scaled], axis=-1)  # [n_frames, 2]


def _linear_over_frames(layer: eqx.nn.Linear, x: Float[Array, "n_frames d_in"]) -> Float[Array, "n_frames d_out"]:
    """Apply an ``eqx.nn.Linear`` to every frame as one matrix product."""
    y = x @ layer.weight.T  # [n_frames, out_features]
    if layer.bias is not None:
        y = y + layer.bias
    return y


def _gru_over_frames(
    cell: eqx.nn.GRUCell, inputs: Float[Array, "n_frames d_in"], *, unroll: int
) -> Float[Array, "n_frames hidden"]:
    """Run a GRU over a sequence, from a zero state, with the input projection hoisted out of the scan.

    Same maths as stepping ``equinox.nn.GRUCell`` (PyTorch convention, reset gate applied after the hidden product):

        r_t = sigmoid(W_ir x_t + b_r + W_hr h_{t-1})
        u_t = sigmoid(W_iu x_t + b_u + W_hu h_{t-1})
        n_t = tanh(W_in x_t + b_n + r_t * (W_hn h_{t-1} + b_hn))
        h_t = n_t + u_t * (h_{t-1} - n_t)
    """
    hidden_size = cell.hidden_size
    input_gates = inputs @ cell.weight_ih.T  # [n_frames, 3 * hidden]
    bias_n = 0.0
    if cell.use_bias:
        input_gates = input_gates + cell.bias
        bias_n = cell.bias_n
    weight_hh_t = cell.weight_hh.T  # [hidden, 3 * hidden]

    def step(hidden: Array, gates_x: Array) -> tuple[Array, Array]:
        gates_h = hidden @ weight_hh_t  # [3 * hidden]
        x_r, x_u, x_n = jnp.split(gates_x, 3)
        h_r, h_u, h_n = jnp.split(gates_h, 3)
        reset = jax.nn.sigmoid(x_r + h_r)
        update = jax.nn.sigmoid(x_u + h_u)
        candidate = jnp.tanh(x_n + reset * (h_n + bias_n))
        new_hidden = candidate + update * (hidden - candidate)
        return new_hidden, new_hidden

    initial = jnp.zeros((hidden_size,), dtype=input_gates.dtype)
    _, hidden_states = jax.lax.scan(step, initial, input_gates, unroll=unroll)
    return hidden_states  # [n_frames, hidden]


class _DenseBlock(eqx.Module):
    """Linear -> LayerNorm -> ReLU, applied per frame."""

    linear: eqx.nn.Linear
    norm: eqx.nn.LayerNorm

    def __init__(self, in_features: int, out_features: int, *, key: Key):
        self.linear = eqx.nn.Linear(in_features, out_features, key=key)
        self.norm = eqx.nn.LayerNorm(out_features)

    def __call__(self, x: Float[Array, "n_frames d_in"]) -> Float[Array, "n_frames d_out"]:
        y = _linear_over_frames(self.linear, x)
        y = jax.vmap(self.norm)(y)
        return jax.nn.relu(y)


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")


class DDSPDecoder(eqx.Module):
    """DDSP decoder (Equinox): f0 and loudness (and optionally z) per frame -> raw synthesiser controls.

    Works on ONE example; batch with ``jax.vmap(decoder)``.

    Parameters
    ----------
    n_harmonics : int
        Size of the harmonic-distribution head (default 100).
    n_noise_bands : int
        Size of the noise-magnitudes head (default 65).
    hidden_size : int
        Width of the input layer, the GRU and the MLP (default 512, as the paper).
    n_mlp_layers : int
        Number of (Linear, LayerNorm, ReLU) blocks after the GRU (default 3).
    z_dims : int
        Size of the optional per-frame latent ``z`` (0: no z input; magenta uses 16 or 32 with an encoder).
    noise_bias_init : float
        Initial bias of the noise head (default 0.0). The quiet-noise start (magenta's ``initial_bias=-5``)
        is applied by the noise controls step; see ``ddsp_core.model``.
    scan_unroll : int
        ``unroll`` argument of the GRU's ``lax.scan`` (a speed knob only; results are identical).
    key : Key
        PRNG key for the initialisation (keyword only).

    Notes
    -----
    Parameter count (``H`` hidden, ``I = 2 + z_dims``, ``L`` MLP layers, ``O = 1 + n_harmonics + n_noise_bands``)::

        (I H + H) + (3 H (H + H) + 4 H) + L (H^2 + 3 H) + (H O + O)

    (input layer, GRU reading the H-wide input layer, L blocks of Linear + LayerNorm scale/offset, heads);
    2,452,646 for the defaults. See :func:`decoder_parameter_count`.
    The GRU uses ``equinox.nn.GRUCell``'s layout (one input bias of 3H plus
    a bias of H on the candidate's hidden product), so it has 2H fewer parameters than Keras's ``reset_after`` GRU.

    Source: Engel et al. 2020 (appendix B, "RNN-FC decoder"); magenta ddsp ``decoders.RnnFcDecoder`` /
    ``preprocessing.F0LoudnessPreprocessor``. Magenta's variant has a small MLP per input and a skip connection
    from the inputs to the output stack; this one follows the project design (a single input layer).

    Examples
    --------
    >>> decoder = DDSPDecoder(key=jax.random.key(0))
    >>> raw = decoder(jnp.full((250,), 440.0), jnp.full((250,), -30.0))
    >>> raw.harmonic_distribution.shape  # (250, 100)

    See Also
    --------
    scale_decoder_inputs, MfccEncoder, ddsp_core.model.DDSPAutoencoder
    """

    input_layer: eqx.nn.Linear
    gru: eqx.nn.GRUCell
    mlp: tuple[_DenseBlock, ...]
    amplitude_head: eqx.nn.Linear
    harmonic_head: eqx.nn.Linear
    noise_head: eqx.nn.Linear
    n_harmonics: int = eqx.field(static=True)
    n_noise_bands: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    z_dims: int = eqx.field(static=True)
    scan_unroll: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        n_harmonics: int = 100,
        n_noise_bands: int = 65,
        hidden_size: int = 512,
        n_mlp_layers: int = 3,
        z_dims: int = 0,
        noise_bias_init: float = 0.0,
        scan_unroll: int = 1,
        key: Key,
    ):
        _check_positive(
            n_harmonics=n_harmonics,
            n_noise_bands=n_noise_bands,
            hidden_size=hidden_size,
            n_mlp_layers=n_mlp_layers,
            scan_unroll=scan_unroll,
        )
        if z_dims < 0:
            raise ValueError(f"z_dims must be >= 0, got {z_dims}")
        keys = jax.random.split(key, 5 + n_mlp_layers)
        n_inputs = 2 + z_dims
        self.input_layer = eqx.nn.Linear(n_inputs, hidden_size, key=keys[0])
        self.gru = eqx.nn.GRUCell(hidden_size, hidden_size, key=keys[1])
        self.mlp = tuple(_DenseBlock(hidden_size, hidden_size, key=k) for k in keys[5:])
        self.amplitude_head = eqx.nn.Linear(hidden_size, 1, key=keys[2])
        self.harmonic_head = eqx.nn.Linear(hidden_size, n_harmonics, key=keys[3])
        noise_head = eqx.nn.Linear(hidden_size, n_noise_bands, key=keys[4])
        self.noise_head = eqx.tree_at(lambda m: m.bias, noise_head, jnp.full((n_noise_bands,), noise_bias_init))
        self.n_harmonics = n_harmonics
        self.n_noise_bands = n_noise_bands
        self.hidden_size = hidden_size
        self.z_dims = z_dims
        self.scan_unroll = scan_unroll

    def __call__(
        self,
        f0_hz: Float[AnyArray, " n_frames"],
        loudness_db: Float[AnyArray, " n_frames"],
        z: Float[AnyArray, "n_frames z_dims"] | None = None,
    ) -> DecoderOutputs:
        """Decode one example.

        Parameters
        ----------
        f0_hz : Float[AnyArray, "n_frames"]
            Fundamental frequency per frame, Hz (0 for unvoiced frames is allowed).
        loudness_db : Float[AnyArray, "n_frames"]
            A-weighted loudness per frame, dB.
        z : Float[AnyArray, "n_frames z_dims"] or None
            Latent per frame; required if and only if the decoder was built with ``z_dims > 0``.

        Returns
        -------
        DecoderOutputs
            Raw ``amplitude (n_frames,)``, ``harmonic_distribution (n_frames, n_harmonics)``,
            ``noise_magnitudes (n_frames, n_noise_bands)``.
        """
        with jax.named_scope("ddsp_decoder"):
            features = scale_decoder_inputs(f0_hz, loudness_db)  # [n_frames, 2]
            if self.z_dims > 0:
                if z is None:
                    raise ValueError(f"z is required: this decoder was built with z_dims={self.z_dims}")
                if z.shape[-1] != self.z_dims:
                    raise ValueError(f"z must have {self.z_dims} features per frame, got shape {z.shape}")
                features = jnp.concatenate([features, jnp.asarray(z)], axis=-1)  # [n_frames, 2 + z_dims]
            elif z is not None:
                raise ValueError("z was given but this decoder was built with z_dims=0")
            x = _linear_over_frames(self.input_layer, features)  # [n_frames, hidden]
            with jax.named_scope("gru"):
                x = _gru_over_frames(self.gru, x, unroll=self.scan_unroll)  # [n_frames, hidden]
            with jax.named_scope("mlp"):
                for block in self.mlp:
                    x = block(x)  # [n_frames, hidden]
            return DecoderOutputs(
                amplitude=_linear_over_frames(self.amplitude_head, x)[:, 0],  # [n_frames]
                harmonic_distribution=_linear_over_frames(self.harmonic_head, x),  # [n_frames, n_harmonics]
                noise_magnitudes=_linear_over_frames(self.noise_head, x),  # [n_frames, n_noise_bands]
            )


class MfccEncoder(eqx.Module):
    """z-encoder for timbre conditioning: MFCC -> LayerNorm -> GRU -> Linear, resampled to the decoder's frames.

    Works on ONE example; batch with ``jax.vmap``.

    Parameters
    ----------
    z_dims : int
        Size of ``z`` per frame (magenta's solo/NSynth autoencoders use 16 or 32).
    sample_rate : int
        Audio sample rate, Hz.
    hidden_size : int
        GRU width (default 512).
    n_mfccs : int
        MFCC coefficients per frame (default 30, as magenta).
    n_mels : int
        Mel bands under the MFCC (default 128).
    n_fft : int
        MFCC FFT size (default 1024).
    hop_size : int
        MFCC hop in samples (default 256 = 62.5 frames/s at 16 kHz, magenta's ``z_time_steps=250`` at 4 s
        reads 4x more; this keeps the GRU short). ``z`` is linearly upsampled to the decoder's frame count.
    scan_unroll : int
        ``unroll`` of the GRU scan (speed only).
    key : Key
        PRNG key for the initialisation (keyword only).

    Notes
    -----
    Source: magenta ddsp ``encoders.MfccTimeDistributedRnnEncoder`` (MFCC, ``LayerNorm``, GRU, ``Dense(z_dims)``,
    ``resample`` to the decoder's time steps).

    Examples
    --------
    >>> encoder = MfccEncoder(z_dims=16, sample_rate=16000, key=jax.random.key(0))
    >>> z = encoder(jnp.zeros(64000), n_frames=1000)  # (1000, 16)

    See Also
    --------
    DDSPDecoder : takes ``z`` when built with ``z_dims > 0``.
    ddsp_core.spectral.mfcc : the features.
    """

    norm: eqx.nn.LayerNorm
    gru: eqx.nn.GRUCell
    output_layer: eqx.nn.Linear
    z_dims: int = eqx.field(static=True)
    sample_rate: int = eqx.field(static=True)
    n_mfccs: int = eqx.field(static=True)
    n_mels: int = eqx.field(static=True)
    n_fft: int = eqx.field(static=True)
    hop_size: int = eqx.field(static=True)
    scan_unroll: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        z_dims: int,
        sample_rate: int,
        hidden_size: int = 512,
        n_mfccs: int = 30,
        n_mels: int = 128,
        n_fft: int = 1024,
        hop_size: int = 256,
        scan_unroll: int = 1,
        key: Key,
    ):
        _check_positive(
            z_dims=z_dims,
            sample_rate=sample_rate,
            hidden_size=hidden_size,
            n_mfccs=n_mfccs,
            n_mels=n_mels,
            n_fft=n_fft,
            hop_size=hop_size,
            scan_unroll=scan_unroll,
        )
        gru_key, out_key = jax.random.split(key)
        self.norm = eqx.nn.LayerNorm(n_mfccs)
        self.gru = eqx.nn.GRUCell(n_mfccs, hidden_size, key=gru_key)
        self.output_layer = eqx.nn.Linear(hidden_size, z_dims, key=out_key)
        self.z_dims = z_dims
        self.sample_rate = sample_rate
        self.n_mfccs = n_mfccs
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.hop_size = hop_size
        self.scan_unroll = scan_unroll

    def __call__(self, audio: Float[AnyArray, " n_samples"], *, n_frames: int) -> Float[Array, "{n_frames} z_dims"]:
        """Encode one clip.

        Parameters
        ----------
        audio : Float[AnyArray, "n_samples"]
            Mono audio at ``sample_rate``.
        n_frames : int
            Number of decoder frames to produce (e.g. ``n_samples // 64``).

        Returns
        -------
        Float[Array, "n_frames z_dims"]
            ``z`` per decoder frame.
        """
        if n_frames < 1:
            raise ValueError(f"n_frames must be a positive integer, got {n_frames}")
        with jax.named_scope("mfcc_encoder"):
            coefficients = mfcc(
                audio,
                sample_rate=self.sample_rate,
                n_fft=self.n_fft,
                hop_size=self.hop_size,
                n_mels=self.n_mels,
                n_mfccs=self.n_mfccs,
            )  # [n_mfcc_frames, n_mfccs]
            x = jax.vmap(self.norm)(coefficients)
            x = _gru_over_frames(self.gru, x, unroll=self.scan_unroll)  # [n_mfcc_frames, hidden]
            z = _linear_over_frames(self.output_layer, x)  # [n_mfcc_frames, z_dims]
            return upsample_linear(z, n_frames)  # [n_frames, z_dims]


def decoder_parameter_count(
    *, n_harmonics: int, n_noise_bands: int, hidden_size: int, n_mlp_layers: int, z_dims: int
) -> int:
    """Number of trainable scalars in a :class:`DDSPDecoder` with these sizes, from the formula.

    ``(I H + H) + (3 H (H + H) + 4 H) + L (H^2 + H + 2 H) + (H O + O)`` with ``I = 2 + z_dims``,
    ``O = 1 + n_harmonics + n_noise_bands``: input layer, GRU (``eqx.nn.GRUCell``: two weight matrices, a 3H bias
    and an H bias), L blocks of Linear + LayerNorm (scale and offset), and the three heads.

    Examples
    --------
    >>> decoder_parameter_count(n_harmonics=100, n_noise_bands=65, hidden_size=512, n_mlp_layers=3, z_dims=0)
    2452646
    """
    h = hidden_size
    n_inputs = 2 + z_dims
    n_outputs = 1 + n_harmonics + n_noise_bands
    input_layer = n_inputs * h + h
    gru = 3 * h * (h + h) + 4 * h
    mlp = n_mlp_layers * (h * h + h + 2 * h)
    heads = h * n_outputs + n_outputs
    return input_layer + gru + mlp + heads


def _is_parameter(leaf: object) -> bool:
    """A floating array, or its ``jax.ShapeDtypeStruct`` (so shapes from ``eqx.filter_eval_shape`` count too)."""
    return isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def parameter_count(module: eqx.Module) -> int:
    """Total number of scalars in the floating arrays of an Equinox module.

    Also accepts the abstract module from ``eqx.filter_eval_shape`` (counts without allocating).

    Examples
    --------
    >>> parameter_count(DDSPDecoder(key=jax.random.key(0)))
    2452646

    See Also
    --------
    parameter_summary, decoder_parameter_count
    """
    leaves = jax.tree.leaves(eqx.filter(module, _is_parameter))
    return sum(int(leaf.size) for leaf in leaves)


def parameter_summary(module: eqx.Module) -> str:
    """A table of every parameter array (path, shape, size) and the total, for logs and reports.

    Returns
    -------
    str
        One line per array, then ``total <n>``; print or log it.
    """
    params = eqx.filter(module, _is_parameter)
    rows = [
        (jax.tree_util.keystr(path), tuple(leaf.shape), int(leaf.size))
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    ]
    width = max((len(name) for name, _, _ in rows), default=0)
    lines = [f"{name:<{width}}  {str(shape):>14}  {size:>10,}" for name, shape, size in rows]
    lines.append(f"{'total':<{width}}  {'':>14}  {sum(size for _, _, size in rows):>10,}")
    return "\n".join(lines)
