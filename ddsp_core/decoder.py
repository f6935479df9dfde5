"""The DDSP decoders: Equinox networks that map pitch and loudness (and an optional z) to named raw outputs.

Two architectures, both ending in one linear layer whose outputs are split by name (magenta's ``output_splits``:
what the heads are is data, usually ``Instrument.control_sizes()``):

* :class:`DDSPDecoder` (config name ``"linear"``): ``[f0_scaled, loudness_scaled (, z)] -> Linear(hidden) ->
  GRU(hidden) -> n_mlp_layers x (Linear -> LayerNorm -> ReLU) -> Linear(sum of output sizes)``.
* :class:`RnnFcDecoder` (``"rnn_fc"``): magenta's, an MLP per input, GRU, and a skip of the input MLPs' outputs
  into the output MLP.

The outputs are *raw* network outputs. Turning them into physical controls (``exp_sigmoid``, removing harmonics
above Nyquist, normalising the distribution) is each processor's ``get_controls`` step (``ddsp_core.processors``).

The GRU is written so that the input projection ``W_ih x_t + b`` of every frame is one matrix product *outside* the
scan; only the recurrent product ``W_hh h_{t-1}`` stays inside the loop. The parameters are those of
``equinox.nn.GRUCell`` (same layout and initialisation), and the maths is the same, step for step.

This module also holds the optional z-encoder (:class:`MfccEncoder`), magenta's ``MfccTimeDistributedRnnEncoder``:
MFCC -> LayerNorm -> GRU -> Linear to ``z_dims`` per frame, used for timbre conditioning.
"""

import abc
import math
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ddsp_core._checks import check_positive_int
from ddsp_core._typing import AnyArray, Key
from ddsp_core.core import hz_to_midi, upsample_linear
from ddsp_core.gru import gru_input_gates, gru_recurrence, linear_then_gru_input_gates
from ddsp_core.gru_pallas import gru_recurrence_pallas
from ddsp_core.spectral import mfcc
from ddsp_core.synths import as_frequency_hz

__all__ = [
    "DECODERS",
    "DECODER_DTYPES",
    "GRU_IMPLS",
    "DDSPDecoder",
    "AnyDecoder",
    "MfccEncoder",
    "RnnFcDecoder",
    "decoder_parameter_count",
    "gru_over_frames",
    "keras_initialise",
    "parameter_count",
    "parameter_summary",
    "scale_decoder_inputs",
]

F0_RANGE_MIDI = 127.0
"""f0 is scaled as ``hz_to_midi(f0_hz) / 127`` (magenta ``F0LoudnessPreprocessor``)."""
LOUDNESS_RANGE_DB = 80.0
"""Loudness is scaled as ``loudness_db / 80 + 1`` (magenta ``F0LoudnessPreprocessor``)."""

DECODER_DTYPES = ("float32", "bfloat16")
"""Operand types of the decoders' matrix products: ``"float32"`` (default), or ``"bfloat16"`` for mixed precision
(operands cast to bfloat16, products accumulated in float32; parameters, LayerNorm, gate maths, the GRU state and
the outputs stay float32, so the optimiser keeps float32 master weights and synthesis and loss run in float32)."""

GRU_IMPLS = ("scan", "pallas")
"""How the decoders run their GRU: ``"scan"`` (``ddsp_core.gru.gru_recurrence``, default) or ``"pallas"`` (the
fused kernel of ``ddsp_core.gru_pallas``; same values and gradients, meant for GPUs)."""


