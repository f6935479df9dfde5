"""The training loop: a jitted, data-parallel step, validation, metrics, progress and checkpoints.

One step: crop the batch, run the autoencoder on each example (``vmap``), take the multi-scale spectral loss against
the input audio, and apply ``clip_by_global_norm -> adam(exponential_decay)``. Everything a step depends on is a
pure function of (parameters, optimiser state, seed, step): the batch at step ``s`` and the per-step PRNG key
(``fold_in(key(seed), s)``) are recomputed on resume, which is why a resumed run ends bit-identical to an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ddsp_core.spectral import multiscale_spectral_loss
from train import modeling, parallel
from train.audio_io import dataset_statistics
from train.checkpoint import CheckpointError, Checkpointer, read_meta, restore_state
from train.config import Config, from_dict
from train.data import batch_iterator, load_split

logger = logging.getLogger(__name__)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """``clip_by_global_norm(grad_clip) -> adam(lr * decay_rate ** (step / decay_steps))`` (design.md 6)."""
    train = config.train
    schedule = optax.exponential_decay(train.learning_rate, train.decay_steps, train.decay_rate)
    return optax.chain(optax.clip_by_global_norm(train.grad_clip), optax.adam(schedule))


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
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def make_loss_fn(config: Config, static: Any) -> Callable:
    """``loss(params, batch, key) -> scalar``: mean multi-scale spectral loss over the batch."""
    forward = modeling.batch_forward(config, static)

    def loss_fn(params, batch, key):
        audio = forward(params, batch["f0_hz"], batch["loudness_db"], key)
        return multiscale_spectral_loss(batch["audio"], audio)

    return loss_fn


def make_train_step(
    config: Config, static: Any, optimizer: optax.GradientTransformation, mesh: jax.sharding.Mesh
) -> Callable:
    """Jitted ``step(params, opt_state, batch, key) -> (params, opt_state, loss)``.

    The batch is split over the mesh's data axis; parameters, optimiser state, key and loss are replicated. Fixing
    the shardings of inputs and outputs keeps every step on one compiled program.
    """
    loss_fn = make_loss_fn(config, static)
    replicated, split = parallel.replicated(mesh), parallel.batch_sharding(mesh)

    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss

    return jax.jit(
        step,
        in_shardings=(replicated, replicated, split, replicated),
        out_shardings=(replicated, replicated, replicated),
        donate_argnums=(0, 1),
    )


def validation_batch(dataset_dir: Path, config: Config) -> dict[str, np.ndarray]:
    """The fixed validation examples (first ``eval_examples`` of the validation split, centre-cropped)."""
    examples = load_split(dataset_dir, "validation")
    count = min(config.train.eval_examples, len(examples["audio"]))
    batch = {name: examples[name][:count] for name in ("audio", "f0_hz", "loudness_db", "f0_confidence")}
    crop = config.train.crop_samples
    if 0 < crop < batch["audio"].shape[-1]:
        batch = crop_batch(batch, crop, config.model.hop_size, np.random.default_rng(0))
    return batch


class MetricsLog:
    """Append-only JSON-lines metrics file (one object per line: step, split, values)."""

    def __init__(self, path: Path, *, truncate_after: int | None = None):
        self.path = path
        if truncate_after is not None and path.exists():
            kept = [
                line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= truncate_after
            ]
            _atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, **record: Any) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def fit(config: Config, dataset_dir: Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train ``config`` on the prepared dataset at ``dataset_dir``; return a summary dict.

    Writes ``<run_dir>/config.json``, ``metrics.jsonl`` and ``checkpoints/``. With ``resume`` the newest checkpoint
    in the run folder is restored (refused if it was made with another model configuration).
    """
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"run directory {run_dir} is a file; expected a folder (train run_dir=...)")
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)

    examples = load_split(dataset_dir, "train")
    if len(examples["audio"]) < config.train.batch_size:
        raise ValueError(
            f"the train split of {dataset_dir} has {len(examples['audio'])} examples, fewer than "
            f"train.batch_size={config.train.batch_size}"
        )
    validation = validation_batch(dataset_dir, config)

    params, static = modeling.init_model(config, jax.random.PRNGKey(config.train.seed))
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(params)
    start_step = 0

    run_dir.mkdir(parents=True, exist_ok=True)
    statistics = dataset_statistics(examples["f0_hz"], examples["f0_confidence"], examples["loudness_db"])
    _atomic_write_text(run_dir / "dataset_statistics.json", json.dumps(statistics, indent=2))
    checkpoints_dir = run_dir / "checkpoints"
    if resume:
        params, opt_state, start_step = _restore(config, checkpoints_dir, params, opt_state)
    elif checkpoints_dir.exists() and any(checkpoints_dir.iterdir()):
        raise CheckpointError(
            f"{checkpoints_dir} already holds checkpoints; pass --resume to continue or choose another run_dir"
        )
    _atomic_write_text(run_dir / "config.json", config.to_json())
    checkpointer = Checkpointer(checkpoints_dir, keep=config.train.keep_checkpoints)

    replicated = parallel.replicated(mesh)
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(opt_state, replicated)
    train_step = make_train_step(config, static, optimizer, mesh)
    eval_loss = jax.jit(make_loss_fn(config, static))
    validation_device = parallel.shard_batch(validation, mesh) if len(validation["audio"]) % mesh.devices.size == 0 \
        else {k: jnp.asarray(v) for k, v in validation.items()}
    eval_key = jax.random.PRNGKey(config.train.seed + 1)

    metrics = MetricsLog(run_dir / "metrics.jsonl", truncate_after=start_step if resume else -1)
    batches = _batches(config, examples, start_step)
    n_steps = config.train.n_steps
    history: dict[str, list] = {"val": []}
    if start_step == 0:
        initial = float(eval_loss(params, validation_device, eval_key))
        metrics.write(step=0, split="validation", loss=initial)
        history["val"].append((0, initial))
    bar = tqdm(total=n_steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
    last_time, last_step = time.perf_counter(), start_step
    loss = math.nan
    for step in range(start_step, n_steps):
        batch = parallel.shard_batch(next(batches), mesh)
        params, opt_state, loss_value = train_step(params, opt_state, batch, _step_key(config.train.seed, step))
        done = step + 1
        if done % config.train.log_every == 0 or done == n_steps:
            loss = float(loss_value)
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {done}; lower train.learning_rate")
            now = time.perf_counter()
            rate = (done - last_step) / max(now - last_time, 1e-9)
            last_time, last_step = now, done
            metrics.write(step=done, split="train", loss=loss, steps_per_s=rate)
            bar.set_postfix(loss=f"{loss:.3f}", steps_per_s=f"{rate:.2f}")
        if done % config.train.eval_every == 0 or done == n_steps:
            value = float(eval_loss(params, validation_device, eval_key))
            metrics.write(step=done, split="validation", loss=value)
            history["val"].append((done, value))
            bar.write(f"step {done}: validation spectral loss {value:.4f}")
        if done % config.train.checkpoint_every == 0 or done == n_steps:
            checkpointer.save(done, _state_tree(params, opt_state, done), _meta(config, done))
        bar.update(1)
    bar.close()
    checkpointer.close()
    return {"run_dir": str(run_dir), "final_train_loss": loss, "validation": history["val"], "step": n_steps}


def _batches(config: Config, examples: dict[str, np.ndarray], start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Host batches from ``start_step`` on; batch and crop at step s depend only on (seed, s)."""
    n_processes, process = jax.process_count(), jax.process_index()
    local_batch = config.train.batch_size // n_processes
    iterator = batch_iterator(
        {name: examples[name] for name in ("audio", "f0_hz", "loudness_db", "f0_confidence")},
        local_batch,
        seed=config.train.seed,
        start_step=start_step,
        shard_index=process,
        shard_count=n_processes,
    )
    for step, batch in enumerate(iterator, start=start_step):
        rng = np.random.default_rng([config.train.seed, step])
        yield crop_batch(batch, config.train.crop_samples, config.model.hop_size, rng)


def _state_tree(params: Any, opt_state: Any, step: int) -> dict[str, Any]:
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(step, jnp.int32)}


def _meta(config: Config, step: int) -> dict[str, Any]:
    return {
        "config": config.to_dict(),
        "model_fingerprint": config.model_fingerprint(),
        "step": step,
        "data_position": {"seed": config.train.seed, "step": step},
    }


def check_compatible(config: Config, meta: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint made with another model configuration, naming the fields that differ."""
    if meta.get("model_fingerprint") == config.model_fingerprint():
        return
    saved = meta.get("config", {}).get("model", {})
    ours = config.to_dict()["model"]
    differences = [f"model.{k}: checkpoint {saved.get(k)!r} vs config {ours[k]!r}" for k in ours if saved.get(k) != ours[k]]
    raise CheckpointError(
        f"checkpoint {where} was made with another model configuration ({'; '.join(differences) or 'unknown'})"
    )


def _restore(config: Config, checkpoints_dir: Path, params: Any, opt_state: Any) -> tuple[Any, Any, int]:
    if not checkpoints_dir.is_dir() or not any(checkpoints_dir.iterdir()):
        raise CheckpointError(f"--resume: no checkpoint in {checkpoints_dir}")
    directory, step, meta = read_meta(checkpoints_dir)
    check_compatible(config, meta, directory / str(step))
    template = _state_tree(params, opt_state, 0)
    state = restore_state(directory, step, template)
    logger.info("resumed from %s at step %d", directory, step)
    return state["params"], state["opt_state"], int(state["step"])


def load_trained(path: Path, config: Config | None = None) -> tuple[Config, Any, Any]:
    """Load (config, params, static) from a run folder or checkpoint; the config comes from the checkpoint."""
    directory, step, meta = read_meta(path)
    saved = from_dict(meta["config"])
    if config is not None:
        check_compatible(config, meta, directory / str(step))
    params, static = modeling.init_model(saved, jax.random.PRNGKey(0))
    optimizer = make_optimizer(saved)
    template = _state_tree(params, optimizer.init(params), 0)
    state = restore_state(directory, step, template)
    return saved, state["params"], static


def first_step_loss(config: Config, dataset_dir: Path | str) -> float:
    """Loss of the first training batch at initialisation, computed on every local device (for parity checks)."""
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    params, static = modeling.init_model(config, jax.random.PRNGKey(config.train.seed))
    params = jax.device_put(params, parallel.replicated(mesh))
    batch = parallel.shard_batch(next(_batches(config, load_split(Path(dataset_dir), "train"), 0)), mesh)
    loss_fn = jax.jit(make_loss_fn(config, static))
    return float(loss_fn(params, batch, _step_key(config.train.seed, 0)))
