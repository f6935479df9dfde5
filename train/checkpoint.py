"""Checkpoints with orbax: parameters, optimiser state, step, RNG key, data position and config.

Layout: ``<run_dir>/checkpoints/<step>/{state,meta}``. orbax writes each step into a temporary folder and renames it
when complete, so a run killed mid-save never leaves a checkpoint that a later ``--resume`` trusts; the newest
``keep`` steps are kept. ``meta`` is JSON: the full config, the model fingerprint and the data position (the
iterator is a pure function of (seed, step), so the step is the position).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or from an incompatible configuration."""


def _manager(directory: Path, *, keep: int, read_only: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=False,
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Checkpointer:
    """Save and restore training state under ``<run_dir>/checkpoints``.

    Args:
        directory: the checkpoints folder.
        keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory: Path, *, keep: int = 3):
        if directory.exists() and not directory.is_dir():
            raise CheckpointError(f"checkpoint path {directory} is a file; expected a folder")
        self.directory = directory
        self._manager = _manager(directory, keep=keep, read_only=False)

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Write ``state`` (a pytree of arrays) and ``meta`` (JSON-able) as checkpoint ``step``; blocks until done."""
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._manager.wait_until_finished()
        logger.info("saved checkpoint %s/%d", self.directory, step)

    def latest_step(self) -> int | None:
        """Newest complete checkpoint step, or None."""
        return self._manager.latest_step()

    def close(self) -> None:
        """Release the manager's resources."""
        self._manager.close()


def _resolve(path: Path) -> tuple[Path, int]:
    """Accept a run folder, its ``checkpoints`` folder or one step folder; return (checkpoints dir, step)."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    candidates = [path / "checkpoints", path]
    for directory in candidates:
        if directory.is_dir():
            steps = sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
            if steps:
                return directory, steps[-1]
    if path.is_dir() and path.name.isdigit():
        return path.parent, int(path.name)
    raise CheckpointError(f"no checkpoint found in {path}; expected a run folder with checkpoints/<step>/")


def read_meta(path: Path) -> tuple[Path, int, dict[str, Any]]:
    """Return (checkpoints dir, step, meta) of the newest checkpoint under ``path``."""
    directory, step = _resolve(path)
    manager = _manager(directory, keep=1, read_only=True)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as error:  # orbax raises many types for unreadable files
        raise CheckpointError(f"checkpoint {directory / str(step)} is unreadable ({type(error).__name__})") from None
    finally:
        manager.close()
    return directory, step, dict(restored["meta"])


def restore_state(directory: Path, step: int, template: Any) -> Any:
    """Restore checkpoint ``step``'s state into the structure, shapes and dtypes of ``template``."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    manager = _manager(directory, keep=1, read_only=True)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    except Exception as error:
        raise CheckpointError(
            f"checkpoint {directory / str(step)} does not match this model ({type(error).__name__}: {error})"
        ) from None
    finally:
        manager.close()
    return restored["state"]
