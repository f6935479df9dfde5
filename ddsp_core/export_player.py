"""Play an exported ddsp-jax instrument block by block, without ddsp-jax: from ``step.jax`` or ``step.onnx``.

``ddsp-train export RUN OUT_DIR`` copies this file into ``OUT_DIR`` (as ``ddsp_player.py``) next to
``manifest.json``, ``step.jax`` (the ``jax.export`` artifact), ``step.onnx`` (the same step as ONNX) and
``initial_state.npz``. It imports neither Equinox nor ddsp-jax; :class:`ExportedInstrument` needs jax and numpy,
:class:`OnnxInstrument` only onnxruntime and numpy::

    from ddsp_player import OnnxInstrument          # or ExportedInstrument (jax)
    instrument = OnnxInstrument("OUT_DIR")
    state = instrument.initial_state()
    for f0_hz, loudness_db in blocks:               # each (block_frames,) float32
        state, audio = instrument.step(state, f0_hz, loudness_db)   # audio: (block_samples,) float32

The state is a list of arrays (names, shapes and dtypes in ``manifest.json``) that the host keeps between calls.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["ExportedInstrument", "OnnxInstrument"]


class _Instrument:
    """The manifest, initial state and input checks shared by both runtimes."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} does not exist; expected an export folder")
        self.manifest = json.loads(manifest_path.read_text())
        with np.load(self.folder / self.manifest["initial_state"], allow_pickle=False) as arrays:
            self._initial = [arrays[entry["name"]] for entry in self.manifest["state"]]
        self.block_frames = int(self.manifest["block_frames"])
        self.block_samples = int(self.manifest["block_samples"])
        self.sample_rate = int(self.manifest["sample_rate"])

    def artifact(self, key: str) -> Path:
        """The path of the manifest's ``key`` artifact (``jax_export`` or ``onnx``), which must exist."""
        path = self.folder / self.manifest.get(key, f"<no {key} in manifest>")
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; this export has no {key} artifact")
        return path

    def initial_state(self) -> list[np.ndarray]:
        """A fresh copy of the state before the first block."""
        return [array.copy() for array in self._initial]

    def check(self, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray) -> None:
        """Refuse, in one line, a state that is not this instrument's or a block of another size."""
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


class ExportedInstrument(_Instrument):
    """The ``jax.export`` artifact (``step.jax``) with its manifest and initial state; needs jax and numpy.

    Parameters
    ----------
    folder : str or Path
        The export folder (``manifest.json``, ``step.jax``, ``initial_state.npz``).
    """

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        import jax
        from jax import export

        exported = export.deserialize(bytearray(self.artifact("jax_export").read_bytes()))
        self._call = jax.jit(exported.call)  # compiled once, then each block is one dispatch

    def step(self, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray) -> tuple[list, object]:
        """One block: ``(state, f0_hz[block_frames], loudness_db[block_frames]) -> (state, audio[block_samples])``."""
        self.check(state, f0_hz, loudness_db)
        outputs = self._call(*state, np.asarray(f0_hz, np.float32), np.asarray(loudness_db, np.float32))
        return list(outputs[:-1]), outputs[-1]


class OnnxInstrument(_Instrument):
    """The ONNX step (``step.onnx``) run by onnxruntime, with its manifest and initial state; needs onnxruntime
    and numpy.

    Parameters
    ----------
    folder : str or Path
        The export folder (``manifest.json``, ``step.onnx``, ``initial_state.npz``).
    threads : int
        onnxruntime's intra-op threads (1: one CPU core, as a real-time audio thread).
    """

    def __init__(self, folder: str | Path, *, threads: int = 1):
        super().__init__(folder)
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(self.artifact("onnx")), options, providers=["CPUExecutionProvider"]
        )
        self._state_names = [entry["name"] for entry in self.manifest["state"]]

    def step(self, state: list, f0_hz: np.ndarray, loudness_db: np.ndarray) -> tuple[list, np.ndarray]:
        """One block: ``(state, f0_hz[block_frames], loudness_db[block_frames]) -> (state, audio[block_samples])``."""
        self.check(state, f0_hz, loudness_db)
        feeds = {name: np.asarray(array) for name, array in zip(self._state_names, state)}
        feeds["f0_hz"] = np.asarray(f0_hz, np.float32)
        feeds["loudness_db"] = np.asarray(loudness_db, np.float32)
        outputs = self._session.run(None, feeds)
        return outputs[:-1], outputs[-1]
