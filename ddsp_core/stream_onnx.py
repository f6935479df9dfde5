"""Export the streaming engine's block step as ONNX (opset 18), to run with ``onnxruntime`` or any ONNX runtime.

The graph is the step of :mod:`ddsp_core.stream_export` for one model and one block of ``block_frames`` frames::

    inputs:  one per state array (named as in the manifest), f0_hz[block_frames], loudness_db[block_frames]
    outputs: "next." + each state name (the state for the next call), audio[block_samples]

How: no ONNX converter installs next to our pins and handles this step (jax2onnx 0.13-0.17 require
``orbax-checkpoint<0.11.37`` and still stop at ``associative_scan``'s interior padding and complex inverse FFTs;
0.12.5 at the PRNG's bitcast). This module translates the step's jaxpr, whose shapes are all concrete for a fixed
block size, to ONNX nodes, for exactly the primitives the built-in processors use:

* calls (``jit``, ``custom_jvp_call``...) are inlined and ``scan`` (the GRU over the block's frames) is unrolled;
* every equation whose inputs are all constants (weights, ``iota``, index tables, the reverb's partition spectra)
  is evaluated by jax at export time and stored as an initializer;
* complex arrays become real arrays with a trailing axis of 2 (real, imaginary), and a real FFT of length ``n``
  a product with the ``n``-point DFT matrix (real and imaginary parts interleaved);
* integers keep their dtype (onnxruntime adds, shifts and xors uint32 with wrap-around, as XLA); the PRNG
  primitives are expanded with jax's own threefry code, and the bitcast of random bits to float32 is decoded
  arithmetically (sign, exponent, mantissa), so the noise is bit for bit jax's;
* gathers need indices known at export time (the reverb's delay-line rows);
* the harmonic oscillator's sines are traced in their direct form (:func:`ddsp_core.stream.direct_harmonic_sines`),
  not the offline bank's angle-addition recurrence, which would unroll into ~20 nodes per harmonic (onnxruntime
  pays per node; with native uint32 this took the paper-size step from 3168 to 1052 nodes); it differs from the
  in-process stream by that recurrence's rounding (~2e-5 of the peak with 100 harmonics).

Anything else raises ``NotImplementedError`` naming the primitive (e.g. a processor whose block form reads a table
at data-dependent positions, like the wavetable).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import onnx
# jax internals (jax is pinned): the PRNG primitives' own implementations, traced and translated in their place.
# tests/core/test_stream_onnx.py checks the result bit for bit against jax.
from jax._src.core import physical_aval as _physical_aval
from jax._src.random import prng as _prng
from jax._src.random import threefry2x32 as _threefry
from jax.extend import core as jex_core
from onnx import TensorProto, helper, numpy_helper

from ddsp_core._typing import Key
from ddsp_core.model import DDSPAutoencoder
from ddsp_core.stream import direct_harmonic_sines
from ddsp_core.stream_export import flat_step, state_names

__all__ = ["OPSET", "export_onnx", "function_to_onnx"]

OPSET = 18
"""ONNX operator set of the exported graph (``BitwiseAnd`` and ``ReduceMax`` with ``axes`` as an input need 18)."""

_UNARY = {"neg": "Neg", "sin": "Sin", "cos": "Cos", "tanh": "Tanh", "log": "Log", "exp": "Exp", "sqrt": "Sqrt",
          "logistic": "Sigmoid", "floor": "Floor", "ceil": "Ceil", "sign": "Sign", "tan": "Tan",
          "stop_gradient": "Identity", "copy": "Identity", "copy_p": "Identity", "optimization_barrier": "Identity"}
_COMPARE = {"eq": "Equal", "lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual"}
_BOOLEAN = {"and": ("And", "BitwiseAnd"), "or": ("Or", "BitwiseOr"), "xor": ("Xor", "BitwiseXor")}
_ARITHMETIC = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow"}
_CALL_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


class _Tensor(NamedTuple):
    """A value computed by the graph: its ONNX name and its jax aval (logical shape and dtype)."""

    name: str
    aval: Any


def _is_key(dtype) -> bool:
    return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _is_complex(dtype) -> bool:
    return not _is_key(dtype) and np.issubdtype(dtype, np.complexfloating)


def _is_integer(dtype) -> bool:
    return not _is_key(dtype) and np.issubdtype(dtype, np.integer)


def _onnx_shape(aval) -> tuple[int, ...]:
    """The shape of an aval's ONNX form: a trailing 2 for complex numbers and PRNG keys (key data)."""
    return tuple(aval.shape) + ((2,) if _is_complex(aval.dtype) or _is_key(aval.dtype) else ())


