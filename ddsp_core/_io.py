"""Atomic file writes: the one helper every module that writes a file uses.

A file is written to a hidden temporary name in its own folder, flushed to disk, then renamed over the final
name (:func:`os.replace`, atomic on POSIX), so a reader sees either the old file or the complete new one, never a
half-written one. On any error (a full or read-only disk, an interrupted writer) the temporary file is removed and
an :class:`OSError` naming the *final* path is raised.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once at import (os.umask can only be read by setting it)
_DEFAULT_PERMISSIONS = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, permissions: int | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` when the block ends without error.

    Parameters
    ----------
    path
        Final file path; its folder must exist.
    mode
        ``"wb"`` (bytes) or ``"w"`` (text, UTF-8).
    permissions
        Mode bits given to the file (default ``0o666`` less the process umask, as :func:`open` would give).

    Raises
    ------
    OSError
        Of the original type (``PermissionError``, ``OSError(ENOSPC)``...) with ``filename`` set to ``path``.

    Examples
    --------
    >>> with atomic_open("weights.bin") as handle:  # doctest: +SKIP
    ...     handle.write(b"...")
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    tmp_name = None
    try:
        descriptor, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(descriptor, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _DEFAULT_PERMISSIONS if permissions is None else permissions)
        os.replace(tmp_name, path)
    except OSError as error:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        raise type(error)(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as handle:
        handle.write(payload)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
