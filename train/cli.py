"""``ddsp-train`` / ``python -m train``: prepare data, fit, evaluate, resynthesise and timbre-transfer.

Subcommands::

    ddsp-train demo                                   # offline set -> train -> evaluate -> report (the README's main command)
    ddsp-train prepare --preset demo                  # build the dataset and its f0/loudness features
    ddsp-train fit --preset demo [--set train.n_steps=800] [--resume]
    ddsp-train evaluate runs/demo                     # numbers, WAVs, figures and report.md
    ddsp-train resynthesize runs/demo in.wav out.wav  # audio -> features -> model -> audio
    ddsp-train transfer runs/demo voice.wav out.wav --octave-shift 1 --loudness-shift -6

Every expected failure (bad config key, missing or incompatible checkpoint, unreadable audio, an output path that
is a file, silent input, a NaN or infinite number, a diverged run, a read-only or full disk...) prints one line
``ddsp-train: error: ...`` and exits with status 2, writing nothing half-done. ``--verbose`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from ddsp_core._io import write_text_atomic
from train import live
from train.checkpoint import CheckpointError, CheckpointWriteError, parse_choice
from train.config import Config, ConfigError, apply_overrides, load_config_file, preset

logger = logging.getLogger("train")

EXPECTED_ERRORS = (ConfigError, CheckpointError, ValueError, OSError, FloatingPointError)
WAV_FORMATS = {"pcm16": "PCM_16", "float": "FLOAT"}
NOISY_LOGGERS = ("absl", "orbax", "asyncio", "jax._src.distributed")


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def step_choice(text: str) -> str | int:
    """argparse type of ``--step``: ``newest``, ``best`` or a step number."""
    try:
        return parse_choice(text)
    except CheckpointError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None,
                        help="a bundled config: demo | nsynth | folder | tiny (default: demo unless --config)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="a TOML config file (e.g. a run's config.toml); --preset, if also given, is its base")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field, e.g. --set train.n_steps=200 (repeatable)")
    parser.add_argument("--overwrite-dataset", action="store_true",
                        help="allow replacing a prepared dataset of another source/preset at data.dataset_dir")


def _add_output_arguments(parser: argparse.ArgumentParser, *, step: bool = True) -> None:
    if step:
        parser.add_argument("--step", default="newest", type=step_choice, metavar="N|best|newest",
                            help="which checkpoint: a step number, best (lowest validation loss) or newest (default)")
    parser.add_argument("--wav-format", default="pcm16", choices=sorted(WAV_FORMATS),
                        help="pcm16 (16-bit, clipped to [-1, 1]; default) or float (32-bit float, unclipped)")


def build_config(args: argparse.Namespace) -> Config:
    """``--preset`` (default demo), then ``--config FILE`` on top of it, then the ``--set`` overrides."""
    if args.config is None:
        return apply_overrides(preset(args.preset or "demo"), args.overrides)
    base = preset(args.preset) if args.preset else None
    return apply_overrides(load_config_file(args.config, base), args.overrides)


def dataset_dir(config: Config) -> Path:
    """Where the prepared dataset of ``config`` lives."""
    if config.data.dataset_dir:
        return Path(config.data.dataset_dir)
    name = config.data.offline_preset or Path(config.data.folder).name or config.data.nsynth_config
    return Path("data") / f"{config.data.source}-{name}-{config.data.crepe_model}"


def _dataset_identity(build: dict) -> str:
    """What a prepared dataset is a dataset *of* (source and preset, folder or NSynth config), from its build."""
    source = build.get("source", "unknown")
    detail = {"offline": (build.get("preset") or {}).get("name"), "folder": build.get("folder"),
              "nsynth-tfds": build.get("config")}.get(source)
    return f"{source} {detail}" if detail else str(source)


def _wanted_identity(config: Config) -> str:
    source = config.data.source
    if source == "offline":
        return f"offline {config.data.offline_preset}"
    if source == "folder":
        return f"folder {Path(config.data.folder).expanduser().resolve()}"
    return f"nsynth-tfds {config.data.nsynth_config}"


def check_dataset_dir(config: Config, out_dir: Path, *, overwrite: bool) -> None:
    """Refuse to replace a prepared dataset at ``out_dir`` that is of another source/preset (unless ``overwrite``)."""
    from train.data import DataError, load_manifest

    if overwrite or not (out_dir / "manifest.json").exists():
        return
    try:
        existing = _dataset_identity(load_manifest(out_dir).get("build", {}))
    except DataError:
        return
    wanted = _wanted_identity(config)
    if existing != wanted:
        raise ConfigError(
            f"data.dataset_dir {out_dir} holds a prepared dataset of {existing}, not {wanted}; choose another "
            "data.dataset_dir or pass --overwrite-dataset to replace it"
        )


def prepare(config: Config, *, overwrite: bool = False) -> Path:
    """Build (or reuse) the prepared dataset of ``config``; return its folder.

    Raises:
        ConfigError: ``data.dataset_dir`` holds a dataset of another source or preset and ``overwrite`` is false.
    """
    from train import data

    out_dir = dataset_dir(config)
    check_dataset_dir(config, out_dir, overwrite=overwrite)
    source = config.data.source
    if source == "offline":
        return data.prepare_offline(config.data.offline_preset, out_dir, crepe_model=config.data.crepe_model)
    if source == "folder":
        if not config.data.folder:
            raise ConfigError("data.folder is empty; give the audio folder with --set data.folder=PATH")
        folder = Path(config.data.folder).expanduser()
        return data.prepare_folder(folder, out_dir, crepe_model=config.data.crepe_model,
                                   example_seconds=config.data.example_seconds,
                                   validation_fraction=config.data.validation_fraction,
                                   test_fraction=config.data.test_fraction)
    if source == "nsynth":
        return data.prepare_nsynth(config.data.nsynth_config, out_dir, crepe_model=config.data.crepe_model)
    raise ConfigError(f"data.source={source!r}; expected offline, folder or nsynth")


def _command_prepare(args: argparse.Namespace) -> int:
    from train.data import SPLITS, load_manifest

    path = prepare(build_config(args), overwrite=args.overwrite_dataset)
    counts = load_manifest(path).get("counts", {})
    print(f"prepared dataset: {path} ({', '.join(f'{name} {counts.get(name, 0)}' for name in SPLITS)} examples)")
    return 0


def _command_fit(args: argparse.Namespace) -> int:
    from train import parallel
    from train.fit import fit

    parallel.initialize_distributed()
    config = build_config(args)
    # With several processes only process 0 may build the dataset; the others read the folder it names.
    path = prepare(config, overwrite=args.overwrite_dataset) if parallel.is_writer() else dataset_dir(config)
    summary = fit(config, path, resume=args.resume)
    _print_fit_summary(summary)
    return 0


def describe_change(first: float, last: float) -> str:
    """``"12.3% lower"``, ``"4.0% higher"`` or ``"unchanged"``: how ``last`` compares with ``first``."""
    if last == first:
        return "unchanged"
    change = 100.0 * abs(first - last) / abs(first) if first else math.inf
    return f"{change:.1f}% {'lower' if last < first else 'higher'}"


def _print_fit_summary(summary: dict) -> None:
    validation = summary["validation"]
    if len(validation) >= 2:
        (first_step, first), (last_step, last) = validation[0], validation[-1]
        print(f"validation spectral loss: {first:.4f} at step {first_step} -> {last:.4f} at step {last_step} "
              f"({describe_change(first, last)})")
    if summary.get("best_step") is not None:
        print(f"best validation checkpoint: step {summary['best_step']} (use --step best)")


def _command_evaluate(args: argparse.Namespace) -> int:
    from train.checkpoint import load_trained
    from train.evaluate import evaluate_run

    config, params, static, loaded = load_trained(Path(args.run), args.step)
    out_dir = Path(args.out) if args.out else Path(args.run) / "report"
    numbers = evaluate_run(config, params, static, Path(args.dataset) if args.dataset else dataset_dir(config),
                           out_dir, max_examples=args.examples, checkpoint=loaded.describe(),
                           wav_subtype=WAV_FORMATS[args.wav_format])
    _print_numbers(numbers, out_dir)
    return 0


def _print_numbers(numbers: dict, out_dir: Path) -> None:
    for key, value in numbers.items():
        print(f"  {key:>16}: {value:.4f}" if isinstance(value, float) else f"  {key:>16}: {value}")
    print(f"report: {out_dir / 'report.md'}")


def _command_audio(args: argparse.Namespace) -> int:
    from train.audio_io import resynthesize_file

    _, checkpoint = resynthesize_file(
        Path(args.run), Path(args.input), Path(args.output),
        octave_shift=getattr(args, "octave_shift", 0.0), loudness_shift_db=getattr(args, "loudness_shift", 0.0),
        auto_adjust=getattr(args, "auto_adjust", False), step=args.step, wav_subtype=WAV_FORMATS[args.wav_format],
    )
    print(f"wrote {args.output} with {checkpoint}")
    return 0


def _command_demo(args: argparse.Namespace) -> int:
    from train.checkpoint import load_trained
    from train.evaluate import evaluate_run
    from train.fit import fit

    config = build_config(args)
    path = prepare(config, overwrite=args.overwrite_dataset)
    summary = fit(config, path, resume=args.resume)
    config, params, static, loaded = load_trained(Path(config.run_dir), args.step)
    out_dir = Path(config.run_dir) / "report"
    numbers = evaluate_run(config, params, static, path, out_dir, checkpoint=loaded.describe(),
                           wav_subtype=WAV_FORMATS[args.wav_format])
    _print_fit_summary(summary)
    _print_numbers(numbers, out_dir)
    write_text_atomic(Path(config.run_dir) / "summary.json", json.dumps(
        {"validation": summary["validation"], "test": numbers}, indent=2, default=float))
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``ddsp-train: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"ddsp-train: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    """The ``ddsp-train`` argument parser."""
    parser = _OneLineParser(prog="ddsp-train", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at INFO level and show full tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="prepare the offline set, train, evaluate, write the report")
    _add_config_arguments(demo)
    demo.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")
    _add_output_arguments(demo)
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
    evaluate.add_argument("--examples", type=positive_int, default=32, help="test examples to evaluate (default 32)")
    _add_output_arguments(evaluate)
    evaluate.set_defaults(handler=_command_evaluate)

    for name, text in (("resynthesize", "audio in -> features -> model -> audio out"),
                       ("transfer", "timbre transfer: drive the model with another recording's f0/loudness")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("run", help="trained run folder")
        sub.add_argument("input", help="input audio file (WAV/FLAC/OGG, any rate, mono or stereo)")
        sub.add_argument("output", help="output WAV (same sample rate and length as the input)")
        _add_output_arguments(sub)
        if name == "transfer":
            sub.add_argument("--octave-shift", type=finite_float, default=0.0, help="shift f0 by this many octaves")
            sub.add_argument("--loudness-shift", type=finite_float, default=0.0, help="add this many dB to loudness")
            sub.add_argument("--auto-adjust", action="store_true",
                             help="shift octave and loudness towards the training data's mean pitch and loudness")
        sub.set_defaults(handler=_command_audio)
    live.add_commands(commands)  # stream, play, export
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
    for name in NOISY_LOGGERS:  # orbax and asyncio log their own tracebacks of an error we report in one line
        logging.getLogger(name).setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    enable_compilation_cache()
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as error:
        if args.verbose:
            raise
        print(f"ddsp-train: error: {error_line(error)}", file=sys.stderr)
        if isinstance(error, CheckpointWriteError):
            # tensorstore's threads still call back into orbax's closed asyncio loop and print one "Event loop is
            # closed" traceback per pending write while the process exits; the error is reported above.
            sys.stderr.flush()
            sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (open until the process exits)
        return 2


def error_line(error: BaseException) -> str:
    """One line for the user; an OSError names its path and the reason (``runs/x/config.json: Permission
    denied``)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
