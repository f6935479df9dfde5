"""Export the streaming engine's block step as a self-contained artifact (``jax.export``: serialized StableHLO).

The exported function is :func:`ddsp_core.stream_engine.process_block` for one model (its weights baked in as
constants) and one block size of ``block_frames`` frames, with the state flattened to a list of arrays::

    step(*state_arrays, f0_hz[block_frames], loudness_db[block_frames]) -> (*new_state_arrays, audio[block_samples])

so a host (a plugin, a browser worklet, a C++ program through the StableHLO/PJRT runtime) owns the state: it keeps
the arrays the step returned and passes them to the next call. :func:`state_names` gives each array's name in the
order of the list; :func:`initial_state_arrays` the arrays to start from. ``ddsp_core/export_player.py`` is a
loader that needs only jax and numpy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from ddsp_core._typing import Key
from ddsp_core.model import DDSPAutoencoder
from ddsp_core.stream_engine import init_state, process_block, state_spec

__all__ = ["export_step", "flat_step", "initial_state_arrays", "state_names"]


def state_names(model: DDSPAutoencoder) -> list[str]:
    """Names of the state arrays in the exported step's order, each processor's under its name (e.g. ``"hidden"``,
    ``"harmonic[0].phase_coarse"``, ``"reverb.spectra"``, ``"key_data"``)."""
    instrument = model.instrument
    prefixes = {f".sources[{i}]": p.name for i, p in enumerate(instrument.sources)}
    prefixes.update({f".effects[{i}]": p.name for i, p in enumerate(instrument.effects)})
    names = []
    for path, _, _ in state_spec(model):
        prefix = next((p for p in prefixes if path.startswith(p)), None)
        names.append(prefixes[prefix] + path[len(prefix) :] if prefix else path.lstrip("."))
    return names


def initial_state_arrays(model: DDSPAutoencoder, *, key: Key) -> list[np.ndarray]:
    """The state before the first block, as the exported step's list of arrays (noise from ``key``)."""
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(init_state(model, key=key))]


def export_step(
    model: DDSPAutoencoder, *, block_frames: int, key: Key, platforms: tuple[str, ...] = ("cpu",)
) -> export.Exported:
    """The block step of ``model`` for blocks of ``block_frames`` frames, exported with ``jax.export``.

    Parameters
    ----------
    model : DDSPAutoencoder
        The model to export (its arrays become constants of the artifact).
    block_frames : int
        Frames per block (``block_frames * hop_size`` samples out per call).
    key : Key
        Only fixes the structure of the state (the key data it carries is an input of every call).
    platforms : tuple of str
        Platforms to lower for (``"cpu"``, ``"cuda"``...); the artifact runs on any of them.

    Returns
    -------
    jax.export.Exported
        ``.serialize()`` gives the bytes to store; ``jax.export.deserialize(bytes).call(*arrays)`` runs it.

    Raises
    ------
    ValueError
        If ``block_frames`` is not a positive integer.
    """
    step, specs = flat_step(model, block_frames=block_frames, key=key)
    return export.export(jax.jit(step), platforms=platforms)(*specs)


def flat_step(
    model: DDSPAutoencoder, *, block_frames: int, key: Key
) -> tuple[Callable[..., tuple[jax.Array, ...]], list[jax.ShapeDtypeStruct]]:
    """The block step on flat arrays, ``step(*state_arrays, f0_hz, loudness_db) -> (*state_arrays, audio)``, and
    the shapes and dtypes of its arguments (what :func:`export_step` and the ONNX export trace).

    Raises
    ------
    ValueError
        If ``block_frames`` is not a positive integer.
    """
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive whole number of frames, got {block_frames!r}")
    treedef = jax.tree_util.tree_structure(init_state(model, key=key))

    def step(*arrays):
        state = jax.tree_util.tree_unflatten(treedef, arrays[:-2])
        new_state, audio = process_block(model, state, arrays[-2], arrays[-1])
        return (*jax.tree_util.tree_leaves(new_state), audio)

    frames = jax.ShapeDtypeStruct((block_frames,), jnp.float32)
    specs = [jax.ShapeDtypeStruct(shape, jnp.dtype(dtype)) for _, shape, dtype in state_spec(model)]
    return step, [*specs, frames, frames]
