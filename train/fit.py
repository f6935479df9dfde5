"""The training loop: a jitted, data-parallel step, validation, metrics, progress and checkpoints.

One step: crop the batch, run the autoencoder on each example (``vmap``), take the multi-scale spectral loss against
the input audio, and apply ``clip_by_global_norm -> adam(exponential_decay)``. Everything a step depends on is a
pure function of (parameters, optimiser state, seed, step): the batch at step ``s`` and the per-step PRNG key
(``fold_in(key(seed), s)``) are recomputed on resume, which is why a resumed run ends bit-identical to an
uninterrupted one.

Guards: each step also reports whether its loss, gradients and new parameters are all finite. The host reads
these flags (without waiting on every step) before each log line, validation and checkpoint, and stops the run
with :class:`FloatingPointError` naming the first non-finite step; no checkpoint is written after it, so the last
good one stays the newest. Whenever validation improves, the step is checkpointed and kept as ``best``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ddsp_core._io import write_text_atomic
from ddsp_datarax.shards import SplitReader
from train import modeling, parallel
from train.checkpoint import (
    CheckpointError,
    Checkpointer,
    CorruptCheckpointError,
    list_steps,
    load,
    read_meta,
    remove_incomplete,
    set_aside,
    state_tree,
)
from train.config import Config
from train.data import load_split, open_split
from train.data.dataset import read_spread
from train.data.loader import prefetching_batches
from train.data.statistics import STATISTICS_NAME, dataset_statistics

logger = logging.getLogger(__name__)

STATISTICS_EXAMPLES = 4096
"""Training examples (spread over the split) that give the pitch and loudness statistics timbre transfer uses."""

FEATURES = ("audio", "f0_hz", "loudness_db", "f0_confidence")


def crop_batch(batch: dict[str, np.ndarray], crop_samples: int, hop_size: int, rng: np.random.Generator):
    """Cut the same random frame-aligned window of ``crop_samples`` from every example of ``batch``.

    ``crop_samples == 0`` keeps whole examples. Audio is cut in samples, frame features in frames.
    """
    n_samples = batch["audio"].shape[-1]
    if crop_samples <= 0 or crop_samples >= n_samples:
        return batch
    if crop_samples % hop_size:
        raise ValueError(f"train.crop_samples={crop_samples} must be a multiple of model.hop_size={hop_size}")
    n_frames = crop_samples // hop_size
    start_frame = int(rng.integers(0, n_samples // hop_size - n_frames + 1))
    cropped = dict(batch)
    cropped["audio"] = batch["audio"][:, start_frame * hop_size : start_frame * hop_size + crop_samples]
    for name in ("f0_hz", "loudness_db", "f0_confidence"):
        cropped[name] = batch[name][:, start_frame : start_frame + n_frames]
    return cropped


def _step_key(seed: int, step: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), step)


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def make_train_step(
    config: Config, static: Any, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh
) -> Callable:
    """Jitted ``step(params, opt_state, batch, key) -> (params, opt_state, loss, finite)``.

    ``finite`` is true when the loss, the gradients and the updated parameters are all finite. The batch is split
    over the mesh's data axis; everything else is replicated. Fixing the shardings of inputs and outputs keeps
    every step on one compiled program.
    """
    loss_fn = modeling.make_loss_fn(config, static)
    replicated, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)

    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
        return params, opt_state, loss, finite

    return jax.jit(
        step,
        in_shardings=(replicated, replicated, split, replicated),
        out_shardings=(replicated, replicated, replicated, replicated),
        donate_argnums=(0, 1),
    )


def validation_batch(dataset_dir: Path, config: Config) -> dict[str, np.ndarray]:
    """The fixed validation examples (first ``eval_examples`` of the validation split, centre-cropped)."""
    examples = load_split(dataset_dir, "validation", max_examples=config.train.eval_examples)
    count = len(examples["audio"])
    batch = {name: examples[name][:count] for name in FEATURES}
    crop = config.train.crop_samples
    if 0 < crop < batch["audio"].shape[-1]:
        batch = crop_batch(batch, crop, config.model.hop_size, np.random.default_rng(0))
    return batch


class MetricsLog:
    """Append-only JSON-lines metrics file (one object per line: step, split, values); ``path=None`` writes nothing
    (the processes other than 0)."""

    def __init__(self, path: Path | None, *, truncate_after: int):
        self.path = path
        if path is not None and path.exists():
            kept = [
                line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= truncate_after
            ]
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    def write(self, **record: Any) -> None:
        if self.path is None:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


@dataclass
class TrainState:
    """What the loop carries: parameters, optimiser state, the next step and the best validated checkpoint."""

    params: Any
    opt_state: Any
    step: int = 0
    best_step: int | None = None
    best_loss: float = math.inf
    pending_finite: list[tuple[int, jax.Array]] = field(default_factory=list)


def _check_inputs(config: Config, dataset_dir: Path) -> tuple[Path, SplitReader, dict[str, np.ndarray]]:
    """Validate the run folder and data before anything is written; return (run_dir, train split, validation)."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run directory {run_dir} is a file; expected a folder (train run_dir=...)")
    examples = open_split(dataset_dir, "train")
    if len(examples) < config.train.batch_size:
        raise ValueError(
            f"the train split of {dataset_dir} has {len(examples)} examples, fewer than one global batch "
            f"(train.batch_size={config.train.batch_size})"
        )
    validation = validation_batch(dataset_dir, config)
    if len(validation["audio"]) == 0:
        logger.warning("the validation split of %s is empty: no validation loss, 'best' is the newest", dataset_dir)
    return run_dir, examples, validation


