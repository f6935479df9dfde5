"""Sound quality in one run: our default model against magenta ddsp 3.7.0's own autoencoder, same data, same budget.

For each instrument (an offline SoundFont preset: ``demo`` = violin, ``trumpet`` = brass) and each seed, this

1. prepares the dataset once (``ddsp-train prepare``; reused when it exists) and hands its splits to the peer as
   ``train/validation/test.npz``;
2. trains our model with ``ddsp-train fit`` (the ``demo`` preset's sizes and budget: 800 steps, batch 8 of 1 s
   crops, 60 harmonics, hidden 256, IR 4000, lr 1e-3) and magenta's autoencoder with
   ``benchmarks/magenta_ae_peer.py`` in magenta's own venv, with the same steps, batch, crop and sizes;
3. scores both test-split resyntheses with our evaluator (``train.evaluate.score_resynthesis``: multi-scale
   spectral loss, loudness L1 in dB, f0 error of the resynthesis in cents, CREPE as the dataset's labels);
4. continues our run (``fit --resume``, bit-identical to one longer run) to the step count that takes as long as
   magenta's 800 steps took in this run (whole command wall-clock, each side's own), and scores that too.

``--ablations`` also trains the previous default with one change at a time on the ``demo`` set (decoder, loudness
reference, noise window, noise weight, initialisation, learning-rate schedule) and reports the newest and the
best-validation checkpoint of each.

Run from the repository root (magenta's venv as ``benchmarks/magenta_peer.py`` describes)::

    PYTHONPATH=. python benchmarks/quality.py --peer-python /tmp/magenta-venv/bin/python \\
        [--instruments demo,trumpet] [--seeds 0,1,2] [--ablations] [--work runs/quality]

Every finished run leaves a JSON file under ``--work``; running the command again reuses them (delete a file to
redo that run), so an interrupted benchmark continues where it stopped. The tables are printed and written to
``<work>/quality.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from train.config import apply_overrides, load_config_file

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = ROOT / "benchmarks" / "magenta_ae_peer.py"
PRESET_FILE = ROOT / "train" / "presets" / "demo.toml"

PREVIOUS_DEFAULT = (
    "model.decoder=linear",
    "model.loudness_ref_db=0.0",
    "model.processors.noise.window_size=257",
    "model.processors.noise.weight=0.1",
    "model.decoder_init=equinox",
    "train.decay_steps=1000",
    "train.decay_rate=0.98",
)
"""The demo preset before this benchmark changed it (the baseline of the ablations)."""

ABLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "previous default": ("previous", PREVIOUS_DEFAULT),
    "+ loudness reference 20.7 dB (magenta's)": ("loudness-ref", PREVIOUS_DEFAULT + ("model.loudness_ref_db=20.7",)),
    "+ learning rate decayed 10x over the 800 steps": (
        "lr-decay", PREVIOUS_DEFAULT + ("train.decay_steps=240", "train.decay_rate=0.5")),
    "+ noise weight 1.0 (magenta's Add)": ("noise-weight", PREVIOUS_DEFAULT + ("model.processors.noise.weight=1.0",)),
    "+ noise window 0 (magenta's)": ("noise-window", PREVIOUS_DEFAULT + ("model.processors.noise.window_size=0",)),
    "+ Keras initialisation (magenta's)": ("keras-init", PREVIOUS_DEFAULT + ("model.decoder_init=keras",)),
    "+ rnn_fc decoder (magenta's)": ("rnn-fc", PREVIOUS_DEFAULT + ("model.decoder=rnn_fc",)),
    "all of magenta's choices above at once": ("magenta-recipe", PREVIOUS_DEFAULT + (
        "model.decoder=rnn_fc", "model.loudness_ref_db=20.7", "model.processors.noise.window_size=0",
        "model.processors.noise.weight=1.0", "model.decoder_init=keras")),
    "+ staircase learning-rate decay (magenta's is continuous)": (
        "staircase", PREVIOUS_DEFAULT + ("train.decay_staircase=true",)),
    "default (this release)": ("default", ()),
}
"""Row name -> (run tag, ``--set`` overrides of the demo preset); each row changes one thing from the previous
default."""

METRICS = ("spectral_loss", "loudness_l1_db", "f0_error_cents")


def _run(command: list[str], log: Path) -> float:
    """Run a command with its output in ``log``; return its wall-clock seconds. Raises with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {code}); last lines of {log}:\n{tail}")
    return seconds


