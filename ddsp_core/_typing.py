"""Shared typing aliases for ddsp_core.

Every public array argument is annotated with jaxtyping dimensions. Under the test suite (and for any user who
turns on ``jaxtyping``'s import hook with beartype), these annotations are checked at call time, so a wrong shape
or dtype fails at the call with a message naming the argument.

``AnyArray`` admits both JAX arrays (including tracers under ``jit``/``vmap``) and NumPy arrays, so users can pass
NumPy data straight in.
"""

from typing import Literal, Union

import jax
import numpy as np

AnyArray = Union[jax.Array, np.ndarray]
"""A JAX or NumPy array; use inside jaxtyping annotations: ``Float[AnyArray, "n_frames"]``."""

Key = jax.Array
"""A JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``)."""

Padding = Literal["center", "same", "valid"]
"""How audio is padded before it is cut into frames (STFT and CREPE alike): ``"center"``: half a frame of zeros at
both ends, frame ``t`` centred on sample ``t * hop``; ``"same"``: zeros at the end only, ``ceil(n / hop)`` frames
(magenta ddsp ``spectral_ops.pad``); ``"valid"``: no padding. Each function documents its own frame count."""

__all__ = ["AnyArray", "Key", "Padding"]