def _refuse_existing_checkpoints(checkpoints_dir: Path) -> None:
    steps = list_steps(checkpoints_dir)
    if steps:
        raise CheckpointError(
            f"{checkpoints_dir} already holds checkpoints (steps {steps}); pass --resume to continue or choose "
            "another run_dir"
        )


def _resume(config: Config, checkpoints_dir: Path, fresh: TrainState) -> TrainState:
    """Restore the newest checkpoint that restores; set aside newer corrupt ones; recover the best step.

    With no complete checkpoint at all (a run killed before or during its first save) the run starts at step 0.
    """
    if not list_steps(checkpoints_dir):
        logger.warning("--resume: no complete checkpoint in %s; starting from step 0", checkpoints_dir)
        return fresh
    loaded = load(checkpoints_dir, "newest", config=config, template=state_tree(fresh.params, fresh.opt_state, 0))
    for step in list_steps(checkpoints_dir):
        if step > loaded.step:
            set_aside(checkpoints_dir, step)
    state = TrainState(loaded.state["params"], loaded.state["opt_state"], int(loaded.state["step"]))
    for step in list_steps(checkpoints_dir):
        try:
            loss = read_meta(checkpoints_dir, step).get("validation_loss")
        except CorruptCheckpointError:
            continue
        if loss is not None and loss < state.best_loss:
            state.best_step, state.best_loss = step, loss
    logger.warning("resumed from %s/%d", checkpoints_dir, loaded.step)
    return state


