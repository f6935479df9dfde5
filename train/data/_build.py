"""The last steps every ``prepare_*`` shares: features, splits, manifest, atomic write; and the up-to-date check."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from train.data.dataset import ARRAY_FIELDS, SPLITS, DataError, assign_splits, load_manifest, write_prepared
from train.data.features import FeatureConfig, cached_features

logger = logging.getLogger(__name__)

SPLIT_RULE = (
    "examples sharing a group (offline: program and pitch; folder: source file region; nsynth: its own split) "
    "go to one split; distinct groups ordered by sha256, first ~10% test, next ~10% validation, rest train"
)


def _as_json(document: Mapping[str, Any]) -> Any:
    """``document`` as it reads back from JSON (tuples become lists), for comparing with a stored manifest."""
    return json.loads(json.dumps(document))


def is_up_to_date(out_dir: Path, build: Mapping[str, Any]) -> bool:
    """Whether ``out_dir`` holds a complete dataset whose manifest records exactly this ``build``."""
    try:
        manifest = load_manifest(out_dir)
    except DataError:
        return False
    return manifest.get("build") == _as_json(build) and all((Path(out_dir) / f"{name}.npz").is_file() for name in SPLITS)


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
) -> Path:
    """Label ``examples`` with f0/loudness (cached), split them by ``group`` and write the prepared dataset.

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
    n_samples = examples["audio"].shape[1]
    cache_dir = out_dir / "cache" if cache_dir is None else Path(cache_dir)
    features = cached_features(
        examples["audio"],
        feature_config,
        cache_dir=cache_dir,
        include_f0="f0_hz" not in examples,
        progress=progress,
    )
    if "f0_hz" in examples:
        features["f0_hz"] = np.asarray(examples["f0_hz"], np.float32)
        features["f0_confidence"] = np.asarray(examples["f0_confidence"], np.float32)
    groups = examples["group"].tolist()
    if split_of_group is None:
        split_of_group = assign_splits(groups)
    columns = {**{key: examples[key] for key in ARRAY_FIELDS if key in examples}, **features}
    splits = {}
    for name in SPLITS:
        rows = np.asarray([i for i, group in enumerate(groups) if split_of_group[group] == name], np.int64)
        splits[name] = {key: np.asarray(columns[key])[rows] for key in ARRAY_FIELDS}
    manifest = {
        "build": _as_json(build),
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
    return write_prepared(out_dir, splits, manifest)