def _overrides(instrument: str, run_dir: Path, seed: int, n_steps: int, extra: tuple[str, ...]) -> list[str]:
    sets = [f"run_dir={run_dir}", f"data.offline_preset={instrument}", f"train.seed={seed}",
            f"train.n_steps={n_steps}", *extra]
    return [arg for value in sets for arg in ("--set", value)]


def _config(instrument: str):
    return apply_overrides(load_config_file(PRESET_FILE), [f"data.offline_preset={instrument}"])


def prepare(instrument: str, work: Path) -> tuple[Path, Path]:
    """Prepare the instrument's dataset (if needed) and its npz copy for the peer; return both folders."""
    from train.cli import dataset_dir
    from train.data import load_split

    config = _config(instrument)
    folder = ROOT / dataset_dir(config)
    if not (folder / "manifest.json").exists():
        _run([sys.executable, "-m", "train", "prepare", "--config", str(PRESET_FILE),
              "--set", f"data.offline_preset={instrument}"], work / "logs" / f"prepare-{instrument}.log")
    peer_data = work / "data" / instrument
    if not (peer_data / "test.npz").exists():
        peer_data.mkdir(parents=True, exist_ok=True)
        for split in ("train", "validation", "test"):
            arrays = load_split(folder, split)
            np.savez(peer_data / f"{split}.npz.tmp.npz",
                     **{key: arrays[key] for key in ("audio", "f0_hz", "loudness_db")})
            os.replace(peer_data / f"{split}.npz.tmp.npz", peer_data / f"{split}.npz")
    return folder, peer_data


def _score(dataset: Path, resynthesis, crepe_model: str) -> dict[str, float]:
    """Our evaluator's numbers for a test-split resynthesis: ``resynthesis(test) -> audio``."""
    from train.data import load_split
    from train.evaluate import score_resynthesis

    test = load_split(dataset, "test")
    numbers, _ = score_resynthesis(test, resynthesis(test).astype(np.float32), crepe_model=crepe_model)
    return numbers


def score_ours(run_dir: Path, dataset: Path, step: str) -> dict[str, float]:
    """Our evaluator's numbers for one checkpoint of a run."""
    from train.checkpoint import load_trained
    from train.evaluate import run_model

    config, params, static, loaded = load_trained(run_dir, step)
    numbers = _score(dataset, lambda test: run_model(params, static, test["f0_hz"], test["loudness_db"],
                                                     test["audio"])["audio"], config.data.crepe_model)
    return {**numbers, "step": loaded.step}


def _cached(path: Path, compute) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(result, indent=1))
    os.replace(path.with_suffix(".tmp"), path)
    return result


