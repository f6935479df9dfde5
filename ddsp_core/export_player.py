"""Play an exported ddsp-jax instrument block by block with nothing but jax and numpy.

``ddsp-train export RUN OUT_DIR`` copies this file into ``OUT_DIR`` (as ``ddsp_player.py``) next to
``manifest.json``, ``step.jax`` (the ``jax.export`` artifact) and ``initial_state.npz``. It imports neither
Equinox nor ddsp-jax::

    from ddsp_player import ExportedInstrument
    instrument = ExportedInstrument("OUT_DIR")
    state = instrument.initial_state()
    for f0_hz, loudness_db in blocks:               # each (block_frames,) float32
        state, audio = instrument.step(state, f0_hz, loudness_db)   # audio: (block_samples,) float32

The state is a list of arrays (names, shapes and dtypes in ``manifest.json``) that the host keeps between calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from jax import export

__all__ = ["ExportedInstrument"]


class ExportedInstrument:
    """An exported block step with its manifest and initial state.

    Parameters
    ----------
    folder : str or Path
        The export folder (``manifest.json``, ``step.jax``, ``initial_state.npz``).
    """

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} does not exist; expected an export folder")
        self.manifest = json.loads(manifest_path.read_text())
        exported = export.deserialize(bytearray((folder / self.manifest["jax_export"]).read_bytes()))
        self._call = jax.jit(exported.call)  # compiled once, then each block is one dispatch
        with np.load(folder / self.manifest["initial_state"], allow_pickle=False) as arrays:
            self._initial = [arrays[entry["name"]] for entry in self.manifest["state"]]
        self.block_frames = int(self.manifest["block_frames"])
        self.block_samples = int(self.manifest["block_samples"])
        self.sample_rate = int(self.manifest["sample_rate"])

    def initial_state(self) -> list[np.ndarray]:
        """A fresh copy of the state before the first block."""
        return [array.copy() for array in self._initial]

    def _check(self, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray) -> None:
        entries = self.manifest["state"]
        if len(state) != len(entries):
            raise ValueError(f"state has {len(state)} arrays, this instrument's has {len(entries)} (see manifest.json)")
        for array, entry in zip(state, entries):
            if tuple(np.shape(array)) != tuple(entry["shape"]) or np.asarray(array).dtype != np.dtype(entry["dtype"]):
                raise ValueError(
                    f"state array {entry['name']} has shape {tuple(np.shape(array))} {np.asarray(array).dtype}, "
                    f"expected {tuple(entry['shape'])} {entry['dtype']} (a state from another export?)"
                )
        for name, value in (("f0_hz", f0_hz), ("loudness_db", loudness_db)):
            if np.shape(value) != (self.block_frames,):
                raise ValueError(
                    f"{name} must have shape ({self.block_frames},) for this export's block of {self.block_frames} "
                    f"frames, got {np.shape(value)}"
                )

    def step(
        self, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray
    ) -> tuple[list[jax.Array], jax.Array]:
        """One block: ``(state, f0_hz[block_frames], loudness_db[block_frames]) -> (state, audio[block_samples])``."""
        self._check(state, f0_hz, loudness_db)
        outputs = self._call(*state, np.asarray(f0_hz, np.float32), np.asarray(loudness_db, np.float32))
        return list(outputs[:-1]), outputs[-1]