def _onnx_type(dtype) -> int:
    if _is_key(dtype):
        return TensorProto.UINT32
    if _is_integer(dtype):
        return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if _is_complex(dtype) or dtype == np.float32:
        return TensorProto.FLOAT
    if dtype == np.float64:
        return TensorProto.DOUBLE
    if dtype == np.bool_:
        return TensorProto.BOOL
    raise NotImplementedError(f"ONNX export: no ONNX form for dtype {dtype}")


def _onnx_form(value, dtype) -> np.ndarray:
    """A constant of jax dtype ``dtype`` as the array the graph holds (see :func:`_onnx_shape`)."""
    if _is_key(dtype):
        return np.asarray(jax.random.key_data(value))
    value = np.asarray(value)
    if _is_complex(dtype):
        return np.stack([value.real, value.imag], axis=-1).astype(np.float32)
    return value.astype(dtype)


def _dft_matrix(n: int) -> np.ndarray:
    """``rfft`` of length ``n`` as a matrix ``(n, 2 * (n // 2 + 1))``: real and imaginary parts interleaved."""
    t = np.arange(n)[:, None]
    k = np.arange(n // 2 + 1)[None, :]
    angle = 2.0 * np.pi * ((t * k) % n) / n
    return np.stack([np.cos(angle), -np.sin(angle)], axis=-1).reshape(n, -1).astype(np.float32)


def _inverse_dft_matrix(n: int) -> np.ndarray:
    """``irfft`` to length ``n`` as a matrix ``(2 * (n // 2 + 1), n)`` on interleaved real and imaginary parts.

    ``x[t] = (1/n) sum_k w_k (Re X_k cos(2 pi k t / n) - Im X_k sin(2 pi k t / n))``, ``w_k = 2`` except at DC and
    (``n`` even) Nyquist, where it is 1 (their imaginary parts are ignored, as numpy's and XLA's ``irfft``)."""
    k = np.arange(n // 2 + 1)[:, None]
    t = np.arange(n)[None, :]
    weight = np.where((k == 0) | (2 * k == n), 1.0, 2.0) / n
    angle = 2.0 * np.pi * ((t * k) % n) / n
    return np.stack([weight * np.cos(angle), -weight * np.sin(angle)], axis=1).reshape(-1, n).astype(np.float32)


class _GraphBuilder:
    """Collects ONNX nodes and initializers while walking a jaxpr."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self._constant_names: dict[tuple, str] = {}
        self._folded: dict[tuple, list] = {}
        self._count = 0

    # Plumbing ------------------------------------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def op(self, op_type: str, *inputs: str, n_out: int = 1, **attributes) -> Any:
        outputs = [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, **attributes))
        return outputs[0] if n_out == 1 else outputs

    def const(self, array) -> str:
        """An initializer holding ``array`` (already in ONNX form); equal arrays share one."""
        array = np.asarray(array)
        signature = (array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest())
        if signature not in self._constant_names:
            name = self.fresh("const")
            self.initializers[name] = numpy_helper.from_array(array, name)
            self._constant_names[signature] = name
        return self._constant_names[signature]

    def ints(self, values) -> str:
        return self.const(np.asarray(values, np.int64))

    def name(self, value, aval) -> str:
        """The ONNX name of a value: a tensor's own, or an initializer for a constant."""
        return value.name if isinstance(value, _Tensor) else self.const(_onnx_form(value, aval.dtype))

    def reshape(self, name: str, shape) -> str:
        return self.op("Reshape", name, self.ints(shape))

    def real_imag(self, name: str) -> tuple[str, str]:
        """The real and imaginary parts (trailing axis dropped) of a complex value's ONNX form."""
        return (self.op("Gather", name, self.ints(0), axis=-1), self.op("Gather", name, self.ints(1), axis=-1))

    def make_complex(self, real: str, imag: str) -> str:
        axis = self.ints([-1])
        return self.op("Concat", self.op("Unsqueeze", real, axis), self.op("Unsqueeze", imag, axis), axis=-1)

    # Walking a jaxpr -----------------------------------------------------------------------------------------------
    def run(self, jaxpr: jex_core.Jaxpr, consts, args) -> list:
        """Values of ``jaxpr``'s outputs; each value is a numpy constant or a :class:`_Tensor`."""
        env: dict = {}

        def read(var):
            return np.asarray(var.val, var.aval.dtype) if isinstance(var, jex_core.Literal) else env[var]

        env.update(zip(jaxpr.constvars, consts, strict=True))
        env.update(zip(jaxpr.invars, args, strict=True))
        for eqn in jaxpr.eqns:
            inputs = [read(var) for var in eqn.invars]
            if not any(isinstance(value, _Tensor) for value in inputs):
                outputs = self.fold(eqn, inputs)
            else:
                rule = getattr(self, f"_{eqn.primitive.name}", None) or self._by_table(eqn.primitive.name)
                outputs = rule(eqn, inputs)
            for var, value in zip(eqn.outvars, outputs, strict=True):
                if not isinstance(var, jex_core.DropVar):
                    env[var] = value
        return [read(var) for var in jaxpr.outvars]

    def fold(self, eqn, inputs) -> list:
        """Evaluate an equation of constants with jax now (cached, so an unrolled loop folds each once)."""
        signature = (id(eqn),) + tuple(
            (np.asarray(v).dtype.str, np.shape(v), hashlib.sha1(np.asarray(v).tobytes()).hexdigest())
            if not _is_key(getattr(v, "dtype", np.float32)) else id(v)
            for v in inputs
        )
        if signature not in self._folded:
            outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
            outputs = outputs if eqn.primitive.multiple_results else [outputs]
            self._folded[signature] = [o if _is_key(o.dtype) else np.asarray(o) for o in outputs]
        return self._folded[signature]

    def _out(self, eqn, name: str, index: int = 0) -> _Tensor:
        return _Tensor(name, eqn.outvars[index].aval)

    def _names(self, eqn, inputs) -> list[str]:
        return [self.name(value, var.aval) for value, var in zip(inputs, eqn.invars, strict=True)]

    def _by_table(self, primitive: str):
        if primitive in _UNARY:
            return lambda eqn, inputs: [self._out(eqn, self.op(_UNARY[primitive], *self._names(eqn, inputs)))]
        if primitive in _COMPARE:
            return lambda eqn, inputs: [self._out(eqn, self.op(_COMPARE[primitive], *self._names(eqn, inputs)))]
        if primitive in _ARITHMETIC:
            return partial(self._arithmetic, _ARITHMETIC[primitive])
        if primitive in _BOOLEAN:
            return partial(self._boolean, _BOOLEAN[primitive])
        raise NotImplementedError(f"ONNX export: the block step uses jax primitive {primitive!r}, which this exporter "
                                  "does not translate")

    def _inline(self, closed, inputs) -> list:
        if isinstance(closed, jex_core.ClosedJaxpr):
            return self.run(closed.jaxpr, closed.consts, inputs)
        return self.run(closed, [], inputs)

    def _call(self, eqn, inputs) -> list:
        closed = next(eqn.params[p] for p in _CALL_JAXPR_PARAMS if p in eqn.params)
        return self._inline(closed, inputs)

    _jit = _pjit = _closed_call = _core_call = _custom_jvp_call = _custom_vjp_call = _remat = _checkpoint = _call

    def _expand(self, function, eqn, inputs, avals) -> list:
        """Translate ``function`` (plain jax code for this primitive, traced on ``avals``) in its place."""
        closed = jax.make_jaxpr(function)(*[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])
        return self._inline(closed, inputs)

    # Elementwise ---------------------------------------------------------------------------------------------------
    def _arithmetic(self, op_type: str, eqn, inputs) -> list:
        dtype = eqn.outvars[0].aval.dtype
        a, b = self._names(eqn, inputs)
        if _is_complex(dtype):
            if op_type in ("Add", "Sub"):
                return [self._out(eqn, self.op(op_type, a, b))]
            if op_type != "Mul":
                raise NotImplementedError(f"ONNX export: complex {eqn.primitive.name} is not translated")
            (ar, ai), (br, bi) = self.real_imag(a), self.real_imag(b)
            real = self.op("Sub", self.op("Mul", ar, br), self.op("Mul", ai, bi))
            imag = self.op("Add", self.op("Mul", ar, bi), self.op("Mul", ai, br))
            return [self._out(eqn, self.make_complex(real, imag))]
        return [self._out(eqn, self.op(op_type, a, b))]

    def _rem(self, eqn, inputs) -> list:
        return [self._out(eqn, self.op("Mod", *self._names(eqn, inputs), fmod=1))]  # C fmod, as lax.rem

    def _boolean(self, op_types: tuple[str, str], eqn, inputs) -> list:
        op_type = op_types[0] if eqn.outvars[0].aval.dtype == np.bool_ else op_types[1]
        return [self._out(eqn, self.op(op_type, *self._names(eqn, inputs)))]

    def _not(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        dtype = eqn.outvars[0].aval.dtype
        return [self._out(eqn, self.op("Not" if dtype == np.bool_ else "BitwiseNot", x))]

    def _ne(self, eqn, inputs) -> list:
        return [self._out(eqn, self.op("Not", self.op("Equal", *self._names(eqn, inputs))))]

    def _abs(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        if not _is_complex(eqn.invars[0].aval.dtype):
            return [self._out(eqn, self.op("Abs", x))]
        power = self.op("ReduceSum", self.op("Mul", x, x), self.ints([-1]), keepdims=0)
        return [self._out(eqn, self.op("Sqrt", power))]

    def _rsqrt(self, eqn, inputs) -> list:
        return [self._out(eqn, self.op("Reciprocal", self.op("Sqrt", *self._names(eqn, inputs))))]

    def _square(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        return [self._out(eqn, self.op("Mul", x, x))]

    def _integer_pow(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        exponent = eqn.params["y"]
        if exponent == 0:
            raise NotImplementedError("ONNX export: integer_pow with exponent 0 is not translated")
        result = x
        for _ in range(abs(exponent) - 1):
            result = self.op("Mul", result, x)
        return [self._out(eqn, self.op("Reciprocal", result) if exponent < 0 else result)]

    def _round(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        nearest_even = self.op("Round", x)
        if eqn.params["rounding_method"] == jax.lax.RoundingMethod.TO_NEAREST_EVEN:
            return [self._out(eqn, nearest_even)]
        # Away from zero: only exact ties (|x - trunc(x)| == 0.5) differ from round-half-even.
        sign = self.op("Sign", x)
        truncated = self.op("Mul", sign, self.op("Floor", self.op("Abs", x)))
        tie = self.op("Equal", self.op("Abs", self.op("Sub", x, truncated)), self.const(np.float32(0.5)))
        return [self._out(eqn, self.op("Where", tie, self.op("Add", truncated, sign), nearest_even))]

    def _clamp(self, eqn, inputs) -> list:
        low, x, high = self._names(eqn, inputs)
        return [self._out(eqn, self.op("Max", self.op("Min", x, high), low))]

    def _is_finite(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        return [self._out(eqn, self.op("Not", self.op("Or", self.op("IsNaN", x), self.op("IsInf", x))))]

    def _select_n(self, eqn, inputs) -> list:
        predicate, *cases = self._names(eqn, inputs)
        if _is_complex(eqn.outvars[0].aval.dtype):
            predicate = self.op("Unsqueeze", predicate, self.ints([-1]))
        if eqn.invars[0].aval.dtype == np.bool_:
            return [self._out(eqn, self.op("Where", predicate, cases[1], cases[0]))]
        result = cases[0]
        for index, case in enumerate(cases[1:], start=1):
            index_value = self.const(np.asarray(index, eqn.invars[0].aval.dtype))
            result = self.op("Where", self.op("Equal", predicate, index_value), case, result)
        return [self._out(eqn, result)]

    def _shift_by(self, eqn, inputs, *, left: bool) -> list:
        """uint32 shifts by constants; shifting by 32 or more gives 0, as lax (``threefry_seed`` shifts by 32)."""
        dtype = eqn.outvars[0].aval.dtype
        if dtype != np.uint32 or isinstance(inputs[1], _Tensor):
            raise NotImplementedError(f"ONNX export: {eqn.primitive.name} is translated for uint32 values shifted "
                                      f"by constants only, got {dtype}")
        shift = np.asarray(inputs[1])
        x = self.name(inputs[0], eqn.invars[0].aval)
        amount = self.const(np.where(shift >= 32, 0, shift).astype(np.uint32))
        out = self.op("BitShift", x, amount, direction="LEFT" if left else "RIGHT")
        if np.any(shift >= 32):
            out = self.op("Where", self.const(shift >= 32), self.const(np.uint32(0)), out)
        return [self._out(eqn, out)]

    def _shift_left(self, eqn, inputs) -> list:
        return self._shift_by(eqn, inputs, left=True)

    def _shift_right_logical(self, eqn, inputs) -> list:
        return self._shift_by(eqn, inputs, left=False)

    def _convert_element_type(self, eqn, inputs) -> list:
        source, target = eqn.invars[0].aval.dtype, eqn.params["new_dtype"]
        (x,) = self._names(eqn, inputs)
        if _is_complex(target):
            if _is_complex(source):
                return [self._out(eqn, x)]
            zero = self.op("Mul", x, self.const(np.zeros((), np.float32)))
            return [self._out(eqn, self.make_complex(self.op("Cast", x, to=TensorProto.FLOAT), zero))]
        if _is_complex(source):
            x = self.real_imag(x)[0]
        if _onnx_type(target) == _onnx_type(source):
            return [self._out(eqn, x)]
        return [self._out(eqn, self.op("Cast", x, to=_onnx_type(target)))]

    def _bitcast_convert_type(self, eqn, inputs) -> list:
        """uint32 bits -> float32, decoded as IEEE 754 in float64 (exact), then rounded to float32 (exact)."""
        source, target = eqn.invars[0].aval.dtype, eqn.params["new_dtype"]
        if source != np.uint32 or target != np.float32:
            raise NotImplementedError(f"ONNX export: bitcast from {source} to {target} is not translated")
        (bits,) = self._names(eqn, inputs)

        def field(shift: int, mask: int) -> str:  # (bits >> shift) & mask, as float64
            shifted = self.op("BitShift", bits, self.const(np.uint32(shift)), direction="RIGHT") if shift else bits
            return self.op("Cast", self.op("BitwiseAnd", shifted, self.const(np.uint32(mask))), to=TensorProto.DOUBLE)

        exponent, mantissa, sign_bit = field(23, 0xFF), field(0, 2**23 - 1), field(31, 1)
        zero, one = self.const(np.float64(0.0)), self.const(np.float64(1.0))
        normal = self.op("Greater", exponent, zero)
        significand = self.op("Add", mantissa, self.op("Where", normal, self.const(np.float64(2**23)), zero))
        scale = self.op("Pow", self.const(np.float64(2.0)),
                        self.op("Sub", self.op("Max", exponent, one), self.const(np.float64(150.0))))
        magnitude = self.op("Mul", significand, scale)
        special = self.op("Where", self.op("Equal", mantissa, zero), self.const(np.float64(np.inf)),
                          self.const(np.float64(np.nan)))
        magnitude = self.op("Where", self.op("Equal", exponent, self.const(np.float64(255.0))), special, magnitude)
        sign = self.op("Sub", one, self.op("Mul", sign_bit, self.const(np.float64(2.0))))
        value = self.op("Mul", sign, magnitude)  # -1 * 0 is -0
        return [self._out(eqn, self.op("Cast", value, to=TensorProto.FLOAT))]

    # Shapes --------------------------------------------------------------------------------------------------------
    def _to_out_shape(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)[:1]
        return [self._out(eqn, self.reshape(x, _onnx_shape(eqn.outvars[0].aval)))]

    _reshape = _squeeze = _to_out_shape

    def _broadcast_in_dim(self, eqn, inputs) -> list:
        x = self.name(inputs[0], eqn.invars[0].aval)
        in_aval, out_aval = eqn.invars[0].aval, eqn.outvars[0].aval
        extra = _onnx_shape(out_aval)[len(out_aval.shape):]
        shape = [1] * len(out_aval.shape)
        for index, dim in enumerate(eqn.params["broadcast_dimensions"]):
            shape[dim] = in_aval.shape[index]
        expanded = self.op("Expand", self.reshape(x, tuple(shape) + extra), self.ints(_onnx_shape(out_aval)))
        return [self._out(eqn, expanded)]

    def _transpose(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        permutation = list(eqn.params["permutation"])
        if len(_onnx_shape(eqn.outvars[0].aval)) > len(permutation):
            permutation.append(len(permutation))
        return [self._out(eqn, self.op("Transpose", x, perm=permutation))]

    def _concatenate(self, eqn, inputs) -> list:
        return [self._out(eqn, self.op("Concat", *self._names(eqn, inputs), axis=eqn.params["dimension"]))]

    def _stack(self, eqn, inputs) -> list:
        axis = self.ints([eqn.params["axis"]])
        rows = [self.op("Unsqueeze", name, axis) for name in self._names(eqn, inputs)]
        return [self._out(eqn, self.op("Concat", *rows, axis=eqn.params["axis"]))]

    def _unstack(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        axis = eqn.params["axis"]
        return [self._out(eqn, self.op("Gather", x, self.ints(index), axis=axis), index)
                for index in range(len(eqn.outvars))]

    def _slice(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
        strides = eqn.params["strides"] or (1,) * len(starts)
        axes = list(range(len(starts)))
        return [self._out(eqn, self.op("Slice", x, self.ints(starts), self.ints(limits), self.ints(axes),
                                       self.ints(strides)))]

    def _rev(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        axes = list(eqn.params["dimensions"])
        ends = [-(2**62)] * len(axes)
        return [self._out(eqn, self.op("Slice", x, self.ints([-1] * len(axes)), self.ints(ends), self.ints(axes),
                                       self.ints([-1] * len(axes))))]

    def _split(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        names = self.op("Split", x, self.ints(eqn.params["sizes"]), axis=eqn.params["axis"],
                        n_out=len(eqn.params["sizes"]))
        names = [names] if isinstance(names, str) else names
        return [self._out(eqn, name, index) for index, name in enumerate(names)]

    def _pad(self, eqn, inputs) -> list:
        x, fill = self._names(eqn, inputs)
        aval = eqn.invars[0].aval
        shape = list(_onnx_shape(aval))
        if _is_complex(aval.dtype):
            fill = self.real_imag(fill)[0]  # a complex pad value must be real (jnp pads with 0)
        for axis, (_, _, interior) in enumerate(eqn.params["padding_config"]):
            if interior > 0:  # [.., n, ..] -> [.., n, 1 + interior, ..] with the fill after each -> [.., m, ..]
                n = shape[axis]
                fills = self.op("Expand", fill, self.ints(shape[: axis + 1] + [interior] + shape[axis + 1 :]))
                joined = self.op("Concat", self.op("Unsqueeze", x, self.ints([axis + 1])), fills, axis=axis + 1)
                shape[axis] = n + (n - 1) * interior
                flat = self.reshape(joined, shape[:axis] + [n * (1 + interior)] + shape[axis + 1 :])
                x = self.op("Slice", flat, self.ints([0]), self.ints([shape[axis]]), self.ints([axis]))
        config = eqn.params["padding_config"]
        starts = [-lo if lo < 0 else 0 for lo, _, _ in config]
        ends = [shape[i] + hi if hi < 0 else shape[i] for i, (_, hi, _) in enumerate(config)]
        if any(lo < 0 or hi < 0 for lo, hi, _ in config):
            x = self.op("Slice", x, self.ints(starts), self.ints(ends), self.ints(list(range(len(config)))))
        extra = [0] * (len(shape) - len(config))
        pads = [max(lo, 0) for lo, _, _ in config] + extra + [max(hi, 0) for _, hi, _ in config] + extra
        if any(pads):
            x = self.op("Pad", x, self.ints(pads), fill)
        return [self._out(eqn, x)]

    def _gather(self, eqn, inputs) -> list:
        """A gather at indices known at export time: the flat positions it reads, computed by jax on positions."""
        operand, indices = inputs
        aval = eqn.invars[0].aval
        if isinstance(indices, _Tensor):
            raise NotImplementedError("ONNX export: a gather at data-dependent indices is not translated")
        positions = np.arange(1, int(np.prod(aval.shape)) + 1, dtype=np.int32).reshape(aval.shape)
        params = dict(eqn.params, fill_value=0)
        read = np.asarray(jax.lax.gather_p.bind(jnp.asarray(positions), jnp.asarray(indices), **params)) - 1
        if np.any(read < 0):
            raise NotImplementedError("ONNX export: a gather that reads outside its operand is not translated")
        flat = self.reshape(self.name(operand, aval), [-1] + list(_onnx_shape(aval)[len(aval.shape):]))
        return [self._out(eqn, self.op("Gather", flat, self.ints(read.astype(np.int64)), axis=0))]

    # Reductions, products, transforms ------------------------------------------------------------------------------
    def _reduction(self, op_type: str, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        return [self._out(eqn, self.op(op_type, x, self.ints(list(eqn.params["axes"])), keepdims=0))]

    def _reduce_sum(self, eqn, inputs) -> list:
        return self._reduction("ReduceSum", eqn, inputs)

    def _reduce_max(self, eqn, inputs) -> list:
        return self._reduction("ReduceMax", eqn, inputs)

    def _reduce_min(self, eqn, inputs) -> list:
        return self._reduction("ReduceMin", eqn, inputs)

    def _cumsum(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        out = self.op("CumSum", x, self.ints(eqn.params["axis"]), reverse=int(eqn.params["reverse"]))
        return [self._out(eqn, out)]

    def _dot_general(self, eqn, inputs) -> list:
        (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
        lhs_aval, rhs_aval = eqn.invars[0].aval, eqn.invars[1].aval
        letters = iter("abcdefghijklmnopqrstuvwxyz")
        lhs = [next(letters) for _ in lhs_aval.shape]
        rhs = [next(letters) for _ in rhs_aval.shape]
        for left, right in zip(list(lhs_contract) + list(lhs_batch), list(rhs_contract) + list(rhs_batch)):
            rhs[right] = lhs[left]
        out = ([lhs[i] for i in lhs_batch] + [c for i, c in enumerate(lhs) if i not in (*lhs_contract, *lhs_batch)]
               + [c for i, c in enumerate(rhs) if i not in (*rhs_contract, *rhs_batch)])
        equation = f"{''.join(lhs)},{''.join(rhs)}->{''.join(out)}"
        a, b = self._names(eqn, inputs)
        complex_a, complex_b = _is_complex(lhs_aval.dtype), _is_complex(rhs_aval.dtype)
        if not (complex_a or complex_b):
            return [self._out(eqn, self.op("Einsum", a, b, equation=equation))]
        ar, ai = self.real_imag(a) if complex_a else (a, None)
        br, bi = self.real_imag(b) if complex_b else (b, None)
        real = self.op("Einsum", ar, br, equation=equation)
        if complex_a and complex_b:
            real = self.op("Sub", real, self.op("Einsum", ai, bi, equation=equation))
            imag = self.op("Add", self.op("Einsum", ar, bi, equation=equation),
                           self.op("Einsum", ai, br, equation=equation))
        else:
            imag = self.op("Einsum", ai, br, equation=equation) if complex_a else self.op("Einsum", ar, bi,
                                                                                       equation=equation)
        return [self._out(eqn, self.make_complex(real, imag))]

    def _fft(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        lengths, kind = eqn.params["fft_lengths"], eqn.params["fft_type"]
        if len(lengths) != 1 or kind not in (jax.lax.FftType.RFFT, jax.lax.FftType.IRFFT):
            raise NotImplementedError(f"ONNX export: only 1-D real FFTs are translated, got {kind} {lengths}")
        n = lengths[0]
        in_shape, out_shape = _onnx_shape(eqn.invars[0].aval), _onnx_shape(eqn.outvars[0].aval)
        if kind == jax.lax.FftType.RFFT:
            product = self.op("MatMul", x, self.const(_dft_matrix(n)))  # [..., 2 * n_bins]
            return [self._out(eqn, self.reshape(product, out_shape))]
        interleaved = self.reshape(x, list(in_shape[:-2]) + [2 * in_shape[-2]])
        return [self._out(eqn, self.op("MatMul", interleaved, self.const(_inverse_dft_matrix(n))))]

    def _real(self, eqn, inputs) -> list:
        return [self._out(eqn, self.real_imag(self._names(eqn, inputs)[0])[0])]

    def _imag(self, eqn, inputs) -> list:
        return [self._out(eqn, self.real_imag(self._names(eqn, inputs)[0])[1])]

    def _complex(self, eqn, inputs) -> list:
        real, imag = self._names(eqn, inputs)
        return [self._out(eqn, self.make_complex(real, imag))]

    def _conj(self, eqn, inputs) -> list:
        (x,) = self._names(eqn, inputs)
        return [self._out(eqn, self.op("Mul", x, self.const(np.array([1.0, -1.0], np.float32))))]

    # Control flow and PRNG -----------------------------------------------------------------------------------------
    def _scan(self, eqn, inputs) -> list:
        """Unrolled: the body once per step (the block's frames, for the GRU)."""
        params = eqn.params
        n_consts, n_carry, length = params["num_consts"], params["num_carry"], params["length"]
        consts, carry, xs = inputs[:n_consts], inputs[n_consts : n_consts + n_carry], inputs[n_consts + n_carry :]
        x_avals = [var.aval for var in eqn.invars[n_consts + n_carry :]]
        steps = {}
        for step in reversed(range(length)) if params["reverse"] else range(length):
            x_step = [x[step] if not isinstance(x, _Tensor) else
                      _Tensor(self.op("Gather", x.name, self.ints(step), axis=0), aval.update(shape=aval.shape[1:]))
                      for x, aval in zip(xs, x_avals, strict=True)]
            outputs = self._inline(params["jaxpr"], [*consts, *carry, *x_step])
            carry, steps[step] = outputs[:n_carry], outputs[n_carry:]
        stacked = []
        for index, var in enumerate(eqn.outvars[n_carry:]):
            ys = [steps[step][index] for step in range(length)]
            if not any(isinstance(y, _Tensor) for y in ys):
                stacked.append(np.stack(ys))
                continue
            item_aval = var.aval.update(shape=var.aval.shape[1:])
            axis = self.ints([0])
            rows = [self.op("Unsqueeze", self.name(y, item_aval), axis) for y in ys]
            stacked.append(_Tensor(self.op("Concat", *rows, axis=0), var.aval))
        return [*carry, *stacked]

    def _random_wrap(self, eqn, inputs) -> list:
        return [self._out(eqn, self._names(eqn, inputs)[0])]

    _random_unwrap = _random_wrap

    def _random_fold_in(self, eqn, inputs) -> list:
        keys_aval, messages_aval = eqn.invars[0].aval, eqn.invars[1].aval
        fold = _prng.iterated_vmap_binary_bcast(keys_aval.shape, messages_aval.shape, keys_aval.dtype._impl.fold_in)
        return self._expand(fold, eqn, inputs, [_physical_aval(keys_aval), messages_aval])

    def _random_bits(self, eqn, inputs) -> list:
        aval = eqn.invars[0].aval
        impl, bit_width, shape = aval.dtype._impl, eqn.params["bit_width"], eqn.params["shape"]
        bits = _prng.iterated_vmap_unary(aval.ndim, lambda key: impl.random_bits(key, bit_width, shape))
        return self._expand(bits, eqn, inputs, [_physical_aval(aval)])

    def _random_split(self, eqn, inputs) -> list:
        aval = eqn.invars[0].aval
        impl, shape = aval.dtype._impl, eqn.params["shape"]
        split = _prng.iterated_vmap_unary(aval.ndim, lambda key: impl.split(key, shape))
        return self._expand(split, eqn, inputs, [_physical_aval(aval)])

    def _threefry2x32(self, eqn, inputs) -> list:
        hash_function = partial(_threefry._threefry2x32_lowering, use_rolled_loops=False)
        return self._expand(hash_function, eqn, inputs, [var.aval for var in eqn.invars])


def _used_nodes(nodes: list[onnx.NodeProto], output_names: list[str]) -> list[onnx.NodeProto]:
    """The nodes that the outputs depend on, in their order (e.g. a key drawn for a source that has no noise)."""
    needed, kept = set(output_names), []
    for node in reversed(nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    return kept[::-1]


def function_to_onnx(
    function: Callable[..., Any], specs: list[jax.ShapeDtypeStruct], *, input_names: list[str],
    output_names: list[str]
) -> onnx.ModelProto:
    """Translate a jax function of arrays with concrete shapes into an ONNX model (see the module notes).

    Parameters
    ----------
    function : callable
        ``function(*arrays) -> array or tuple of arrays``, traceable by ``jax.make_jaxpr``.
    specs : list of jax.ShapeDtypeStruct
        Shape and dtype of each argument (float32, int32, uint32 or bool).
    input_names, output_names : list of str
        Names of the graph's inputs (one per spec) and outputs (one per result).

    Returns
    -------
    onnx.ModelProto
        Inputs and outputs with the functions' dtypes and shapes; constants as initializers.

    Raises
    ------
    NotImplementedError
        If the function uses a jax primitive (or a form of one) that is not translated, naming it.
    """
    closed = jax.make_jaxpr(function)(*specs)
    builder = _GraphBuilder()
    graph_inputs, arguments = [], []
    for name, aval in zip(input_names, closed.in_avals, strict=True):
        declared = helper.np_dtype_to_tensor_dtype(aval.dtype)
        graph_inputs.append(helper.make_tensor_value_info(name, declared, aval.shape))
        value = name if _onnx_type(aval.dtype) == declared else builder.op("Cast", name, to=_onnx_type(aval.dtype))
        arguments.append(_Tensor(value, aval))
    results = builder.run(closed.jaxpr, closed.consts, arguments)
    graph_outputs = []
    for name, value, aval in zip(output_names, results, closed.out_avals, strict=True):
        declared = helper.np_dtype_to_tensor_dtype(aval.dtype)
        source = builder.name(value, aval)
        if declared == _onnx_type(aval.dtype):
            builder.nodes.append(helper.make_node("Identity", [source], [name]))
        else:
            builder.nodes.append(helper.make_node("Cast", [source], [name], to=declared))
        graph_outputs.append(helper.make_tensor_value_info(name, declared, aval.shape))
    nodes = _used_nodes(builder.nodes, output_names)
    used = {name for node in nodes for name in node.input}
    initializers = [tensor for name, tensor in builder.initializers.items() if name in used]
    graph = helper.make_graph(nodes, "ddsp_stream_step", graph_inputs, graph_outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10,
                             producer_name="ddsp-jax")


def export_onnx(model: DDSPAutoencoder, *, block_frames: int, key: Key) -> onnx.ModelProto:
    """The block step of ``model`` for blocks of ``block_frames`` frames, as an ONNX model.

    Parameters
    ----------
    model : DDSPAutoencoder
        The model to export (its arrays become initializers of the graph).
    block_frames : int
        Frames per block (``block_frames * hop_size`` samples out per call).
    key : Key
        Only fixes the structure of the state (the key data it carries is an input of every call).

    Returns
    -------
    onnx.ModelProto
        Inputs: the state arrays (names from :func:`ddsp_core.stream_export.state_names`, shapes and dtypes from
        :func:`ddsp_core.stream_engine.state_spec`), ``f0_hz`` and ``loudness_db`` (``(block_frames,)`` float32).
        Outputs: ``"next." + name`` for each state array, then ``audio`` (``(block_frames * hop_size,)``).

    Raises
    ------
    ValueError
        If ``block_frames`` is not a positive integer.
    NotImplementedError
        If the step uses a jax primitive that this exporter does not translate (naming it).

    Examples
    --------
    >>> import onnxruntime
    >>> from ddsp_core.model import build_autoencoder
    >>> model = build_autoencoder([{"type": "harmonic", "n_harmonics": 8}], hidden_size=8, n_mlp_layers=1,
    ...                           key=jax.random.key(0))
    >>> proto = export_onnx(model, block_frames=2, key=jax.random.key(1))
    >>> session = onnxruntime.InferenceSession(proto.SerializeToString())
    """
    step, specs = flat_step(model, block_frames=block_frames, key=key)
    names = state_names(model)
    with direct_harmonic_sines():
        return function_to_onnx(step, specs, input_names=[*names, "f0_hz", "loudness_db"],
                                output_names=[*(f"next.{name}" for name in names), "audio"])