def _version(extra: tuple[str, ...]) -> str:
    """A short hash of what a run of ours trains (the model and training settings of the preset with the overrides,
    seed and length aside): a run is retrained when a preset change reaches it."""
    settings = apply_overrides(load_config_file(PRESET_FILE), list(extra)).to_dict()
    settings["train"] = {k: v for k, v in settings["train"].items() if k not in ("seed", "n_steps")}
    text = json.dumps({"model": settings["model"], "train": settings["train"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _name(instrument: str, tag: str, seed: int, extra: tuple[str, ...]) -> Path:
    """``instrument/tag/seed<seed>-<version>``: where a run of ours lives under ``runs/`` and ``results/``."""
    return Path(instrument) / tag / f"seed{seed}-{_version(extra)}"


def train_ours(instrument: str, seed: int, n_steps: int, extra: tuple[str, ...], dataset: Path, work: Path,
               tag: str) -> dict:
    """Train (or reuse) one run of ours; score its newest and best checkpoints."""
    name = _name(instrument, tag, seed, extra)
    run_dir = work / "runs" / name

    def compute() -> dict:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a run interrupted before its result was written
        wall = _run([sys.executable, "-m", "train", "fit", "--config", str(PRESET_FILE),
                     *_overrides(instrument, run_dir, seed, n_steps, extra)], run_dir.with_suffix(".log"))
        return {"wall_s": wall, "load": os.getloadavg(), "newest": score_ours(run_dir, dataset, "newest"),
                "best": score_ours(run_dir, dataset, "best")}

    return _cached(work / "results" / name.with_suffix(".json"), compute)


def extend_ours(instrument: str, seed: int, n_steps: int, extra: tuple[str, ...], dataset: Path, work: Path,
                tag: str) -> dict:
    """Continue a finished run of ours to ``n_steps`` (``fit --resume``) and score its newest and best checkpoints."""
    name = _name(instrument, tag, seed, extra)
    run_dir = work / "runs" / name

    def compute() -> dict:
        wall = _run([sys.executable, "-m", "train", "fit", "--resume", "--config", str(PRESET_FILE),
                     *_overrides(instrument, run_dir, seed, n_steps, extra)], run_dir.with_suffix(".resume.log"))
        return {"extra_wall_s": wall, "n_steps": n_steps, "load": os.getloadavg(),
                "newest": score_ours(run_dir, dataset, "newest"), "best": score_ours(run_dir, dataset, "best")}

    return _cached(work / "results" / f"{name}-equal-wall-clock.json", compute)


def train_magenta(instrument: str, seed: int, n_steps: int, peer_python: str, peer_data: Path, dataset: Path,
                  work: Path) -> dict:
    """Train (or reuse) magenta's autoencoder with the demo preset's sizes; score its test resynthesis."""
    out = work / "runs" / instrument / "magenta" / f"seed{seed}"

    def compute() -> dict:
        config = _config(instrument)
        harmonic, reverb = config.model.processor("harmonic"), config.model.processor("reverb")
        command = [peer_python, str(PEER_SCRIPT), str(peer_data), str(out), "--steps", str(n_steps),
                   "--batch", str(config.train.batch_size), "--crop", str(config.train.crop_samples),
                   "--harmonics", str(harmonic["n_harmonics"]), "--hidden", str(config.model.hidden_size),
                   "--ir", str(reverb["ir_length"]), "--lr", str(config.train.learning_rate), "--seed", str(seed)]
        wall = _run(command, out.with_suffix(".log"))
        history = json.loads((out / "history.json").read_text())
        with np.load(out / "test_resynthesis.npz") as saved:
            audio = saved["audio"]
        return {"wall_s": wall, "load": os.getloadavg(), "train_wall_s": history["timing"]["train_wall_s"],
                "newest": _score(dataset, lambda test: audio, config.data.crepe_model)}

    return _cached(work / "results" / instrument / "magenta" / f"seed{seed}.json", compute)


def _cell(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _row(name: str, results: list[dict], which: str, extra: str = "") -> str:
    cells = [_cell([r[which][m] for r in results]) for m in METRICS]
    return f"| {name} | {' | '.join(cells)} | {extra} |"


def ablation_table(args: argparse.Namespace, work: Path) -> list[str]:
    """Train each row of :data:`ABLATIONS` on the demo set; return the table's lines."""
    dataset, _ = prepare("demo", work)
    ablation_seeds = [int(s) for s in args.ablation_seeds.split(",")]
    lines = [f"Ablations on demo (seeds {args.ablation_seeds}), newest / best-validation checkpoint:", "",
             "| change | spectral loss | loudness L1 dB | f0 error cents | best: spectral, loudness |",
             "|---|---:|---:|---:|---:|"]
    for name, (tag, extra) in ABLATIONS.items():
        if args.ablation_tags and tag not in args.ablation_tags.split(","):
            continue
        results = [train_ours("demo", seed, args.steps, extra, dataset, work, tag) for seed in ablation_seeds]
        best = f"{_cell([r['best']['spectral_loss'] for r in results])}, " \
               f"{_cell([r['best']['loudness_l1_db'] for r in results])}"
        lines.append(_row(name, results, "newest", best))
        print(lines[-1], flush=True)
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", required=True, help="python of magenta's venv (benchmarks/magenta_peer.py)")
    parser.add_argument("--instruments", default="demo,trumpet", help="offline presets, comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the comparison, comma-separated")
    parser.add_argument("--steps", type=int, default=800, help="training steps on both sides (default 800)")
    parser.add_argument("--ablations", action="store_true", help="also run the ablation table on the demo set")
    parser.add_argument("--ablation-seeds", default="0", help="seeds of each ablation row, comma-separated")
    parser.add_argument("--skip-comparison", action="store_true", help="only the ablations")
    parser.add_argument("--ablation-tags", default="", help="only these ablation rows (run tags, comma-separated)")
    parser.add_argument("--equal-wall-clock-seeds", default="0",
                        help="seeds whose run of ours is continued to magenta's wall-clock time, comma-separated")
    parser.add_argument("--peer-only", action="store_true",
                        help="train and score only magenta's side of the comparison (e.g. beside the ablations)")
    parser.add_argument("--ours-only", action="store_true",
                        help="train and score only our side at --steps (e.g. beside --peer-only)")
    parser.add_argument("--work", type=Path, default=Path("runs/quality"), help="runs, logs and results")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's read-only checkpoint notes, once per score
    work = args.work.resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPU cores; {args.steps} steps, the demo "
             "preset's sizes (batch 8 of 1 s crops, 60 harmonics, hidden 256, IR 4000, lr 1e-3) on both sides; "
             "test split of each instrument scored by our evaluator; mean ± standard deviation over seeds "
             f"{args.seeds}.", ""]

    if args.ablations:
        lines += ablation_table(args, work)
    if not args.skip_comparison:
        lines += ["| instrument, system | spectral loss | loudness L1 dB | f0 error cents | wall-clock s |",
                  "|---|---:|---:|---:|---:|"]
        for instrument in args.instruments.split(","):
            dataset, peer_data = prepare(instrument, work)
            ours, longer, peer = [], [], []
            if args.peer_only or args.ours_only:
                for seed in seeds:
                    if args.peer_only:
                        train_magenta(instrument, seed, args.steps, args.peer_python, peer_data, dataset, work)
                    else:
                        train_ours(instrument, seed, args.steps, (), dataset, work, "default")
                continue
            for seed in seeds:
                ours.append(train_ours(instrument, seed, args.steps, (), dataset, work, "default"))
                peer.append(train_magenta(instrument, seed, args.steps, args.peer_python, peer_data, dataset, work))
                if str(seed) in args.equal_wall_clock_seeds.split(","):
                    equal_steps = max(args.steps, round(args.steps * peer[-1]["wall_s"] / ours[-1]["wall_s"]))
                    longer.append(extend_ours(instrument, seed, equal_steps, (), dataset, work, "default"))
            walls = _cell([r["wall_s"] for r in ours], 0)
            extended = [o for o, seed in zip(ours, seeds, strict=True)
                        if str(seed) in args.equal_wall_clock_seeds.split(",")]
            total = _cell([o["wall_s"] + r["extra_wall_s"] for o, r in zip(extended, longer, strict=True)], 0)
            steps = "/".join(str(r["n_steps"]) for r in longer)
            lines += [
                _row(f"{instrument}: ours, {args.steps} steps, newest checkpoint", ours, "newest", walls),
                _row(f"{instrument}: ours, {args.steps} steps, best-validation checkpoint", ours, "best", walls),
                _row(f"{instrument}: ours, equal wall-clock ({steps} steps; seeds {args.equal_wall_clock_seeds}), "
                     "newest", longer, "newest", total),
                _row(f"{instrument}: ours, equal wall-clock, best-validation", longer, "best", total),
                _row(f"{instrument}: magenta ddsp 3.7.0, {args.steps} steps", peer, "newest",
                     _cell([r["wall_s"] for r in peer], 0)),
            ]
            load = [r["load"][0] for r in ours + longer + peer]
            lines.append(f"| ({instrument}: 1-minute load average at the end of each run {min(load):.1f}-"
                         f"{max(load):.1f}) | | | | |")
            print("\n".join(lines[-6:]), flush=True)
        lines.append("")

    text = "\n".join(lines) + "\n"
    (work / "quality.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