def _write_run_files(run_dir: Path, config: Config, examples: SplitReader, *, resume: bool) -> None:
    """The run's config and the training set's statistics (kept as they are when resuming a run that has them);
    written by process 0 only."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not parallel.is_writer():
        return
    statistics_path = run_dir / STATISTICS_NAME
    if not (resume and statistics_path.exists()):
        sample = read_spread(examples, ("f0_hz", "f0_confidence", "loudness_db"), STATISTICS_EXAMPLES)
        statistics = dataset_statistics(sample["f0_hz"], sample["f0_confidence"], sample["loudness_db"])
        write_text_atomic(statistics_path, json.dumps(statistics, indent=2))
    write_text_atomic(run_dir / "config.json", config.to_json())
    write_text_atomic(run_dir / "config.toml", config.to_toml())


def _prepare_state(config: Config, run_dir: Path, *, resume: bool) -> tuple[TrainState, Any]:
    """A fresh state, or the resumed one; refuses to start over a run that already has checkpoints."""
    params, static = modeling.init_model(config, jax.random.key(config.train.seed))
    fresh = TrainState(params, modeling.make_optimizer(config).init(params))
    checkpoints_dir = run_dir / "checkpoints"
    if not resume:
        _refuse_existing_checkpoints(checkpoints_dir)
        return fresh, static
    return _resume(config, checkpoints_dir, fresh), static


def fit(config: Config, dataset_dir: Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` on the prepared dataset at ``dataset_dir``; return a summary dict.

    Writes ``<run_dir>/config.json`` (and the same as ``config.toml``, for ``--config``), ``dataset_statistics.json``, ``metrics.jsonl`` and ``checkpoints/``, and
    only after every check passed. With ``resume`` the newest checkpoint that restores is used (refused if it
    was made with another model configuration).

    Raises:
        FloatingPointError: the loss, gradients or parameters became NaN or infinite (the message names the step).
    """
    parallel.check_same_config(config.to_json())
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    run_dir, examples, validation = _check_inputs(config, dataset_dir)
    state, static = _prepare_state(config, run_dir, resume=resume)
    if parallel.is_writer():
        remove_incomplete(run_dir / "checkpoints")
    _write_run_files(run_dir, config, examples, resume=resume)
    loop = _Loop(config, static, mesh, run_dir, validation, progress=progress)
    try:
        history = loop.run(state, _batches(config, examples, state.step))
    finally:
        loop.close()
    return {"run_dir": str(run_dir), "final_train_loss": loop.last_loss, "validation": history,
            "step": config.train.n_steps, "best_step": state.best_step}


