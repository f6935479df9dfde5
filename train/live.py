"""Play a trained run live: stream audio through it block by block, play MIDI with it, export its block step.

Commands (registered in ``train/cli.py`` by :func:`add_commands`)::

    ddsp-train stream RUN in.wav out.wav --block 128 [--lookahead exact|low|SAMPLES]
    ddsp-train play RUN song.mid out.wav [--transpose 0] [--vibrato-cents 0] [--portamento-ms 0]
    ddsp-train export RUN OUT_DIR [--block 128] [--platforms cpu,cuda]

``stream`` is ``transfer`` computed through :mod:`ddsp_core.stream_engine`, features included
(:mod:`ddsp_core.stream_features`), and prints the latency (block + feature lookahead + synthesis) and the
real-time factor. ``play`` renders MIDI (:mod:`train.midi`). ``export`` writes the block step as a ``jax.export``
artifact (:mod:`ddsp_core.stream_export`) and as ONNX (:mod:`ddsp_core.stream_onnx`), with a manifest, the initial
state and a loader that needs only jax or only onnxruntime (:mod:`ddsp_core.export_player`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_BLOCK_SAMPLES = 128


# Loading -----------------------------------------------------------------------------------------------------------
def load_model(run_dir: Path, step: str | int = "newest") -> tuple[Any, Any, Any]:
    """``(config, model, loaded)`` of a trained run (``model`` a :class:`ddsp_core.model.DDSPAutoencoder`)."""
    import equinox as eqx

    from train.checkpoint import load_trained

    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    config, params, static, loaded = load_trained(run_dir, step)
    return config, eqx.combine(params, static), loaded


def block_frames(block_samples: int, hop_size: int, sample_rate: int) -> int:
    """Frames per block; refuses a block that is not a positive whole number of hops."""
    if block_samples < 1 or block_samples % hop_size:
        below = max(hop_size, block_samples // hop_size * hop_size)
        raise ValueError(f"--block {block_samples} samples is not a whole number of hops ({hop_size} samples at "
                         f"{sample_rate} Hz); use a multiple of {hop_size}, e.g. {below}")
    return block_samples // hop_size


def _check_output_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; expected a .wav file path")
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")


# Streaming a file --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamReport:
    """What :func:`stream_file` measured: latency parts in samples, per-block compute times, real-time factor.

    ``lookahead_samples`` is how long the features wait past the block for their analysis windows
    (``lookahead - hop_size``: 960 with the exact 1024-sample lookahead at hop 64, 0 with the lowest).
    """

    sample_rate: int
    block_samples: int
    lookahead_samples: int
    synthesis_samples: int
    block_seconds: np.ndarray
    real_time_factor: float

    @property
    def latency_samples(self) -> int:
        """Input-to-output latency of a live host: block buffering + feature lookahead + synthesis."""
        return self.block_samples + self.lookahead_samples + self.synthesis_samples

    def describe(self) -> str:
        """Two lines for the terminal."""
        ms = 1000.0 / self.sample_rate
        p50, p99 = np.percentile(self.block_seconds, [50, 99]) * 1000.0
        return (f"latency: {self.latency_samples} samples = {self.latency_samples * ms:.1f} ms (block "
                f"{self.block_samples} + feature lookahead {self.lookahead_samples} + synthesis "
                f"{self.synthesis_samples})\n"
                f"compute per {self.block_samples * ms:.1f} ms block: median {p50:.2f} ms, p99 {p99:.2f} ms; "
                f"real-time factor {self.real_time_factor:.3f} (compute time / audio time)")


def resolve_lookahead(lookahead: str, *, hop_size: int, n_fft: int) -> int:
    """``exact`` (the centred analyses), ``low`` (one hop) or a number of samples."""
    from ddsp_core.stream_features import exact_lookahead

    if lookahead == "exact":
        return exact_lookahead(n_fft=n_fft)
    if lookahead == "low":
        return hop_size
    try:
        return int(lookahead)
    except ValueError:
        raise ValueError(f"--lookahead must be 'exact', 'low' or a number of samples, got {lookahead!r}") from None


def stream_audio(
    model: Any,
    audio: np.ndarray,
    *,
    block_samples: int,
    lookahead_samples: int,
    crepe_model: str,
    loudness_n_fft: int = 2048,
    octave_shift: float = 0.0,
    loudness_shift_db: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, StreamReport]:
    """Timbre transfer of ``audio`` (at the model's rate) block by block; output aligned with the input.

    Each block of ``block_samples`` goes through the streaming features and the engine; the input is followed by
    zeros until the latency is flushed, and the output is returned from its first aligned sample, as long as the
    input. Compile time is not counted in the per-block times.
    """
    import jax

    from ddsp_core import stream_engine, stream_features
    from ddsp_core.crepe import load_crepe_params

    hop_size, sample_rate = model.hop_size, model.sample_rate
    frames = block_frames(block_samples, hop_size, sample_rate)
    features_state = stream_features.features_init(hop_size=hop_size, lookahead_samples=lookahead_samples,
                                                   n_fft=loudness_n_fft)
    engine_state = stream_engine.init_state(model, key=jax.random.key(seed))
    crepe_params = load_crepe_params(crepe_model)
    synthesis = stream_engine.latency_samples(model)
    delay = stream_features.features_delay_frames(lookahead_samples, hop_size) * hop_size + synthesis
    n_blocks = -(-(len(audio) + delay) // block_samples)
    padded = np.zeros(n_blocks * block_samples, np.float32)
    padded[: len(audio)] = audio

    @jax.jit
    def step(features_state, engine_state, block):
        features_state, features = stream_features.features_block(
            features_state, block, crepe_params=crepe_params, sample_rate=sample_rate, hop_size=hop_size,
            n_fft=loudness_n_fft)
        f0_hz = features["f0_hz"] * 2.0**octave_shift
        engine_state, out = stream_engine.process_block(model, engine_state, f0_hz,
                                                        features["loudness_db"] + loudness_shift_db)
        return features_state, engine_state, out

    jax.block_until_ready(step(features_state, engine_state, padded[:block_samples]))  # compile
    outputs, seconds = [], []
    for index in range(n_blocks):
        start = time.perf_counter()
        features_state, engine_state, out = step(
            features_state, engine_state, padded[index * block_samples : (index + 1) * block_samples])
        outputs.append(np.asarray(out))
        seconds.append(time.perf_counter() - start)
    block_seconds = np.asarray(seconds)
    report = StreamReport(
        sample_rate=sample_rate, block_samples=block_samples, lookahead_samples=delay - synthesis,
        synthesis_samples=synthesis, block_seconds=block_seconds,
        real_time_factor=float(block_seconds.sum() / (n_blocks * block_samples / sample_rate)))
    return np.concatenate(outputs)[delay : delay + len(audio)], report


def stream_file(run_dir: Path, input_path: Path, output_path: Path, *, block_samples: int, lookahead: str = "exact",
                octave_shift: float = 0.0, loudness_shift_db: float = 0.0) -> StreamReport:
    """``ddsp-train stream``: read, stream through the run's model, write a WAV at the input's rate and length."""
    import soundfile
    import soxr

    from train import report
    from train.audio_io import check_shifts
    from train.data.features import FeatureConfig
    from train.data.folder import load_audio

    _check_output_file(output_path)
    check_shifts(octave_shift, loudness_shift_db)
    config, model, _ = load_model(run_dir)
    block_frames(block_samples, model.hop_size, model.sample_rate)
    n_fft = FeatureConfig().loudness_n_fft
    lookahead_samples = resolve_lookahead(lookahead, hop_size=model.hop_size, n_fft=n_fft)
    audio = load_audio(Path(input_path), sample_rate=model.sample_rate)
    output, stream_report = stream_audio(
        model, audio, block_samples=block_samples, lookahead_samples=lookahead_samples,
        crepe_model=config.data.crepe_model, loudness_n_fft=n_fft, octave_shift=octave_shift,
        loudness_shift_db=loudness_shift_db)
    info = soundfile.info(str(input_path))
    if info.samplerate != model.sample_rate:
        output = soxr.resample(output, model.sample_rate, info.samplerate).astype(np.float32)
    output = np.pad(output, (0, max(0, info.frames - len(output))))[: info.frames]
    report.write_wav(output_path, output, info.samplerate)
    return stream_report


# MIDI --------------------------------------------------------------------------------------------------------------
def run_envelopes(run_dir: Path, config: Any):
    """The run's note envelopes: read from the run, or made once from its training data and stored with it."""
    from train import midi
    from train.cli import dataset_dir
    from train.data import load_split

    path = Path(run_dir) / midi.ENVELOPES_NAME
    if path.is_file():
        return midi.load_envelopes(path)
    dataset = dataset_dir(config)
    if not dataset.exists():
        raise FileNotFoundError(f"playing MIDI needs the run's note envelopes ({path}) or its training data "
                                f"({dataset}) to make them; prepare the data first")
    train = load_split(dataset, "train")
    envelopes = midi.envelopes_from_examples(train["loudness_db"], train["pitch"], train["velocity"],
                                             frame_rate=config.model.sample_rate / config.model.hop_size)
    midi.save_envelopes(path, envelopes)
    return envelopes


def render_voices(model: Any, f0_hz: np.ndarray, loudness_db: np.ndarray, keys: Any) -> np.ndarray:
    """Each voice's audio, one batch row each (``jax.vmap`` over voices): ``(n_voices, n_frames * hop)``."""
    import jax

    from ddsp_core.model import autoencode

    render = jax.jit(jax.vmap(lambda f, loud, key: autoencode(model, f, loud, key=key).audio))
    return np.asarray(render(f0_hz, loudness_db, keys))


def play_midi(run_dir: Path, midi_path: Path, output_path: Path, *, transpose: int = 0, vibrato_hz: float = 5.0,
              vibrato_cents: float = 0.0, portamento_ms: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """``ddsp-train play``: render a MIDI file with the run's model; returns what was played (voices, seconds)."""
    import jax

    from train import midi, report
    from train.data.statistics import SILENCE_DB, read_statistics

    _check_output_file(output_path)
    notes = midi.read_notes(midi_path)
    if transpose:
        notes = [midi.Note(n.start_s, n.end_s, n.pitch + transpose, n.velocity) for n in notes]
    config, model, _ = load_model(run_dir)
    statistics = read_statistics(run_dir) or {}
    warning = midi.pitch_range_warning(notes, statistics.get("f0_hz_range"))
    if warning:
        logger.warning("%s: %s", midi_path, warning)
    envelopes = run_envelopes(run_dir, config)
    frame_rate = model.sample_rate / model.hop_size
    release_s = midi.release_frames(envelopes) / frame_rate
    voices = midi.allocate_voices(notes, release_s=release_s)
    n_frames = int(np.ceil((max(n.end_s for n in notes) + release_s) * frame_rate))
    controls = [midi.voice_controls(voice, envelopes, n_frames=n_frames, frame_rate=frame_rate,
                                    silence_db=SILENCE_DB - 10.0, vibrato_hz=vibrato_hz, vibrato_cents=vibrato_cents,
                                    portamento_s=portamento_ms / 1000.0) for voice in voices]
    keys = jax.vmap(lambda v: voice_key(seed, v[0], v[1]))(
        np.array([[voice[0].pitch, int(round(voice[0].start_s * frame_rate))] for voice in voices]))
    audio = render_voices(model, np.stack([c[0] for c in controls]), np.stack([c[1] for c in controls]), keys)
    mix = audio.sum(axis=0)
    report.write_wav(output_path, mix, model.sample_rate)
    return {"voices": len(voices), "notes": len(notes), "seconds": len(mix) / model.sample_rate}


def voice_key(seed: int, pitch: Any, start_frame: Any) -> Any:
    """Noise key of a voice, from its first note: the same note has the same noise whatever plays with it."""
    import jax

    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), pitch), start_frame)