def scale_decoder_inputs(
    f0_hz: Float[AnyArray, " n_frames"], loudness_db: Float[AnyArray, " n_frames"], *, loudness_ref_db: float = 0.0
) -> Float[Array, "n_frames 2"]:
    """Scale pitch and loudness to roughly [0, 1], the decoder's input features.

    Parameters
    ----------
    f0_hz : Float[AnyArray, "n_frames"]
        Fundamental frequency per frame, Hz. 0 Hz (unvoiced) maps to MIDI 0, and so do negative and NaN values
        (:func:`ddsp_core.synths.as_frequency_hz`), so one bad frame does not turn the decoder's outputs NaN.
    loudness_db : Float[AnyArray, "n_frames"]
        A-weighted loudness per frame, dB (>= -80; loud notes reach about +25, see ``compute_loudness``).
    loudness_ref_db : float
        The loudness that scales to 1 (keyword only). 0 (the default) scales ``compute_loudness``'s 0 dB to 1, so
        loud notes go above 1; magenta's loudness sits about 20.7 dB lower (its NSynth reference), which
        ``loudness_ref_db=20.7`` reproduces on our loudness.

    Returns
    -------
    Float[Array, "n_frames 2"]
        Columns ``[hz_to_midi(f0_hz) / 127, (loudness_db - loudness_ref_db) / 80 + 1]``.

    Notes
    -----
    Matches magenta ddsp ``F0LoudnessPreprocessor`` (``F0_RANGE = 127``, ``DB_RANGE = 80``).

    Examples
    --------
    >>> scale_decoder_inputs(jnp.array([440.0]), jnp.array([-40.0]))  # [[69/127, 0.5]]
    Array([[0.54330707, 0.5       ]], dtype=float32)

    See Also
    --------
    DDSPDecoder : consumes these features.
    """
    f0_scaled = hz_to_midi(as_frequency_hz(f0_hz)) / F0_RANGE_MIDI  # negative / NaN f0: unvoiced, as the synths
    loudness_scaled = (jnp.asarray(loudness_db) - loudness_ref_db) / LOUDNESS_RANGE_DB + 1.0
    return jnp.stack([f0_scaled, loudness_scaled], axis=-1)  # [n_frames, 2]


def _linear_over_frames(
    layer: eqx.nn.Linear, x: Float[Array, "n_frames d_in"], matmul_dtype: jnp.dtype | None = None
) -> Float[Array, "n_frames d_out"]:
    """Apply an ``eqx.nn.Linear`` to every frame as one matrix product (operands in ``matmul_dtype`` if given,
    accumulated in float32)."""
    if matmul_dtype is None:
        y = x @ layer.weight.T  # [n_frames, out_features]
    else:
        y = jnp.matmul(
            x.astype(matmul_dtype), layer.weight.T.astype(matmul_dtype), preferred_element_type=jnp.float32
        )
    if layer.bias is not None:
        y = y + layer.bias
    return y


def gru_over_frames(
    cell: eqx.nn.GRUCell,
    inputs: Float[Array, "n_frames d_in"],
    *,
    unroll: int = 1,
    initial: Float[Array, " hidden"] | None = None,
) -> Float[Array, "n_frames hidden"]:
    """Run a GRU over a sequence with the input projection hoisted out of the scan.

    Same maths as stepping ``equinox.nn.GRUCell`` (PyTorch convention, reset gate applied after the hidden product):

        r_t = sigmoid(W_ir x_t + b_r + W_hr h_{t-1})
        u_t = sigmoid(W_iu x_t + b_u + W_hu h_{t-1})
        n_t = tanh(W_in x_t + b_n + r_t * (W_hn h_{t-1} + b_hn))
        h_t = n_t + u_t * (h_{t-1} - n_t)

    Parameters
    ----------
    cell : eqx.nn.GRUCell
        The GRU's parameters.
    inputs : Float[Array, "n_frames d_in"]
        One input vector per frame.
    unroll : int
        ``lax.scan`` unroll (speed only).
    initial : Float[Array, "hidden"] or None
        Hidden state before the first frame (``None``: zeros). Passing the last output of one block as the
        ``initial`` of the next runs a long sequence block by block with the same result (streaming).

    Returns
    -------
    Float[Array, "n_frames hidden"]
        The hidden state after each frame; the last row is the state to carry on.
    """
    gates = gru_input_gates(cell, inputs)  # [n_frames, 3 * hidden]
    return gru_recurrence(cell, gates, unroll=unroll, initial=initial)  # [n_frames, hidden]


class _DenseBlock(eqx.Module):
    """Linear -> LayerNorm -> ReLU, applied per frame."""

    linear: eqx.nn.Linear
    norm: eqx.nn.LayerNorm

    def __init__(self, in_features: int, out_features: int, *, key: Key):
        self.linear = eqx.nn.Linear(in_features, out_features, key=key)
        self.norm = eqx.nn.LayerNorm(out_features)

    def __call__(
        self, x: Float[Array, "n_frames d_in"], matmul_dtype: jnp.dtype | None = None
    ) -> Float[Array, "n_frames d_out"]:
        y = _linear_over_frames(self.linear, x, matmul_dtype)
        y = jax.vmap(self.norm)(y)
        return jax.nn.relu(y)