class _Loop:
    """The compiled step and evaluation, the metrics file, the checkpointer and the progress bar of one run."""

    def __init__(self, config: Config, static: Any, mesh: Any, run_dir: Path, validation: dict, *, progress: bool):
        self.config, self.mesh, self.progress = config, mesh, progress
        self.train_step = make_train_step(config, static, modeling.make_optimizer(config), mesh)
        self.eval_loss = jax.jit(modeling.make_loss_fn(config, static))
        self.validation = None if len(validation["audio"]) == 0 else parallel.place_whole_batch(validation, mesh)
        self.eval_key = jax.random.key(config.train.seed + 1)
        self.checkpointer = Checkpointer(run_dir / "checkpoints", keep=config.train.keep_checkpoints)
        self.metrics_path = run_dir / "metrics.jsonl" if parallel.is_writer() else None
        self.last_loss = math.nan

    def run(self, state: TrainState, batches: Iterator[dict[str, np.ndarray]]) -> list[tuple[int, float]]:
        """Train from ``state.step`` to ``n_steps``; return the validation history ``[(step, loss)]``."""
        config = self.config
        state.params, state.opt_state = parallel.replicate_tree((state.params, state.opt_state), self.mesh)
        self.metrics = MetricsLog(self.metrics_path, truncate_after=state.step if state.step else -1)
        history: list[tuple[int, float]] = []
        if state.step == 0 and self.validation is not None:
            history.append((0, self._validate(state, 0)))
        n_steps = config.train.n_steps
        bar = tqdm(total=n_steps, initial=state.step, disable=not (self.progress and parallel.is_writer()), unit="step",
                   dynamic_ncols=True)
        self.clock = (time.perf_counter(), state.step)
        for step in range(state.step, n_steps):
            batch = parallel.shard_batch(next(batches), self.mesh)
            state.params, state.opt_state, loss, finite = self.train_step(
                state.params, state.opt_state, batch, _step_key(config.train.seed, step))
            state.pending_finite.append((step + 1, finite))
            state.step = step + 1
            self._after_step(state, loss, history, bar)
            bar.update(1)
        bar.close()
        return history

    def _after_step(self, state: TrainState, loss: jax.Array, history: list, bar: tqdm) -> None:
        """Log, validate and checkpoint as scheduled (each after checking that no step went non-finite)."""
        done, train, last = state.step, self.config.train, state.step == self.config.train.n_steps
        if done % train.log_every == 0 or last:
            self._check_finite(state)
            self._log(done, float(loss), bar)
        value = None
        if self.validation is not None and (done % train.eval_every == 0 or last):
            self._check_finite(state)
            value = self._validate(state, done)
            history.append((done, value))
            if parallel.is_writer():
                bar.write(f"step {done}: validation spectral loss {value:.4f}")
        improved = value is not None and value < state.best_loss
        if done % train.checkpoint_every == 0 or last or improved:
            self._check_finite(state)
            if improved:
                state.best_step, state.best_loss = done, value
            self.checkpointer.save(done, state_tree(state.params, state.opt_state, done),
                                   _meta(self.config, done, value), best_step=state.best_step)

    def _check_finite(self, state: TrainState) -> None:
        flags = [(step, bool(flag)) for step, flag in state.pending_finite]
        state.pending_finite.clear()
        bad = [step for step, finite in flags if not finite]
        if bad:
            kept = list_steps(self.checkpointer.directory)
            last_good = f"the last good checkpoint is step {kept[-1]}" if kept else "no checkpoint was written"
            raise FloatingPointError(
                f"training diverged at step {bad[0]}: the loss, gradients or parameters became NaN or infinite; "
                f"{last_good} in {self.checkpointer.directory}; lower train.learning_rate or train.grad_clip"
            )

    def _log(self, done: int, loss: float, bar: tqdm) -> None:
        now = time.perf_counter()
        started, first_step = self.clock
        rate = (done - first_step) / max(now - started, 1e-9)
        self.clock = (now, done)
        self.last_loss = loss
        self.metrics.write(step=done, split="train", loss=loss, steps_per_s=rate)
        bar.set_postfix(loss=f"{loss:.3f}", steps_per_s=f"{rate:.2f}")

    def _validate(self, state: TrainState, done: int) -> float:
        value = float(self.eval_loss(state.params, self.validation, self.eval_key))
        if not math.isfinite(value):
            raise FloatingPointError(f"the validation loss became {value} at step {done}; lower train.learning_rate")
        self.metrics.write(step=done, split="validation", loss=value)
        return value

    def close(self) -> None:
        self.checkpointer.close()


def _batches(config: Config, examples: SplitReader, start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """This process's host batches from ``start_step`` on (read ahead on background threads); batch and crop at
    step s depend only on (seed, s)."""
    n_processes, process = jax.process_count(), jax.process_index()
    local_batch = config.train.batch_size // n_processes
    iterator = prefetching_batches(
        examples,
        local_batch,
        seed=config.train.seed,
        fields=FEATURES,
        start_step=start_step,
        shard_index=process,
        shard_count=n_processes,
    )
    for step, batch in enumerate(iterator, start=start_step):
        rng = np.random.default_rng([config.train.seed, step])
        yield crop_batch(batch, config.train.crop_samples, config.model.hop_size, rng)


def _meta(config: Config, step: int, validation_loss: float | None) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "model_fingerprint": config.model_fingerprint(),
        "step": step,
        "data_position": {"seed": config.train.seed, "step": step},
        "validation_loss": validation_loss,
    }


def first_step_loss(config: Config, dataset_dir: Path | str) -> float:
    """Loss of the first training batch at initialisation, computed on every local device (for parity checks)."""
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    params, static = modeling.init_model(config, jax.random.key(config.train.seed))
    params = parallel.replicate_tree(params, mesh)
    batch = parallel.shard_batch(next(_batches(config, open_split(Path(dataset_dir), "train"), 0)), mesh)
    loss_fn = jax.jit(modeling.make_loss_fn(config, static))
    return float(loss_fn(params, batch, _step_key(config.train.seed, 0)))
