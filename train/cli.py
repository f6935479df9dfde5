"""``ddsp-train`` / ``python -m train``: prepare data, fit, evaluate, resynthesise and timbre-transfer.

Subcommands::

    ddsp-train demo                                   # offline set -> train -> evaluate -> report (the README's main command)
    ddsp-train prepare --preset demo                  # build the dataset and its f0/loudness features
    ddsp-train fit --preset demo [--set train.n_steps=800] [--resume]
    ddsp-train evaluate runs/demo                     # numbers, WAVs, figures and report.md
    ddsp-train resynthesize runs/demo in.wav out.wav  # audio -> features -> model -> audio
    ddsp-train transfer runs/demo voice.wav out.wav --octave-shift 1 --loudness-shift -6

Every expected failure (bad config key, missing or incompatible checkpoint, unreadable audio, an output path that
is a file, silent input...) prints one line ``ddsp-train: error: ...`` and exits with status 2, writing nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from train.checkpoint import CheckpointError
from train.config import Config, ConfigError, apply_overrides, preset

logger = logging.getLogger("train")

EXPECTED_ERRORS = (ConfigError, CheckpointError, ValueError, FileNotFoundError, NotADirectoryError,
                   FloatingPointError)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="demo", help="demo | nsynth | folder | tiny (default: demo)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field, e.g. --set train.n_steps=200 (repeatable)")


def build_config(args: argparse.Namespace) -> Config:
    """The preset named by ``--preset`` with ``--set`` overrides applied."""
    return apply_overrides(preset(args.preset), args.overrides)


def dataset_dir(config: Config) -> Path:
    """Where the prepared dataset of ``config`` lives."""
    if config.data.dataset_dir:
        return Path(config.data.dataset_dir)
    name = config.data.preset or Path(config.data.folder).name or config.data.nsynth_config
    return Path("data") / f"{config.data.source}-{name}-{config.data.crepe_model}"


def prepare(config: Config) -> Path:
    """Build (or reuse) the prepared dataset of ``config``; return its folder."""
    from train import data

    out_dir = dataset_dir(config)
    source = config.data.source
    if source == "offline":
        return data.prepare_offline(config.data.preset, out_dir, crepe_model=config.data.crepe_model)
    if source == "folder":
        if not config.data.folder:
            raise ConfigError("data.folder is empty; give the audio folder with --set data.folder=PATH")
        folder = Path(config.data.folder).expanduser()
        return data.prepare_folder(folder, out_dir, crepe_model=config.data.crepe_model,
                                   example_seconds=config.data.example_seconds)
    if source == "nsynth":
        return data.prepare_nsynth(config.data.nsynth_config, out_dir, crepe_model=config.data.crepe_model)
    raise ConfigError(f"data.source={source!r}; expected offline, folder or nsynth")


def _command_prepare(args: argparse.Namespace) -> int:
    path = prepare(build_config(args))
    print(f"prepared dataset: {path}")
    return 0


def _command_fit(args: argparse.Namespace) -> int:
    from train.fit import fit

    config = build_config(args)
    summary = fit(config, prepare(config), resume=args.resume)
    _print_fit_summary(summary)
    return 0


def _print_fit_summary(summary: dict) -> None:
    validation = summary["validation"]
    if len(validation) >= 2:
        (first_step, first), (last_step, last) = validation[0], validation[-1]
        drop = 100.0 * (first - last) / first
        print(f"validation spectral loss: {first:.4f} at step {first_step} -> {last:.4f} at step {last_step} "
              f"({drop:.1f}% lower)")


def _command_evaluate(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate_run
    from train.fit import load_trained

    config, params, static = load_trained(Path(args.run))
    out_dir = Path(args.out) if args.out else Path(args.run) / "report"
    numbers = evaluate_run(config, params, static, Path(args.dataset) if args.dataset else dataset_dir(config),
                           out_dir, max_examples=args.examples)
    _print_numbers(numbers, out_dir)
    return 0


def _print_numbers(numbers: dict, out_dir: Path) -> None:
    for key, value in numbers.items():
        print(f"  {key:>16}: {value:.4f}" if isinstance(value, float) else f"  {key:>16}: {value}")
    print(f"report: {out_dir / 'report.md'}")


def _command_audio(args: argparse.Namespace) -> int:
    from train.audio_io import resynthesize_file

    resynthesize_file(
        Path(args.run), Path(args.input), Path(args.output),
        octave_shift=getattr(args, "octave_shift", 0.0), loudness_shift_db=getattr(args, "loudness_shift", 0.0),
        auto_adjust=getattr(args, "auto_adjust", False),
    )
    print(f"wrote {args.output}")
    return 0


def _command_demo(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate_run
    from train.fit import fit, load_trained

    config = build_config(args)
    path = prepare(config)
    summary = fit(config, path, resume=args.resume)
    config, params, static = load_trained(Path(config.run_dir))
    out_dir = Path(config.run_dir) / "report"
    numbers = evaluate_run(config, params, static, path, out_dir)
    _print_fit_summary(summary)
    _print_numbers(numbers, out_dir)
    (Path(config.run_dir) / "summary.json").write_text(json.dumps(
        {"validation": summary["validation"], "test": numbers}, indent=2, default=float))
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The ``ddsp-train`` argument parser."""
    parser = argparse.ArgumentParser(prog="ddsp-train", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level and show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="prepare the offline set, train, evaluate, write the report")
    _add_config_arguments(demo)
    demo.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    demo.set_defaults(handler=_command_demo)

    prep = commands.add_parser("prepare", help="build a dataset and its f0/loudness features")
    _add_config_arguments(prep)
    prep.set_defaults(handler=_command_prepare)

    fit = commands.add_parser("fit", help="train a model")
    _add_config_arguments(fit)
    fit.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    fit.set_defaults(handler=_command_fit)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on its test split")
    evaluate.add_argument("run", help="run folder (or its checkpoints folder)")
    evaluate.add_argument("--out", help="output folder (default: RUN/report)")
    evaluate.add_argument("--dataset", help="prepared dataset folder (default: the run config's)")
    evaluate.add_argument("--examples", type=int, default=32, help="test examples to evaluate (default 32)")
    evaluate.set_defaults(handler=_command_evaluate)

    for name, text in (("resynthesize", "audio in -> features -> model -> audio out"),
                       ("transfer", "timbre transfer: drive the model with another recording's f0/loudness")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("run", help="trained run folder")
        sub.add_argument("input", help="input audio file (WAV/FLAC/OGG, any rate, mono or stereo)")
        sub.add_argument("output", help="output WAV (same sample rate and length as the input)")
        if name == "transfer":
            sub.add_argument("--octave-shift", type=float, default=0.0, help="shift f0 by this many octaves")
            sub.add_argument("--loudness-shift", type=float, default=0.0, help="add this many dB to loudness")
            sub.add_argument("--auto-adjust", action="store_true",
                             help="shift octave and loudness towards the training data's mean pitch and loudness")
        sub.set_defaults(handler=_command_audio)
    return parser


def enable_compilation_cache() -> None:
    """Keep XLA's compiled programs on disk so a second run (or a resume) skips compilation.

    Uses ``$JAX_COMPILATION_CACHE_DIR`` when set, else ``<user cache dir>/ddsp-jax/xla``.
    """
    import jax
    import platformdirs

    directory = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
        Path(platformdirs.user_cache_dir("ddsp-jax")) / "xla")
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)
    enable_compilation_cache()
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as error:
        if args.verbose:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"ddsp-train: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
