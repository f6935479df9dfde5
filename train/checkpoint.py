"""Checkpoints with orbax: parameters, optimiser state, step, data position, validation loss and config.

Layout: ``<run_dir>/checkpoints/<step>/{state,meta}``. orbax writes each step into a temporary folder
(``<step>.orbax-checkpoint-tmp-*``) and renames it when complete. What counts as a checkpoint:

- only folders named by a step number; a temporary folder left by a run killed mid-save never counts (``fit``
  removes it, saying so);
- a step folder that does not restore (empty, truncated, corrupt) is *skipped*: loading the newest (or best)
  checkpoint falls back to the next one that restores, and logs which step was skipped and why. Corruption is
  reported as corruption; a checkpoint of another model configuration is reported as such and never skipped.

Which checkpoints are kept: the newest ``keep`` steps plus the one with the lowest validation loss (``best``).
``meta`` is JSON: the full config, the model fingerprint, the data position (the iterator is a pure function of
(seed, step), so the step is the position) and the validation loss at that step when it was measured.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from train import modeling
from train.config import Config, from_dict, model_differences

logger = logging.getLogger(__name__)

TEMPORARY_MARKER = ".orbax-checkpoint-tmp"
"""Part of the name of the folder orbax writes a step into before renaming it (an incomplete checkpoint)."""

CHOICES = ("newest", "best")
"""Named checkpoint choices besides a step number."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, corrupt, or from an incompatible configuration."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (full or read-only disk...); no step folder was finalised."""


class CorruptCheckpointError(CheckpointError):
    """A step folder that exists but does not restore (empty, truncated or damaged files)."""


def _manager(directory: Path, *, read_only: bool) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None,
        enable_async_checkpointing=False,
        create=not read_only,
        read_only=read_only,
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


def state_tree(params: Any, opt_state: Any, step: int) -> dict[str, Any]:
    """The pytree a checkpoint stores: parameters, optimiser state and step."""
    # A numpy step, not a device array: with several processes orbax refuses host-local device arrays.
    return {"params": params, "opt_state": opt_state, "step": np.asarray(step, np.int32)}


def list_steps(directory: Path) -> list[int]:
    """Step numbers of the step folders in ``directory``, ascending (temporary orbax folders excluded)."""
    if not directory.is_dir():
        return []
    return sorted(int(path.name) for path in directory.iterdir() if path.is_dir() and path.name.isdigit())


def remove_incomplete(directory: Path) -> list[Path]:
    """Delete the temporary folders of saves that never finished; return what was removed."""
    if not directory.is_dir():
        return []
    removed = [path for path in directory.iterdir() if TEMPORARY_MARKER in path.name]
    for path in removed:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        logger.warning("removed the incomplete checkpoint %s (a save that never finished)", path)
    return removed


def set_aside(directory: Path, step: int) -> Path:
    """Move a corrupt step folder to ``<run_dir>/checkpoints-corrupt/<step>`` (kept for inspection); return it."""
    target = directory.parent / "checkpoints-corrupt" / str(step)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    (directory / str(step)).rename(target)
    logger.warning("moved the corrupt checkpoint %s/%d to %s", directory, step, target)
    return target


class Checkpointer:
    """Save training state under ``<run_dir>/checkpoints``, keeping the newest ``keep`` steps and the best one.

    Args:
        directory: the checkpoints folder.
        keep: how many of the newest checkpoints to keep (the best-validation one is kept besides).
    """

    def __init__(self, directory: Path, *, keep: int = 3):
        if directory.exists() and not directory.is_dir():
            raise CheckpointError(f"checkpoint path {directory} is a file; expected a folder")
        self.directory = directory
        self.keep = keep
        self._manager = _manager(directory, read_only=False)

    def save(self, step: int, state: Any, meta: dict[str, Any], *, best_step: int | None) -> None:
        """Write checkpoint ``step`` (blocks until done), then drop steps that are neither newest nor best."""
        printed = io.StringIO()  # what orbax's threads print; dropped when the write fails (reported in one line)
        try:
            with contextlib.redirect_stderr(printed):
                self._manager.save(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                    force=True,
                )
                self._manager.wait_until_finished()
        except Exception as error:  # orbax wraps I/O failures of its worker threads in many types
            first_line = (str(error).splitlines() or [type(error).__name__])[0]
            raise CheckpointWriteError(
                f"could not write checkpoint {self.directory / str(step)}: {first_line}"
            ) from error
        sys.stderr.write(printed.getvalue())
        logger.info("saved checkpoint %s/%d", self.directory, step)
        if jax.process_index() != 0:  # several processes: process 0 alone prunes the shared folder
            return
        steps = list_steps(self.directory)
        for old in steps[: -self.keep]:
            if old != best_step:
                shutil.rmtree(self.directory / str(old))

    def close(self) -> None:
        """Release the manager's resources."""
        self._manager.close()