# Export ------------------------------------------------------------------------------------------------------------
def config_hash(config: Any) -> str:
    """SHA-256 of the run's config in its TOML form (what the run stores as ``config.toml``)."""
    return hashlib.sha256(config.to_toml().encode()).hexdigest()


def export_run(run_dir: Path, out_dir: Path, *, block_samples: int = DEFAULT_BLOCK_SAMPLES,
               platforms: tuple[str, ...] = ("cpu",), seed: int = 0) -> dict[str, Any]:
    """``ddsp-train export``: the block step as ``jax.export`` and ONNX (+ manifest, initial state, loader) in
    ``out_dir``. A model whose step the ONNX exporter cannot translate (e.g. a wavetable) gets the ``jax.export``
    artifact only, with a warning and the reason in the manifest (``"onnx": null``, ``"onnx_unavailable"``).

    Everything is written to a temporary folder next to ``out_dir`` and renamed into place at the end, so a failed
    export leaves nothing half-written. Returns the manifest.
    """
    import jax

    import ddsp_core.export_player
    from ddsp_core import stream_engine, stream_export, stream_onnx
    from ddsp_core.stream_features import exact_lookahead
    from train.data.statistics import read_statistics

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"export folder {out_dir} exists and is not an empty folder; choose a new path")
    if not out_dir.parent.exists():
        raise FileNotFoundError(f"parent folder {out_dir.parent} does not exist")
    config, model, loaded = load_model(run_dir)
    frames = block_frames(block_samples, model.hop_size, model.sample_rate)
    key = jax.random.key(seed)
    exported = stream_export.export_step(model, block_frames=frames, key=key, platforms=platforms)
    try:
        onnx_model, onnx_unavailable = stream_onnx.export_onnx(model, block_frames=frames, key=key), None
    except NotImplementedError as error:
        onnx_model, onnx_unavailable = None, str(error)
        logger.warning("%s: no ONNX step (%s); writing the jax.export artifact only", run_dir, error)
    names = stream_export.state_names(model)
    initial = stream_export.initial_state_arrays(model, key=key)
    statistics = read_statistics(run_dir) or {}
    manifest = {
        "format": "ddsp-jax stream step 1",
        "sample_rate": model.sample_rate,
        "hop_size": model.hop_size,
        "block_frames": frames,
        "block_samples": frames * model.hop_size,
        "jax_export": "step.jax",
        "onnx": "step.onnx" if onnx_model is not None else None,
        "onnx_opset": stream_onnx.OPSET,
        "initial_state": "initial_state.npz",
        "loader": "ddsp_player.py",
        "platforms": list(platforms),
        "call": "step(*state, f0_hz[block_frames], loudness_db[block_frames]) -> (*state, audio[block_samples])",
        "onnx_names": "inputs: each state name, f0_hz, loudness_db; outputs: next.<state name> each, audio",
        "state": [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in zip(names, initial)],
        "inputs": {
            "f0_hz": {"shape": [frames], "dtype": "float32", "training_range": statistics.get("f0_hz_range")},
            "loudness_db": {"shape": [frames], "dtype": "float32",
                            "training_range": statistics.get("loudness_db_range")},
        },
        "latency_samples": {
            "synthesis": stream_engine.latency_samples(model),
            "block": frames * model.hop_size,
            "feature_lookahead_exact": exact_lookahead(),
            "feature_lookahead_low": model.hop_size,
        },
        "checkpoint": loaded.describe(),
        "config_sha256": config_hash(config),
    }
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    (staging / "step.jax").write_bytes(exported.serialize())
    if onnx_model is not None:
        (staging / "step.onnx").write_bytes(onnx_model.SerializeToString())
    else:
        manifest["onnx_unavailable"] = onnx_unavailable
    np.savez(staging / "initial_state.npz", **dict(zip(names, initial, strict=True)))
    shutil.copyfile(ddsp_core.export_player.__file__, staging / "ddsp_player.py")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if out_dir.exists():
        out_dir.rmdir()
    staging.rename(out_dir)
    return manifest


