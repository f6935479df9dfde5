"""Data path at scale: peak memory of ``prepare`` and of the training loader against dataset size, loader speed.

Usage::

    python benchmarks/data.py                          # 1 GB and 8 GB datasets under /tmp/ddsp-data-bench
    python benchmarks/data.py --sizes-gb 0.25 --seconds 5 --root /tmp/x    # quick look

For each size it generates harmonic notes of known f0 (4 s, 16 kHz, float32: 256 KB of audio per note, so 1 GB is
4,096 notes), and prepares them with the streaming builder (``train.data._build.build_sharded``: f0 given, so
CREPE is skipped; loudness computed; shards of 256 notes), then runs the training loader
(``train.data.loader.prefetching_batches``, batches of 32, the fields ``fit`` reads) for ``--seconds`` with 1, 2
and 4 reader threads. Each measurement runs in its own process, whose peak resident memory (``ru_maxrss``) is
reported beside the same process's resident memory right after its imports. The datasets stay under ``--root``
(outside git; delete them afterwards). Reads come from whatever the page cache holds (the machine is shared; caches
are not dropped).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BYTES_PER_NOTE = 64000 * 4
FIELDS = ("audio", "f0_hz", "loudness_db", "f0_confidence")


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _base_notes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct 4 s harmonic notes (5 partials, decaying) and their f0 in Hz."""
    rng = np.random.default_rng(seed)
    pitches = rng.integers(36, 85, count)
    f0_hz = 440.0 * 2.0 ** ((pitches - 69) / 12)
    time_s = np.arange(64000) / 16000
    envelope = np.minimum(time_s / 0.02, 1.0) * np.exp(-time_s / 1.5)
    audio = sum(0.3 / k * np.sin(2 * np.pi * k * f0_hz[:, None] * time_s) for k in range(1, 6)) * envelope
    return audio.astype(np.float32), f0_hz.astype(np.float32)


def _note_chunks(n_notes: int, skip: int, chunk: int = 64):
    """Chunks of generated notes from number ``skip`` on: base note ``i % 128`` with its own gain and id."""
    base_audio, base_f0 = _base_notes(128, seed=0)
    for start in range(skip, n_notes, chunk):
        index = np.arange(start, min(start + chunk, n_notes))
        gain = (0.5 + 0.5 * ((index * 7919) % 1000) / 1000).astype(np.float32)
        yield {
            "audio": base_audio[index % 128] * gain[:, None],
            "f0_hz": np.repeat(base_f0[index % 128][:, None], 1000, axis=1),
            "f0_confidence": np.ones((len(index), 1000), np.float32),
            "pitch": np.full(len(index), -1, np.int32),
            "velocity": np.full(len(index), -1, np.int32),
            "instrument": np.full(len(index), "bench", dtype="<U5"),
            "family": np.full(len(index), "", dtype="<U1"),
            "id": np.asarray([f"note-{i:07d}" for i in index]),
        }


def worker_prepare(out_dir: Path, n_notes: int) -> dict:
    from train.data import _build
    from train.data.features import FeatureConfig

    baseline = _rss_mb()
    config = FeatureConfig(crepe_model="tiny", batch_size=16)
    nothing = lambda skip: iter(())  # noqa: E731
    started = time.perf_counter()
    _build.build_sharded(
        out_dir, {"train": lambda skip: _note_chunks(n_notes, skip), "validation": nothing, "test": nothing},
        build={"source": "benchmark", "notes": n_notes},
        manifest=_build.describe(64000, config, details={}, skipped=[]),
        feature_config=config, cache_dir=None, progress=False,
    )
    seconds = time.perf_counter() - started
    return {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "seconds": seconds, "notes_per_s": n_notes / seconds}


def worker_load(dataset_dir: Path, workers: int, seconds: float, batch_size: int) -> dict:
    from train.data.dataset import open_split
    from train.data.loader import prefetching_batches

    reader = open_split(dataset_dir, "train")
    baseline = _rss_mb()
    batches = prefetching_batches(reader, batch_size, seed=0, fields=FIELDS, workers=workers, prefetch=2 * workers)
    next(batches)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = next(batches)
        count += len(batch["audio"])
    elapsed = time.perf_counter() - started
    return {"baseline_mb": baseline, "peak_mb": _peak_rss_mb(), "examples_per_s": count / elapsed,
            "mb_per_s": count * (BYTES_PER_NOTE + 3 * 4000) / elapsed / 1e6}


def _run_worker(*arguments: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *arguments], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {arguments} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 8.0], help="GiB of audio per dataset")
    parser.add_argument("--root", type=Path, default=Path("/tmp/ddsp-data-bench"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=10.0, help="loader run time per measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the generated datasets")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "prepare":
            result = worker_prepare(Path(rest[0]), int(rest[1]))
        else:
            result = worker_load(Path(rest[0]), int(rest[1]), float(rest[2]), int(rest[3]))
        print(json.dumps(result))
        return

    free_gb = shutil.disk_usage(args.root.parent).free / 2**30
    needed_gb = sum(args.sizes_gb) * (1 + 12 / 256)
    if needed_gb > free_gb - 2:
        raise SystemExit(f"{args.root.parent}: {free_gb:.0f} GiB free, the datasets need about {needed_gb:.1f} GiB")
    rows = []
    for size_gb in args.sizes_gb:
        n_notes = int(round(size_gb * 2**30 / BYTES_PER_NOTE))
        out_dir = args.root / f"{size_gb:g}gb"
        prepared = _run_worker("prepare", str(out_dir), str(n_notes))
        on_disk = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file()) / 2**30
        loads = {w: _run_worker("load", str(out_dir), str(w), str(args.seconds), str(args.batch_size))
                 for w in args.workers}
        rows.append((size_gb, n_notes, on_disk, prepared, loads))
        if not args.keep:
            shutil.rmtree(out_dir)

    threads = ",".join(map(str, args.workers))
    print(f"{'dataset':>8} {'notes':>7} {'on disk':>8} | {'prepare':>8} {'notes/s':>8} {'peak RSS':>9} "
          f"{'after imports':>13} | {'loader peak RSS (threads ' + threads + ')':>34}")
    for size_gb, n_notes, on_disk, prepared, loads in rows:
        peaks = ", ".join(f"{loads[w]['peak_mb']:.0f}" for w in args.workers)
        print(f"{size_gb:>5g}GiB {n_notes:>7} {on_disk:>5.2f}GiB | {prepared['seconds']:>7.0f}s "
              f"{prepared['notes_per_s']:>8.1f} {prepared['peak_mb']:>7.0f}MB {prepared['baseline_mb']:>11.0f}MB | "
              f"{peaks:>31} MB")
    print()
    print(f"loader, batch {args.batch_size}, fields {', '.join(FIELDS)} (4 s examples), {args.seconds:g} s per run")
    print(f"{'dataset':>8} {'threads':>8} {'examples/s':>11} {'MB/s':>8} {'peak RSS':>9} {'after open':>11}")
    for size_gb, _, _, _, loads in rows:
        for workers, load in loads.items():
            print(f"{size_gb:>5g}GiB {workers:>8} {load['examples_per_s']:>11.0f} {load['mb_per_s']:>8.0f} "
                  f"{load['peak_mb']:>7.0f}MB {load['baseline_mb']:>9.0f}MB")


if __name__ == "__main__":
    main()
