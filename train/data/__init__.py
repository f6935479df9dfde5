"""Training data: prepared datasets from SoundFont-rendered notes, NSynth, or a folder of the user's audio.

Every source ends as the same prepared folder (``manifest.json`` + ``.npy`` shards per split, written incrementally
and read with bounded memory; see :mod:`ddsp_datarax.shards` for the layout and :mod:`train.data.dataset` for the
arrays): 4 s examples at 16 kHz with CREPE f0, confidence and A-weighted
loudness at 250 frames/s (``n_frames = n_samples // 64``), plus pitch, velocity, instrument, family and id.

- :func:`prepare_offline` renders NSynth-style notes from the GM SoundFont shipped with ``pretty_midi``
  (presets ``tiny``, ``demo``, ``full``; :mod:`train.data.offline`).
- :func:`prepare_nsynth` / :func:`prepare_nsynth_tfrecords` read NSynth through tensorflow-datasets or its raw
  TFRecords (:mod:`train.data.nsynth`).
- :func:`prepare_folder` cuts a folder of WAV/FLAC/OGG recordings into examples (:mod:`train.data.folder`).
- :func:`open_split` opens a split for random access, :func:`load_split` reads (part of) one into memory;
  :func:`batch_iterator` and :func:`~train.data.loader.prefetching_batches` yield shuffled numpy batches forever,
  the batch of global step ``s`` depending only on ``(seed, s)`` (exact resume). :mod:`ddsp_datarax.sources` gives
  the same batches through datarax.

Features are computed once per source, batched and jitted, and cached atomically (:mod:`train.data.features`).
Every ``prepare_*`` returns at once when its folder already holds a dataset built with the same settings.

Bad input, the rule:

- **A bad individual input is skipped**, with a logged warning naming the file and what was expected, and an entry
  (file or id, reason) in the manifest's ``skipped`` list: a file that is not decodable audio, a truncated WAV, a
  file shorter than one example, a file with NaN/inf samples, a silent rendered note.
- **Nothing usable is an error**: an empty or missing folder, a folder where every file was skipped, an NSynth
  split that is not prepared, a cache or dataset file that exists but cannot be read, all raise :class:`DataError`
  (a ``ValueError``) naming the path and what was expected.
- **Nothing half-written remains**: every file is written to a temporary file in its folder and renamed into
  place, each shard's ``shard.json`` is written after its arrays, and ``manifest.json`` is written last (a folder
  without it is not a dataset); an interrupted ``prepare`` resumes from its last complete shard.
"""

from train.data.dataset import SPLITS, DataError, batch_iterator, load_manifest, load_split, open_split
from train.data.features import FeatureConfig, compute_features, extract_features
from train.data.folder import load_audio, prepare_folder
from train.data.nsynth import prepare_nsynth, prepare_nsynth_tfrecords
from train.data.offline import PRESETS, prepare_offline, render_preset

__all__ = [
    "DataError",
    "FeatureConfig",
    "PRESETS",
    "SPLITS",
    "batch_iterator",
    "compute_features",
    "extract_features",
    "load_audio",
    "load_manifest",
    "load_split",
    "open_split",
    "prepare_folder",
    "prepare_nsynth",
    "prepare_nsynth_tfrecords",
    "prepare_offline",
    "render_preset",
]
