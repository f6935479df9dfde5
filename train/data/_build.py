"""The steps every ``prepare_*`` shares: features per shard, splits, resumable shard writes, manifest last.

A build streams: examples arrive split by split in chunks of ``shard_size``; each chunk gets its features (CREPE
f0 and confidence unless the source gives f0, and loudness), batched and cached, and is written as one shard. Memory
holds one chunk at a time. The build id (a hash of what determines the content, with the shard size) is written into
every shard; an interrupted build skips the shards that already carry it, and ``manifest.json`` is written last.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from train.data.dataset import (
    ARRAY_FIELDS,
    SHARD_SIZE,
    SPLITS,
    DataError,
    assign_splits,
    build_id,
    completed_shards,
    finish_build,
    load_manifest,
    start_build,
    write_shard,
)
from train.data.features import FeatureConfig, cached_features

logger = logging.getLogger(__name__)

SPLIT_RULE = (
    "examples sharing a group (offline: program and pitch; folder: source file region; nsynth: its own split) "
    "go to one split; distinct groups ordered by sha256, first ~10% test, next ~10% validation, rest train"
)

ChunkSource = Callable[[int], Iterable[Mapping[str, np.ndarray]]]
"""``skip -> chunks``: a split's examples after the first ``skip``, as dicts of stacked arrays (any chunk sizes)."""


def _as_json(document: Mapping[str, Any]) -> Any:
    """``document`` as it reads back from JSON (tuples become lists), for comparing with a stored manifest."""
    return json.loads(json.dumps(document))


def is_up_to_date(out_dir: Path, build: Mapping[str, Any]) -> bool:
    """Whether ``out_dir`` holds a complete dataset (current format) whose manifest records exactly this ``build``."""
    try:
        manifest = load_manifest(out_dir)
    except DataError:
        return False
    return manifest.get("build") == _as_json(build)


def _rechunk(chunks: Iterable[Mapping[str, np.ndarray]], size: int) -> Iterator[dict[str, np.ndarray]]:
    """Re-cut a stream of stacked chunks into chunks of exactly ``size`` rows (the last may be shorter)."""
    pending: list[Mapping[str, np.ndarray]] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk["audio"])
        while held >= size:
            joined = {key: np.concatenate([part[key] for part in pending]) for key in pending[0]}
            yield {key: value[:size] for key, value in joined.items()}
            rest = {key: value[size:] for key, value in joined.items()}
            held -= size
            pending = [rest] if held else []
    if held:
        yield {key: np.concatenate([part[key] for part in pending]) for key in pending[0]}


def _with_features(
    chunk: Mapping[str, np.ndarray], feature_config: FeatureConfig, cache_dir: Path
) -> dict[str, np.ndarray]:
    """``chunk`` with f0, confidence (CREPE, unless the chunk has them) and loudness added."""
    has_f0 = "f0_hz" in chunk
    features = cached_features(chunk["audio"], feature_config, cache_dir=cache_dir, include_f0=not has_f0)
    if has_f0:
        features["f0_hz"] = np.asarray(chunk["f0_hz"], np.float32)
        features["f0_confidence"] = np.asarray(chunk["f0_confidence"], np.float32)
    return {**{key: chunk[key] for key in ARRAY_FIELDS if key in chunk}, **features}