def _check_decoder_arguments(
    output_sizes: Mapping[str, int],
    *,
    hidden_size: int,
    n_mlp_layers: int,
    z_dims: int,
    scan_unroll: int,
    gru_impl: str,
    decoder_dtype: str,
) -> tuple[tuple[str, int], ...]:
    """Check a decoder's sizes and settings (naming the bad one) and return its ``output_splits``."""
    check_positive_int(hidden_size=hidden_size, n_mlp_layers=n_mlp_layers, scan_unroll=scan_unroll)
    if gru_impl not in GRU_IMPLS:
        raise ValueError(f"gru_impl must be one of {', '.join(GRU_IMPLS)}, got {gru_impl!r}")
    if decoder_dtype not in DECODER_DTYPES:
        raise ValueError(f"decoder_dtype must be one of {', '.join(DECODER_DTYPES)}, got {decoder_dtype!r}")
    if z_dims < 0:
        raise ValueError(f"z_dims must be >= 0, got {z_dims}")
    splits = tuple((str(name), int(size)) for name, size in output_sizes.items())
    if not splits:
        raise ValueError("output_sizes must name at least one output, e.g. {'harmonic/amplitude': 1}")
    for name, size in splits:
        if size <= 0:
            raise ValueError(f"output_sizes[{name!r}] must be a positive integer, got {size}")
    return splits


def _check_reference(loudness_ref_db: float) -> float:
    if not math.isfinite(loudness_ref_db):
        raise ValueError(f"loudness_ref_db must be a finite number of dB, got {loudness_ref_db}")
    return float(loudness_ref_db)


def _split_outputs(flat: Float[Array, "n_frames n_out"], splits: tuple[tuple[str, int], ...]) -> dict[str, Array]:
    """Cut one ``(n_frames, sum of sizes)`` head into named ``(n_frames, size)`` outputs (magenta ``output_splits``)."""
    outputs, start = {}, 0
    for name, size in splits:
        outputs[name] = flat[:, start : start + size]
        start += size
    return outputs


def _check_z(z: AnyArray | None, z_dims: int) -> None:
    if z_dims > 0:
        if z is None:
            raise ValueError(f"z is required: this decoder was built with z_dims={z_dims}")
        if z.ndim != 2 or z.shape[-1] != z_dims:
            raise ValueError(f"z must have shape (n_frames, {z_dims}), got {z.shape}")
    elif z is not None:
        raise ValueError("z was given but this decoder was built with z_dims=0")