def checkpoints_dir(path: Path) -> Path:
    """Accept a run folder or its ``checkpoints`` folder; return the checkpoints folder."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.is_dir() and path.name.isdigit():
        return path.parent
    return path


def read_meta(directory: Path, step: int) -> dict[str, Any]:
    """The ``meta`` JSON of checkpoint ``step``; :class:`CorruptCheckpointError` when it does not read."""
    manager = _manager(directory, read_only=True)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as error:  # orbax raises many types for missing or damaged files
        raise CorruptCheckpointError(
            f"checkpoint {directory / str(step)} is corrupt or incomplete: its meta does not read "
            f"({type(error).__name__})"
        ) from None
    finally:
        manager.close()
    return dict(restored["meta"])


def restore_state(directory: Path, step: int, template: Any) -> Any:
    """Restore checkpoint ``step``'s state into the structure, shapes and dtypes of ``template``."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    manager = _manager(directory, read_only=True)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    except Exception as error:
        raise CorruptCheckpointError(
            f"checkpoint {directory / str(step)} is corrupt or incomplete: its state does not restore "
            f"({type(error).__name__})"
        ) from None
    finally:
        manager.close()
    return restored["state"]


def check_compatible(config: Config, meta: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint made with another model configuration, naming the fields that differ.

    A checkpoint written before a model setting existed (its fingerprint lacks it) is compatible when that setting
    is at its default."""
    if meta.get("model_fingerprint") == config.model_fingerprint():
        return
    saved = meta.get("config", {}).get("model")
    differences = model_differences(saved, config) if isinstance(saved, dict) else ["no saved model settings"]
    if differences:
        raise CheckpointError(
            f"checkpoint {where} was made with another model configuration ({'; '.join(differences)})"
        )


def parse_choice(text: str) -> str | int:
    """``--step`` value: ``newest``, ``best`` or a step number."""
    if text in CHOICES:
        return text
    if text.isdigit():
        return int(text)
    raise CheckpointError(f"--step {text!r}; expected newest, best or a step number")


@dataclass(frozen=True)
class Loaded:
    """A restored checkpoint: its config, state, which step and why, and what was skipped on the way."""

    config: Config
    state: dict[str, Any]
    step: int
    chosen: str
    validation_loss: float | None
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the user, e.g. ``checkpoint step 300 (best, validation loss 6.5400)``."""
        loss = "" if self.validation_loss is None else f", validation loss {self.validation_loss:.4f}"
        skipped = f", {len(self.skipped)} skipped as corrupt" if self.skipped else ""
        return f"checkpoint step {self.step} ({self.chosen}{loss}{skipped})"


def _candidates(directory: Path, choice: str | int) -> tuple[list[int], str]:
    """Steps to try in order for ``choice``, and the name of the choice."""
    steps = list_steps(directory)
    if not steps:
        raise CheckpointError(f"no checkpoint in {directory}; expected checkpoints/<step>/ written by ddsp-train fit")
    if isinstance(choice, int):
        if choice not in steps:
            raise CheckpointError(f"no checkpoint step {choice} in {directory}; available steps: {steps}")
        return [choice], "chosen step"
    newest_first = steps[::-1]
    if choice == "newest":
        return newest_first, "newest"
    losses = {}
    for step in newest_first:
        try:
            loss = read_meta(directory, step).get("validation_loss")
        except CorruptCheckpointError:
            continue
        if loss is not None and math.isfinite(loss):
            losses[step] = loss
    if not losses:
        logger.warning("no checkpoint in %s records a validation loss; using the newest", directory)
        return newest_first, "newest; none records a validation loss"
    return sorted(losses, key=lambda step: (losses[step], -step)) + [s for s in newest_first if s not in losses], "best"


def load(path: Path, choice: str | int = "newest", *, config: Config | None = None,
         template: Any = None) -> Loaded:
    """Restore the checkpoint ``choice`` (``newest``, ``best`` or a step) under ``path``, falling back past damage.

    With ``config`` the checkpoint must have been made with the same model configuration, and ``template`` (the
    state tree, e.g. params and optimiser state of that config) gives the structure; without them both come from
    the checkpoint's own saved config. A chosen step number is never substituted.

    Raises:
        CheckpointError: nothing restores (every candidate's reason is in the message) or a model mismatch.
    """
    directory = checkpoints_dir(Path(path))
    candidates, chosen = _candidates(directory, choice)
    skipped: list[str] = []
    for step in candidates:
        try:
            meta = read_meta(directory, step)
            saved = config if config is not None else from_dict(meta["config"])
            check_compatible(saved, meta, directory / str(step))
            state = restore_state(directory, step, template if template is not None else initial_state(saved))
        except CorruptCheckpointError as error:
            if isinstance(choice, int):
                raise
            skipped.append(str(error))
            logger.warning("skipped %s", error)
            continue
        return Loaded(saved, state, step, chosen, meta.get("validation_loss"), skipped)
    raise CheckpointError(f"no checkpoint in {directory} restores: {'; '.join(skipped)}")


def initial_state(config: Config) -> dict[str, Any]:
    """The state tree of a fresh model and optimiser of ``config`` (the restore template)."""
    params, _ = modeling.init_model(config, jax.random.key(0))
    return state_tree(params, modeling.make_optimizer(config).init(params), 0)


def load_trained(path: Path, step: str | int = "newest") -> tuple[Config, Any, Any, Loaded]:
    """Load (config, params, static, loaded) from a run folder; the config comes from the checkpoint."""
    loaded = load(Path(path), step)
    _, static = modeling.init_model(loaded.config, jax.random.key(0))
    return loaded.config, loaded.state["params"], static, loaded