# Command line ------------------------------------------------------------------------------------------------------
def _command_stream(args: argparse.Namespace) -> int:
    stream_report = stream_file(Path(args.run), Path(args.input), Path(args.output), block_samples=args.block,
                                lookahead=args.lookahead, octave_shift=args.octave_shift,
                                loudness_shift_db=args.loudness_shift)
    print(stream_report.describe())
    print(f"wrote {args.output}")
    return 0


def _command_play(args: argparse.Namespace) -> int:
    played = play_midi(Path(args.run), Path(args.midi), Path(args.output), transpose=args.transpose,
                       vibrato_hz=args.vibrato_hz, vibrato_cents=args.vibrato_cents, portamento_ms=args.portamento_ms)
    print(f"played {played['notes']} notes on {played['voices']} voices, {played['seconds']:.1f} s; wrote {args.output}")
    return 0


def _command_export(args: argparse.Namespace) -> int:
    platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
    manifest = export_run(Path(args.run), Path(args.out_dir), block_samples=args.block, platforms=platforms)
    runtimes = f"jax.export for {', '.join(platforms)}" + (" and ONNX" if manifest["onnx"] else "")
    print(f"exported a {manifest['block_samples']}-sample block step ({runtimes}) to {args.out_dir}")
    return 0


def add_commands(commands: Any) -> None:
    """Register ``stream``, ``play`` and ``export`` on the ``ddsp-train`` subcommand parser."""
    stream = commands.add_parser("stream", help="timbre transfer block by block through the streaming engine")
    stream.add_argument("run", help="trained run folder")
    stream.add_argument("input", help="input audio file")
    stream.add_argument("output", help="output WAV (same rate and length as the input, aligned with it)")
    stream.add_argument("--block", type=int, default=DEFAULT_BLOCK_SAMPLES,
                        help=f"block size in samples, a whole number of hops (default {DEFAULT_BLOCK_SAMPLES})")
    stream.add_argument("--lookahead", default="exact",
                        help="feature lookahead: exact (centred analyses, 1024 samples), low (one hop) or samples")
    stream.add_argument("--octave-shift", type=float, default=0.0, help="shift f0 by this many octaves")
    stream.add_argument("--loudness-shift", type=float, default=0.0, help="add this many dB to loudness")
    stream.set_defaults(handler=_command_stream)

    play = commands.add_parser("play", help="render a MIDI file with the trained instrument")
    play.add_argument("run", help="trained run folder")
    play.add_argument("midi", help="MIDI file")
    play.add_argument("output", help="output WAV")
    play.add_argument("--transpose", type=int, default=0, help="move every note by this many semitones")
    play.add_argument("--vibrato-cents", type=float, default=0.0, help="vibrato depth in cents (default 0: none)")
    play.add_argument("--vibrato-hz", type=float, default=5.0, help="vibrato rate in Hz (default 5)")
    play.add_argument("--portamento-ms", type=float, default=0.0,
                      help="glide from a voice's previous note over this many ms (default 0: none)")
    play.set_defaults(handler=_command_play)

    export = commands.add_parser("export",
                                 help="export the block step (jax.export and ONNX) with a manifest and a loader")
    export.add_argument("run", help="trained run folder")
    export.add_argument("out_dir", help="new folder for the export")
    export.add_argument("--block", type=int, default=DEFAULT_BLOCK_SAMPLES,
                        help=f"block size in samples, a whole number of hops (default {DEFAULT_BLOCK_SAMPLES})")
    export.add_argument("--platforms", default="cpu", help="comma-separated platforms, e.g. cpu,cuda (default cpu)")
    export.set_defaults(handler=_command_export)