class _Decoder(eqx.Module):
    """What both decoders share: per-frame layers before the GRU (``gru_inputs``), the GRU (the only part that
    crosses frames: a streaming engine carries its state), per-frame layers after it (``outputs``)."""

    gru: eqx.AbstractVar[eqx.nn.GRUCell]
    output_splits: eqx.AbstractVar[tuple[tuple[str, int], ...]]
    hidden_size: eqx.AbstractVar[int]
    z_dims: eqx.AbstractVar[int]
    scan_unroll: eqx.AbstractVar[int]
    gru_impl: eqx.AbstractVar[str]
    decoder_dtype: eqx.AbstractVar[str]

    @property
    def matmul_dtype(self) -> jnp.dtype | None:
        """Operand type of the matrix products (``None``: float32 products, as the parameters)."""
        return None if self.decoder_dtype == "float32" else jnp.dtype(self.decoder_dtype)

    def run_gru(
        self, gates: Float[Array, "n_frames three_hidden"], initial: Float[Array, " hidden"] | None = None
    ) -> Float[Array, "n_frames hidden"]:
        """The GRU over input gates from :meth:`gru_gates`, by ``gru_impl`` and in ``decoder_dtype``."""
        if self.gru_impl == "pallas":
            return gru_recurrence_pallas(self.gru, gates, initial=initial, matmul_dtype=self.matmul_dtype)
        return gru_recurrence(
            self.gru, gates, unroll=self.scan_unroll, initial=initial, matmul_dtype=self.matmul_dtype
        )
    loudness_ref_db: eqx.AbstractVar[float]

    @abc.abstractmethod
    def gru_inputs(self, f0_hz, loudness_db, z=None) -> tuple[Array, Array]:
        """``(GRU inputs, skip features)`` per frame."""

    @abc.abstractmethod
    def outputs(self, hidden_states: Array, skip: Array) -> dict[str, Array]:
        """GRU hidden states and skip features -> named raw outputs."""

    def gru_gates(self, f0_hz, loudness_db, z=None) -> tuple[Array, Array]:
        """``(GRU input gates, skip features)`` per frame: ``gru_inputs`` through the GRU's input projection
        (``ddsp_core.gru.gru_input_gates``), all frames in one product."""
        x, skip = self.gru_inputs(f0_hz, loudness_db, z)
        return gru_input_gates(self.gru, x, self.matmul_dtype), skip

    def __call__(
        self,
        f0_hz: Float[AnyArray, " n_frames"],
        loudness_db: Float[AnyArray, " n_frames"],
        z: Float[AnyArray, "n_frames z_dims"] | None = None,
    ) -> dict[str, Array]:
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
        dict of str to Array
            ``name -> (n_frames, size)`` for every entry of ``output_sizes``.
        """
        with jax.named_scope("ddsp_decoder"):
            gates, skip = self.gru_gates(f0_hz, loudness_db, z)  # [n_frames, 3 * hidden], [n_frames, s]
            with jax.named_scope("gru"):
                hidden_states = self.run_gru(gates)  # [n_frames, hidden]
            return self.outputs(hidden_states, skip)


class DDSPDecoder(_Decoder):
    """DDSP decoder (Equinox): f0 and loudness (and optionally z) per frame -> named raw outputs.

    ``[f0_scaled, loudness_scaled (, z)] -> Linear(hidden) -> GRU(hidden) -> n_mlp_layers x (Linear, LayerNorm,
    ReLU) -> Linear(sum of output sizes)``, split into the named outputs (magenta's ``output_splits``: the heads
    are data). Works on ONE example; batch with ``jax.vmap(decoder)``.

    Parameters
    ----------
    output_sizes : Mapping[str, int]
        Raw outputs per frame, name -> size, e.g. ``instrument.control_sizes()``.
    hidden_size : int
        Width of the input layer, the GRU and the MLP (default 512, as the paper).
    n_mlp_layers : int
        Number of (Linear, LayerNorm, ReLU) blocks after the GRU (default 3).
    z_dims : int
        Size of the optional per-frame latent ``z`` (0: no z input).
    scan_unroll : int
        ``unroll`` argument of the GRU's ``lax.scan`` (a speed knob only; results are identical).
    gru_impl : str
        ``"scan"`` (default) or ``"pallas"``: see :data:`GRU_IMPLS`.
    decoder_dtype : str
        ``"float32"`` (default) or ``"bfloat16"`` (mixed precision): see :data:`DECODER_DTYPES`.
    loudness_ref_db : float
        The loudness scaled to 1 at the input (see :func:`scale_decoder_inputs`; default 0).
    key : Key
        PRNG key for the initialisation (keyword only).

    Notes
    -----
    Parameter count (``H`` hidden, ``I = 2 + z_dims``, ``L`` MLP layers, ``O`` = sum of output sizes)::

        (I H + H) + (3 H (H + H) + 4 H) + L (H^2 + 3 H) + (H O + O)

    2,452,646 for a harmonic (1 + 100) + noise (65) instrument at the defaults; see :func:`decoder_parameter_count`.
    The GRU uses ``equinox.nn.GRUCell``'s layout (one input bias of 3H plus a bias of H on the candidate's hidden
    product), 2H fewer parameters than Keras's ``reset_after`` GRU.

    Source: Engel et al. 2020 (appendix B); magenta ddsp ``decoders.RnnFcDecoder`` with one input layer instead of
    an MLP per input and no skip connection (see :class:`RnnFcDecoder` for magenta's).

    Examples
    --------
    >>> decoder = DDSPDecoder(output_sizes={"amp": 1, "dist": 60}, hidden_size=32, key=jax.random.key(0))
    >>> raw = decoder(jnp.full((250,), 440.0), jnp.full((250,), -30.0))
    >>> raw["dist"].shape
    (250, 60)

    See Also
    --------
    RnnFcDecoder, scale_decoder_inputs, MfccEncoder
    """

    input_layer: eqx.nn.Linear
    gru: eqx.nn.GRUCell
    mlp: tuple[_DenseBlock, ...]
    head: eqx.nn.Linear
    output_splits: tuple[tuple[str, int], ...] = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    z_dims: int = eqx.field(static=True)
    scan_unroll: int = eqx.field(static=True)
    gru_impl: str = eqx.field(static=True)
    decoder_dtype: str = eqx.field(static=True)
    loudness_ref_db: float = eqx.field(static=True)

    def __init__(
        self,
        *,
        output_sizes: Mapping[str, int],
        hidden_size: int = 512,
        n_mlp_layers: int = 3,
        z_dims: int = 0,
        scan_unroll: int = 1,
        gru_impl: str = "scan",
        decoder_dtype: str = "float32",
        loudness_ref_db: float = 0.0,
        key: Key,
    ):
        self.output_splits = _check_decoder_arguments(
            output_sizes,
            hidden_size=hidden_size,
            n_mlp_layers=n_mlp_layers,
            z_dims=z_dims,
            scan_unroll=scan_unroll,
            gru_impl=gru_impl,
            decoder_dtype=decoder_dtype,
        )
        self.gru_impl = gru_impl
        self.decoder_dtype = decoder_dtype
        keys = jax.random.split(key, 3 + n_mlp_layers)
        self.input_layer = eqx.nn.Linear(2 + z_dims, hidden_size, key=keys[0])
        self.gru = eqx.nn.GRUCell(hidden_size, hidden_size, key=keys[1])
        self.mlp = tuple(_DenseBlock(hidden_size, hidden_size, key=k) for k in keys[3:])
        self.head = eqx.nn.Linear(hidden_size, sum(size for _, size in self.output_splits), key=keys[2])
        self.hidden_size = hidden_size
        self.z_dims = z_dims
        self.scan_unroll = scan_unroll
        self.loudness_ref_db = _check_reference(loudness_ref_db)

    def gru_inputs(
        self,
        f0_hz: Float[AnyArray, " n_frames"],
        loudness_db: Float[AnyArray, " n_frames"],
        z: Float[AnyArray, "n_frames z_dims"] | None = None,
    ) -> tuple[Float[Array, "n_frames hidden"], Float[Array, "n_frames 0"]]:
        """The per-frame part before the GRU: ``(GRU inputs, skip features)`` (no skip here: width 0)."""
        x = _linear_over_frames(self.input_layer, self._features(f0_hz, loudness_db, z))  # [n_frames, hidden]
        return x, x[:, :0]

    def _features(self, f0_hz: AnyArray, loudness_db: AnyArray, z: AnyArray | None) -> Array:
        _check_z(z, self.z_dims)
        features = scale_decoder_inputs(f0_hz, loudness_db, loudness_ref_db=self.loudness_ref_db)  # [n_frames, 2]
        if z is not None:
            features = jnp.concatenate([features, jnp.asarray(z)], axis=-1)  # [n_frames, 2 + z_dims]
        return features

    def gru_gates(
        self,
        f0_hz: Float[AnyArray, " n_frames"],
        loudness_db: Float[AnyArray, " n_frames"],
        z: Float[AnyArray, "n_frames z_dims"] | None = None,
    ) -> tuple[Float[Array, "n_frames three_hidden"], Float[Array, "n_frames s"]]:
        """``gru_inputs`` and the GRU's input projection in one: both are linear, so their weights fold into one
        ``(2 + z_dims) x 3 hidden`` product per frame instead of a ``hidden x 3 hidden`` one
        (``ddsp_core.gru.linear_then_gru_input_gates``; equal up to float rounding). A subclass that replaces
        ``gru_inputs`` gets the unfolded path, so its own layers are used."""
        if type(self).gru_inputs is not DDSPDecoder.gru_inputs:
            return super().gru_gates(f0_hz, loudness_db, z)
        features = self._features(f0_hz, loudness_db, z)  # [n_frames, 2 + z_dims]
        gates = linear_then_gru_input_gates(self.input_layer, self.gru, features)  # [n_frames, 3 * hidden]
        return gates, gates[:, :0]

    def outputs(
        self, hidden_states: Float[Array, "n_frames hidden"], skip: Float[Array, "n_frames s"]
    ) -> dict[str, Array]:
        """The per-frame part after the GRU: hidden states -> named raw outputs."""
        del skip
        x = hidden_states
        with jax.named_scope("mlp"):
            for block in self.mlp:
                x = block(x, self.matmul_dtype)  # [n_frames, hidden]
        return _split_outputs(_linear_over_frames(self.head, x, self.matmul_dtype), self.output_splits)


def _stack(in_features: int, hidden_size: int, n_layers: int, key: Key) -> tuple[_DenseBlock, ...]:
    keys = jax.random.split(key, n_layers)
    sizes = [in_features] + [hidden_size] * n_layers
    return tuple(_DenseBlock(sizes[i], hidden_size, key=keys[i]) for i in range(n_layers))


def _run_stack(stack: tuple[_DenseBlock, ...], x: Array, matmul_dtype: jnp.dtype | None = None) -> Array:
    for block in stack:
        x = block(x, matmul_dtype)
    return x


class RnnFcDecoder(_Decoder):
    """magenta's ``RnnFcDecoder``: an MLP per input, a GRU over their concatenation, and the inputs' MLP outputs
    skipped past the GRU into the output MLP.

    ``h_f = MLP_f(f0_scaled)``, ``h_l = MLP_l(loudness_scaled)`` (and ``h_z = MLP_z(z)``), each ``n_mlp_layers`` x
    (Linear(hidden), LayerNorm, ReLU); ``g = GRU([h_f, h_l, h_z])``; ``out = Linear(MLP_out([h_f, h_l, h_z, g]))``
    split into the named outputs. Works on ONE example.

    Parameters
    ----------
    output_sizes : Mapping[str, int]
        Raw outputs per frame, name -> size.
    hidden_size : int
        Width of every MLP layer and of the GRU (default 512).
    n_mlp_layers : int
        Layers of each input MLP and of the output MLP (default 3, magenta's).
    z_dims : int
        Size of the optional per-frame latent ``z`` (0: no z input).
    scan_unroll : int
        ``unroll`` of the GRU's ``lax.scan`` (speed only).
    gru_impl, decoder_dtype : str
        As in :class:`DDSPDecoder`.
    loudness_ref_db : float
        The loudness scaled to 1 at the input (see :func:`scale_decoder_inputs`; default 0).
    key : Key
        PRNG key for the initialisation.

    Notes
    -----
    Source: magenta ddsp ``decoders.RnnFcDecoder`` (``input_keys=('ld_scaled', 'f0_scaled'[, 'z'])``,
    ``rnn_type='gru'``, ``fc_stack(ch, layers)`` per input and for the output).

    Examples
    --------
    >>> decoder = RnnFcDecoder(output_sizes={"amp": 1}, hidden_size=16, n_mlp_layers=2, key=jax.random.key(0))
    >>> decoder(jnp.full((10,), 440.0), jnp.full((10,), -30.0))["amp"].shape
    (10, 1)
    """

    input_stacks: tuple[tuple[_DenseBlock, ...], ...]
    gru: eqx.nn.GRUCell
    output_stack: tuple[_DenseBlock, ...]
    head: eqx.nn.Linear
    output_splits: tuple[tuple[str, int], ...] = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    z_dims: int = eqx.field(static=True)
    scan_unroll: int = eqx.field(static=True)
    gru_impl: str = eqx.field(static=True)
    decoder_dtype: str = eqx.field(static=True)
    loudness_ref_db: float = eqx.field(static=True)

    def __init__(
        self,
        *,
        output_sizes: Mapping[str, int],
        hidden_size: int = 512,
        n_mlp_layers: int = 3,
        z_dims: int = 0,
        scan_unroll: int = 1,
        gru_impl: str = "scan",
        decoder_dtype: str = "float32",
        loudness_ref_db: float = 0.0,
        key: Key,
    ):
        self.output_splits = _check_decoder_arguments(
            output_sizes,
            hidden_size=hidden_size,
            n_mlp_layers=n_mlp_layers,
            z_dims=z_dims,
            scan_unroll=scan_unroll,
            gru_impl=gru_impl,
            decoder_dtype=decoder_dtype,
        )
        self.gru_impl = gru_impl
        self.decoder_dtype = decoder_dtype
        input_widths = (1, 1) + ((z_dims,) if z_dims > 0 else ())
        keys = jax.random.split(key, len(input_widths) + 3)
        self.input_stacks = tuple(
            _stack(width, hidden_size, n_mlp_layers, k) for width, k in zip(input_widths, keys, strict=False)
        )
        n_in = len(input_widths) * hidden_size
        self.gru = eqx.nn.GRUCell(n_in, hidden_size, key=keys[-3])
        self.output_stack = _stack(n_in + hidden_size, hidden_size, n_mlp_layers, keys[-2])
        self.head = eqx.nn.Linear(hidden_size, sum(size for _, size in self.output_splits), key=keys[-1])
        self.hidden_size = hidden_size
        self.z_dims = z_dims
        self.scan_unroll = scan_unroll
        self.loudness_ref_db = _check_reference(loudness_ref_db)

    def gru_inputs(
        self,
        f0_hz: Float[AnyArray, " n_frames"],
        loudness_db: Float[AnyArray, " n_frames"],
        z: Float[AnyArray, "n_frames z_dims"] | None = None,
    ) -> tuple[Float[Array, "n_frames d"], Float[Array, "n_frames d"]]:
        """The per-frame part before the GRU: the concatenated input MLP outputs (GRU input and skip)."""
        _check_z(z, self.z_dims)
        features = scale_decoder_inputs(f0_hz, loudness_db, loudness_ref_db=self.loudness_ref_db)  # [n_frames, 2]
        inputs = [features[:, 0:1], features[:, 1:2]] + ([jnp.asarray(z)] if z is not None else [])
        x = jnp.concatenate(
            [_run_stack(s, v, self.matmul_dtype) for s, v in zip(self.input_stacks, inputs, strict=True)], axis=-1
        )
        return x, x  # [n_frames, n_inputs * hidden]

    def outputs(
        self, hidden_states: Float[Array, "n_frames hidden"], skip: Float[Array, "n_frames s"]
    ) -> dict[str, Array]:
        """The per-frame part after the GRU: ``[skip, hidden] -> output MLP -> named raw outputs``."""
        x = _run_stack(self.output_stack, jnp.concatenate([skip, hidden_states], axis=-1), self.matmul_dtype)
        return _split_outputs(_linear_over_frames(self.head, x, self.matmul_dtype), self.output_splits)


def _keras_linear(layer: eqx.nn.Linear, key: Key) -> eqx.nn.Linear:
    weight = jax.nn.initializers.glorot_uniform()(key, layer.weight.shape[::-1], layer.weight.dtype).T
    layer = eqx.tree_at(lambda m: m.weight, layer, weight)
    return layer if layer.bias is None else eqx.tree_at(lambda m: m.bias, layer, jnp.zeros_like(layer.bias))


def _keras_gru(cell: eqx.nn.GRUCell, key: Key) -> eqx.nn.GRUCell:
    input_key, recurrent_key = jax.random.split(key)
    # Keras's kernels are (inputs, 3 hidden); Equinox stores their transposes.
    weight_ih = jax.nn.initializers.glorot_uniform()(input_key, cell.weight_ih.shape[::-1]).T
    weight_hh = jax.nn.initializers.orthogonal()(recurrent_key, cell.weight_hh.shape[::-1]).T
    return eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias, m.bias_n),
        cell,
        (weight_ih, weight_hh, jnp.zeros_like(cell.bias), jnp.zeros_like(cell.bias_n)),
    )


def keras_initialise(decoder: eqx.Module, *, key: Key) -> eqx.Module:
    """The same decoder with Keras's default initialisation (what magenta's decoders start from).

    Every ``Linear`` gets Glorot-uniform weights and zero biases; every ``GRUCell`` Glorot-uniform input weights,
    orthogonal recurrent weights and zero biases (Keras ``Dense`` and ``GRU`` defaults). Equinox's own default,
    uniform in ``±1/sqrt(fan_in)`` for weights and biases alike, starts a 1-input layer (``RnnFcDecoder``'s f0 and
    loudness stacks) with weights and biases of up to ±1. LayerNorms keep scale 1 and offset 0 in both.

    Parameters
    ----------
    decoder : eqx.Module
        A decoder (or any module holding ``eqx.nn.Linear`` / ``eqx.nn.GRUCell`` layers).
    key : Key
        PRNG key (keyword only); layer ``i`` in tree order uses ``fold_in(key, i)``.

    Examples
    --------
    >>> decoder = keras_initialise(DDSPDecoder(output_sizes={"amp": 1}, hidden_size=8, key=jax.random.key(0)),
    ...                            key=jax.random.key(1))
    >>> float(jnp.abs(decoder.head.bias).max()), decoder.gru.weight_hh.shape
    (0.0, (24, 8))
    """
    layers = (eqx.nn.Linear, eqx.nn.GRUCell)
    count = iter(range(1 << 30))

    def reinitialise(leaf):
        if isinstance(leaf, eqx.nn.Linear):
            return _keras_linear(leaf, jax.random.fold_in(key, next(count)))
        if isinstance(leaf, eqx.nn.GRUCell):
            return _keras_gru(leaf, jax.random.fold_in(key, next(count)))
        return leaf

    return jax.tree_util.tree_map(reinitialise, decoder, is_leaf=lambda leaf: isinstance(leaf, layers))


AnyDecoder = DDSPDecoder | RnnFcDecoder
"""Either decoder: both map ``(f0_hz, loudness_db[, z])`` to named raw outputs and expose ``gru_inputs``,
``gru`` and ``outputs`` (the GRU is the only part that crosses frames: a streaming engine carries its state)."""

DECODERS = {"linear": DDSPDecoder, "rnn_fc": RnnFcDecoder}
"""Decoders by config name: ``"linear"`` (one input layer, :class:`DDSPDecoder`) and ``"rnn_fc"`` (magenta's)."""


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
    >>> encoder(jnp.zeros(64000), n_frames=1000).shape
    (1000, 16)

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
        check_positive_int(
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
            x = gru_over_frames(self.gru, x, unroll=self.scan_unroll)  # [n_mfcc_frames, hidden]
            z = _linear_over_frames(self.output_layer, x)  # [n_mfcc_frames, z_dims]
            return upsample_linear(z, n_frames)  # [n_frames, z_dims]


def decoder_parameter_count(*, n_outputs: int, hidden_size: int, n_mlp_layers: int, z_dims: int) -> int:
    """Number of trainable scalars in a :class:`DDSPDecoder` with these sizes, from the formula.

    ``(I H + H) + (3 H (H + H) + 4 H) + L (H^2 + H + 2 H) + (H O + O)`` with ``I = 2 + z_dims`` and ``O`` the sum
    of the output sizes: input layer, GRU (``eqx.nn.GRUCell``: two weight matrices, a 3H bias and an H bias),
    L blocks of Linear + LayerNorm (scale and offset), and the head.

    Examples
    --------
    >>> decoder_parameter_count(n_outputs=1 + 100 + 65, hidden_size=512, n_mlp_layers=3, z_dims=0)
    2452646
    """
    h = hidden_size
    input_layer = (2 + z_dims) * h + h
    gru = 3 * h * (h + h) + 4 * h
    mlp = n_mlp_layers * (h * h + h + 2 * h)
    head = h * n_outputs + n_outputs
    return input_layer + gru + mlp + head


def _is_parameter(leaf: object) -> bool:
    """A floating array, or its ``jax.ShapeDtypeStruct`` (so shapes from ``eqx.filter_eval_shape`` count too)."""
    return isinstance(leaf, (jax.Array, jax.ShapeDtypeStruct)) and jnp.issubdtype(leaf.dtype, jnp.inexact)


def parameter_count(module: eqx.Module) -> int:
    """Total number of scalars in the floating arrays of an Equinox module.

    Also accepts the abstract module from ``eqx.filter_eval_shape`` (counts without allocating).

    Examples
    --------
    >>> parameter_count(DDSPDecoder(output_sizes={"amplitude": 1, "distribution": 100, "noise": 65},
    ...                             key=jax.random.key(0)))
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