def build_sharded(
    out_dir: Path,
    sources: Mapping[str, ChunkSource],
    *,
    build: Mapping[str, Any],
    manifest: Mapping[str, Any],
    feature_config: FeatureConfig,
    cache_dir: Path | None,
    progress: bool,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Write a prepared dataset shard by shard from per-split example streams; resumable; manifest last.

    Parameters
    ----------
    out_dir
        Dataset folder.
    sources
        Split name to a :data:`ChunkSource` (must be deterministic: on resume it is asked to skip the examples
        already written). Chunks hold ``audio`` (n, n_samples) float32, ``pitch``, ``velocity``, ``instrument``,
        ``family``, ``id`` and optionally ``f0_hz``/``f0_confidence`` (then CREPE is not run for them).
    build
        What determines the content; stored as ``manifest["build"]``; with ``shard_size`` it gives the build id.
    manifest
        Other manifest fields (sample rate, sizes, details, skipped inputs).
    shard_size
        Examples per shard.

    Raises
    ------
    DataError
        If no split yields any example.
    """
    out_dir = Path(out_dir)
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    identity = build_id({"build": _as_json(build), "shard_size": shard_size})
    cache_dir = out_dir / "cache" if cache_dir is None else Path(cache_dir)
    start_build(out_dir)
    shards: dict[str, list[dict[str, Any]]] = {}
    for split in SPLITS:
        shards[split] = done = completed_shards(out_dir, split, build=identity)
        skip = sum(entry["count"] for entry in done)
        if done:
            logger.info("%s: resuming %s after %d complete shards (%d examples)", out_dir, split, len(done), skip)
        chunks = _rechunk(sources[split](skip), shard_size)
        bar = tqdm(desc=f"prepare {split}", unit="example", initial=skip, disable=not progress)
        for chunk in chunks:
            arrays = _with_features(chunk, feature_config, cache_dir)
            done.append(write_shard(out_dir, split, len(done), arrays, build=identity,
                                    hop_size=feature_config.hop_size))
            bar.update(len(chunk["audio"]))
        bar.close()
    if not any(shards.values()):
        raise DataError(f"{out_dir}: nothing usable to write (no example in any split)")
    return finish_build(out_dir, shards, {"build": _as_json(build), **manifest}, build=identity)


def build_dataset(
    out_dir: Path,
    examples: Mapping[str, np.ndarray],
    *,
    build: Mapping[str, Any],
    details: Mapping[str, Any],
    skipped: list[dict[str, str]],
    feature_config: FeatureConfig,
    cache_dir: Path | None,
    progress: bool,
    split_of_group: Mapping[str, str] | None = None,
    shard_size: int = SHARD_SIZE,
) -> Path:
    """Split in-memory ``examples`` by ``group``, then label and write them shard by shard (:func:`build_sharded`).

    Parameters
    ----------
    examples
        ``audio`` (N, n_samples) float32, ``pitch``, ``velocity``, ``instrument``, ``family``, ``id`` and ``group``
        (N,); optionally ``f0_hz``/``f0_confidence`` (N, n_frames) given by the source (then CREPE is not run).
    build
        What determines the content (source, preset, checksums, feature config); stored as ``manifest["build"]``.
    details
        Extra manifest fields (programs, pitches, velocities, files...).
    skipped
        ``{"id"/"file", "reason"}`` per input left out; stored in the manifest.
    split_of_group
        Group to split; default :func:`assign_splits` over the groups.

    Raises
    ------
    DataError
        If there is no example at all.
    """
    out_dir = Path(out_dir)
    n_examples = len(examples["audio"])
    if n_examples == 0:
        raise DataError(f"{out_dir}: nothing usable to write ({len(skipped)} inputs skipped: {skipped[:3]})")
    groups = examples["group"].tolist()
    if split_of_group is None:
        split_of_group = assign_splits(groups)
    columns = {key: value for key, value in examples.items() if key != "group"}

    def rows_of(split: str) -> ChunkSource:
        rows = np.asarray([i for i, group in enumerate(groups) if split_of_group[group] == split], np.int64)
        return lambda skip: ({key: np.asarray(value)[rows[skip:]] for key, value in columns.items()},)

    return build_sharded(
        out_dir,
        {split: rows_of(split) for split in SPLITS},
        build=build,
        manifest=describe(int(examples["audio"].shape[1]), feature_config, details=details, skipped=skipped),
        feature_config=feature_config,
        cache_dir=cache_dir,
        progress=progress,
        shard_size=shard_size,
    )


def describe(
    n_samples: int, feature_config: FeatureConfig, *, details: Mapping[str, Any], skipped: list[dict[str, str]]
) -> dict[str, Any]:
    """The manifest fields every build writes besides ``build``: rates, sizes, extractor, split rule, skipped."""
    return {
        **details,
        "sample_rate": feature_config.sample_rate,
        "n_samples": int(n_samples),
        "hop_size": feature_config.hop_size,
        "frame_rate": feature_config.sample_rate // feature_config.hop_size,
        "n_frames": int(n_samples // feature_config.hop_size),
        "feature_extractor": feature_config.to_dict(),
        "split_rule": SPLIT_RULE,
        "skipped": list(skipped),
    }


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` consecutive items (the last may be shorter)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
