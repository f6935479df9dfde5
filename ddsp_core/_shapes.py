"""Cheap shape checks at the public entry points of ddsp_core, for callers without jaxtyping's import hook.

The annotations (``Float[AnyArray, "n_frames n_harmonics"]``) are checked only when the hook is on (the test suite
turns it on). :func:`check_shapes` checks the same contract from plain Python, once per trace (shapes are static
under ``jit`` and ``vmap``), so a 1-D harmonic distribution or an f0 track of the wrong length fails at the call
with a ``ValueError`` naming the argument, instead of being broadcast, stretched, or failing deep inside XLA.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_shapes(function: str, **arguments: tuple[Any, str]) -> dict[str, int]:
    """Check each argument's shape against a space-separated dimension spec; return the size of every dimension.

    A dimension name used by several arguments must have one size; a digit string is a fixed size.

    Parameters
    ----------
    function
        The public function's name, for the message.
    **arguments
        ``name=(value, "n_frames n_harmonics")`` per array argument.

    Raises
    ------
    ValueError
        ``"harmonic_synthesis: harmonic_distribution must have shape (n_frames, n_harmonics), got (250,)"`` or
        ``"harmonic_synthesis: f0_hz has n_frames=500, but amplitudes has n_frames=250"``.

    Examples
    --------
    >>> check_shapes("f", a=(np.zeros(4), "n_frames"), b=(np.zeros((4, 3)), "n_frames n_bands"))
    {'n_frames': 4, 'n_bands': 3}
    """
    sizes: dict[str, tuple[int, str]] = {}
    for name, (value, spec) in arguments.items():
        dims, shape = spec.split(), tuple(np.shape(value))
        if len(shape) != len(dims):
            raise ValueError(f"{function}: {name} must have shape ({', '.join(dims)}), got {shape}")
        for dim, size in zip(dims, shape, strict=True):
            if dim.isdigit() and int(dim) != size:
                raise ValueError(f"{function}: {name} must have shape ({', '.join(dims)}), got {shape}")
            if dim in sizes and sizes[dim][0] != size:
                raise ValueError(f"{function}: {name} has {dim}={size}, but {sizes[dim][1]} has {dim}={sizes[dim][0]}")
            sizes.setdefault(dim, (size, name))
    return {dim: size for dim, (size, _) in sizes.items()}
