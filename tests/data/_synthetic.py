"""A small prepared dataset with synthetic arrays (no rendering, no CREPE), for format and batching tests."""

from pathlib import Path

import numpy as np

from train.data.dataset import SPLITS, write_prepared


def synthetic_split(n_examples: int, *, n_samples: int = 640, offset: int = 0) -> dict[str, np.ndarray]:
    """Arrays in the prepared format whose ``pitch`` column numbers the examples ``offset, offset + 1, ...``."""
    rng = np.random.default_rng(offset)
    n_frames = n_samples // 64
    return {
        "audio": rng.uniform(-0.5, 0.5, (n_examples, n_samples)).astype(np.float32),
        "f0_hz": rng.uniform(100, 400, (n_examples, n_frames)).astype(np.float32),
        "f0_confidence": rng.uniform(0, 1, (n_examples, n_frames)).astype(np.float32),
        "loudness_db": rng.uniform(-80, 0, (n_examples, n_frames)).astype(np.float32),
        "pitch": np.arange(offset, offset + n_examples, dtype=np.int32),
        "velocity": np.full(n_examples, 100, np.int32),
        "instrument": np.asarray([f"synthetic_{i % 3}" for i in range(n_examples)], dtype=str),
        "family": np.asarray(["string"] * n_examples, dtype=str),
        "id": np.asarray([f"note-{offset + i:04d}" for i in range(n_examples)], dtype=str),
    }


def folder_bytes(path: Path) -> dict[str, bytes]:
    """Every file under a prepared dataset folder (the feature cache left out), relative path to its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.relative_to(path).parts[0] != "cache"}


def write_synthetic_dataset(path: Path, counts: dict[str, int], *, n_samples: int = 640, shard_size: int = 4) -> Path:
    """Write a prepared dataset with ``counts[split]`` synthetic examples per split (disjoint ``pitch`` numbers),
    in shards of ``shard_size`` examples."""
    splits, offset = {}, 0
    for name in SPLITS:
        splits[name] = synthetic_split(counts.get(name, 0), n_samples=n_samples, offset=offset)
        offset += counts.get(name, 0)
    manifest = {"source": "synthetic", "sample_rate": 16000, "hop_size": 64, "n_samples": n_samples}
    return write_prepared(path, splits, manifest, shard_size=shard_size)
