"""The offline NSynth-style dataset: notes rendered from the General MIDI SoundFont shipped in ``pretty_midi``.

NSynth (Engel et al. 2017) was made by rendering single notes from commercial sample libraries: 4 s at 16 kHz,
the note held for 3 s and then released, for every pitch of each instrument's range at 5 velocities. This module
does the same with ``TimGM6mb.sf2`` (the GM SoundFont in the ``pretty_midi`` wheel) and ``tinysoundfont`` (a
sample-playback synthesiser that renders float32 offline):

1. each note is rendered at 48 kHz (3x oversampled, so the synth's linear-interpolation resampling of its
   recordings aliases little), stereo mixed to mono, then resampled to 16 kHz with soxr (very high quality);
2. TinySoundFont has no reverb or chorus unit (the GM effect sends, CC 91 and 93, are also set to 0), so every
   note is dry;
3. one gain per program scales that program's loudest note to a peak of 0.9 (below clipping) and keeps the
   velocity dynamics between notes;
4. a note whose normalised peak stays below -60 dBFS (no sample mapped to that key) is skipped and listed in the
   manifest.

The synth is reset between notes (``sounds_off``), so a note renders to the same samples whatever came before
it, and the whole build is deterministic: the same preset gives byte-identical files.

Splits: all velocities of one (program, pitch) form one group; groups are assigned to train/validation/test
by :func:`train.data.dataset.assign_splits` (sha256 rank, ~80/10/10), so no note is shared between splits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr

from train.data import _build
from train.data.dataset import DataError
from train.data.features import FeatureConfig

logger = logging.getLogger(__name__)

_RENDER_RATE = 48000
_PEAK = 0.9
_SILENT_PEAK = 1e-3
_REVERB_SEND_CC = 91
_CHORUS_SEND_CC = 93


@dataclass(frozen=True)
class Instrument:
    """One General MIDI program with its NSynth labels and playable range.

    Attributes
    ----------
    program
        GM program number, 0-based (0 = Acoustic Grand Piano, 40 = Violin).
    family
        NSynth instrument family (``bass``, ``brass``, ``flute``, ``guitar``, ``keyboard``, ``mallet``, ``organ``,
        ``reed``, ``string``, ``synth_lead``, ``vocal``).
    source
        NSynth instrument source (``acoustic``, ``electronic``, ``synthetic``).
    lowest_pitch, highest_pitch
        MIDI pitch range rendered (inclusive), the real instrument's range clipped to CREPE's 24..95.
    """

    program: int
    family: str
    source: str
    lowest_pitch: int
    highest_pitch: int

    @property
    def name(self) -> str:
        """NSynth-style instrument label, e.g. ``string_acoustic_040``."""
        return f"{self.family}_{self.source}_{self.program:03d}"


INSTRUMENTS: dict[int, Instrument] = {
    instrument.program: instrument
    for instrument in (
        Instrument(0, "keyboard", "acoustic", 24, 95),
        Instrument(4, "keyboard", "electronic", 28, 95),
        Instrument(6, "keyboard", "acoustic", 29, 89),
        Instrument(11, "mallet", "acoustic", 53, 89),
        Instrument(12, "mallet", "acoustic", 45, 95),
        Instrument(16, "organ", "electronic", 36, 95),
        Instrument(19, "organ", "acoustic", 24, 95),
        Instrument(24, "guitar", "acoustic", 40, 84),
        Instrument(27, "guitar", "electronic", 40, 86),
        Instrument(32, "bass", "acoustic", 28, 55),
        Instrument(33, "bass", "electronic", 28, 60),
        Instrument(38, "bass", "synthetic", 24, 60),
        Instrument(40, "string", "acoustic", 55, 95),
        Instrument(41, "string", "acoustic", 48, 88),
        Instrument(42, "string", "acoustic", 36, 76),
        Instrument(43, "string", "acoustic", 28, 60),
        Instrument(52, "vocal", "acoustic", 48, 79),
        Instrument(53, "vocal", "acoustic", 48, 79),
        Instrument(56, "brass", "acoustic", 54, 82),
        Instrument(57, "brass", "acoustic", 40, 72),
        Instrument(58, "brass", "acoustic", 28, 58),
        Instrument(60, "brass", "acoustic", 34, 77),
        Instrument(65, "reed", "acoustic", 49, 81),
        Instrument(66, "reed", "acoustic", 44, 76),
        Instrument(68, "reed", "acoustic", 58, 91),
        Instrument(70, "reed", "acoustic", 34, 75),
        Instrument(71, "reed", "acoustic", 50, 91),
        Instrument(72, "flute", "acoustic", 74, 95),
        Instrument(73, "flute", "acoustic", 60, 95),
        Instrument(75, "flute", "acoustic", 60, 95),
        Instrument(80, "synth_lead", "synthetic", 36, 95),
        Instrument(81, "synth_lead", "synthetic", 36, 95),
    )
}
"""The GM programs a preset may use, by program number."""


@dataclass(frozen=True)
class OfflinePreset:
    """Which notes a preset renders and which CREPE model labels them.

    Notes are every ``pitch_step``-th MIDI pitch of each program's range (intersected with ``pitch_range`` when
    given), at each velocity.

    Attributes
    ----------
    name
        Preset name (``tiny``, ``demo``, ``full``).
    programs
        GM program numbers, keys of :data:`INSTRUMENTS`.
    velocities
        MIDI velocities (NSynth uses 25, 50, 75, 100, 127).
    pitch_step
        Semitones between rendered pitches.
    pitch_range
        Optional inclusive (lowest, highest) MIDI pitch applied to every program.
    crepe_model
        Default CREPE capacity for the f0 labels (``tiny`` or ``full``).
    """

    name: str
    programs: tuple[int, ...]
    velocities: tuple[int, ...]
    pitch_step: int = 1
    pitch_range: tuple[int, int] | None = None
    crepe_model: str = "full"

    def notes(self) -> list[tuple[int, int, int]]:
        """(program, pitch, velocity) of every note, in render order."""
        notes = []
        for program in self.programs:
            instrument = INSTRUMENTS[program]
            lowest, highest = instrument.lowest_pitch, instrument.highest_pitch
            if self.pitch_range is not None:
                lowest, highest = max(lowest, self.pitch_range[0]), min(highest, self.pitch_range[1])
            for pitch in range(lowest, highest + 1, self.pitch_step):
                notes.extend((program, pitch, velocity) for velocity in self.velocities)
        return notes


PRESETS: dict[str, OfflinePreset] = {
    "tiny": OfflinePreset("tiny", programs=(40, 73), velocities=(100,), pitch_step=7, pitch_range=(60, 67),
                          crepe_model="tiny"),
    "demo": OfflinePreset("demo", programs=(40,), velocities=(70, 120), pitch_step=1, pitch_range=(55, 88),
                          crepe_model="tiny"),
    "trumpet": OfflinePreset("trumpet", programs=(56,), velocities=(70, 120), pitch_step=1, pitch_range=(55, 82),
                             crepe_model="tiny"),
    "full": OfflinePreset("full", programs=tuple(INSTRUMENTS), velocities=(25, 50, 75, 100, 127), pitch_step=1,
                          crepe_model="full"),
}
"""``tiny``: 4 notes (violin and flute at MIDI 60 and 67), for tests. ``demo``: 68 violin notes (MIDI 55..88 at
velocities 70 and 120), sized so rendering plus CREPE-tiny features take about two minutes on 2 CPU cores.
``trumpet``: 56 trumpet notes (MIDI 55..82 at velocities 70 and 120), the demo's size for a brass instrument (the
second instrument of ``benchmarks/quality.py``).
``full``: 6830 notes from 32 programs covering all 11 NSynth families, every pitch of each range, NSynth's 5
velocities."""


def soundfont_path() -> Path:
    """Path of ``TimGM6mb.sf2``, the General MIDI SoundFont shipped inside the ``pretty_midi`` wheel."""
    import pretty_midi

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise DataError(f"{path}: SoundFont not found (expected pretty_midi's wheel to ship TimGM6mb.sf2)")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _render_program_notes(
    soundfont: Path, program: int, notes: list[tuple[int, int]], *, sample_rate: int, n_samples: int,
    note_seconds: float,
) -> np.ndarray:
    """Render (pitch, velocity) notes of one program, unnormalised; returns (len(notes), n_samples) float32."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=_RENDER_RATE)
    soundfont_id = synth.sfload(str(soundfont))
    synth.program_select(0, soundfont_id, 0, program)
    synth.control_change(0, _REVERB_SEND_CC, 0)
    synth.control_change(0, _CHORUS_SEND_CC, 0)
    n_render = int(round(n_samples * _RENDER_RATE / sample_rate))
    n_held = int(round(note_seconds * _RENDER_RATE))
    audio = np.zeros((len(notes), n_samples), np.float32)
    for row, (pitch, velocity) in enumerate(notes):
        synth.noteon(0, pitch, velocity)
        held = np.frombuffer(synth.generate(n_held), dtype=np.float32)
        synth.noteoff(0, pitch)
        released = np.frombuffer(synth.generate(n_render - n_held), dtype=np.float32)
        synth.sounds_off(0)
        stereo = np.concatenate([held, released]).reshape(-1, 2)  # [n_render, 2] interleaved L/R
        mono = stereo.mean(axis=1, dtype=np.float64)
        resampled = soxr.resample(mono, _RENDER_RATE, sample_rate, quality="VHQ")
        audio[row] = resampled[:n_samples].astype(np.float32)
    return audio


def render_preset(
    preset: OfflinePreset, *, soundfont: Path | None = None, sample_rate: int = 16000, n_samples: int = 64000,
    note_seconds: float = 3.0,
) -> tuple[dict[str, np.ndarray], list[dict[str, str]]]:
    """Render every note of a preset (no features yet).

    Parameters
    ----------
    preset
        Which programs, pitches and velocities (see :data:`PRESETS`).
    soundfont
        SoundFont file; default :func:`soundfont_path`.
    sample_rate
        Output rate, Hz.
    n_samples
        Samples per note (64000 = 4 s at 16 kHz).
    note_seconds
        How long the key is held before note-off, seconds (NSynth: 3 s).

    Returns
    -------
    examples
        ``audio`` (N, n_samples) float32 peaking at <= 0.9, ``pitch``, ``velocity`` (N,) int32, ``instrument``,
        ``family``, ``id`` (N,) str and ``group`` (N,) str (``"<program>-<pitch>"``, the unit of splitting).
    skipped
        One ``{"id", "reason"}`` per note left out (silent).

    Examples
    --------
    >>> examples, skipped = render_preset(PRESETS["tiny"])  # doctest: +SKIP
    >>> examples["audio"].shape  # doctest: +SKIP
    (6, 64000)

    See Also
    --------
    prepare_offline : render, label with CREPE and loudness, split and write.
    """
    if sample_rate <= 0 or n_samples <= 0:
        raise ValueError(f"sample_rate and n_samples must be positive, got {sample_rate=}, {n_samples=}")
    if not 0 < note_seconds <= n_samples / sample_rate:
        raise ValueError(f"note_seconds must be in (0, {n_samples / sample_rate}], got {note_seconds}")
    unknown = [p for p in preset.programs if p not in INSTRUMENTS]
    if unknown:
        raise ValueError(f"programs {unknown} are not in INSTRUMENTS (known: {sorted(INSTRUMENTS)})")
    soundfont = soundfont_path() if soundfont is None else Path(soundfont)
    rows: dict[str, list] = {key: [] for key in ("audio", "pitch", "velocity", "instrument", "family", "id", "group")}
    skipped: list[dict[str, str]] = []
    for program in preset.programs:
        instrument = INSTRUMENTS[program]
        notes = [(pitch, velocity) for prog, pitch, velocity in preset.notes() if prog == program]
        audio = _render_program_notes(
            soundfont, program, notes, sample_rate=sample_rate, n_samples=n_samples, note_seconds=note_seconds
        )
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        gain = _PEAK / peak if peak > 0 else 0.0
        for (pitch, velocity), note_audio in zip(notes, audio, strict=True):
            note_id = f"{instrument.name}-{pitch:03d}-{velocity:03d}"
            scaled = (note_audio * np.float32(gain)).astype(np.float32)
            if np.max(np.abs(scaled)) < _SILENT_PEAK:
                logger.warning("skipping %s: silent (peak below -60 dBFS; no sample mapped to this key)", note_id)
                skipped.append({"id": note_id, "reason": "silent: peak below -60 dBFS"})
                continue
            rows["audio"].append(scaled)
            rows["pitch"].append(pitch)
            rows["velocity"].append(velocity)
            rows["instrument"].append(instrument.name)
            rows["family"].append(instrument.family)
            rows["id"].append(note_id)
            rows["group"].append(f"{program:03d}-{pitch:03d}")
    examples = {
        "audio": np.stack(rows["audio"]) if rows["audio"] else np.zeros((0, n_samples), np.float32),
        "pitch": np.asarray(rows["pitch"], np.int32),
        "velocity": np.asarray(rows["velocity"], np.int32),
        **{key: np.asarray(rows[key], dtype=str) for key in ("instrument", "family", "id", "group")},
    }
    return examples, skipped


def prepare_offline(
    preset: str,
    out_dir: Path,
    *,
    crepe_model: str | None = None,
    cache_dir: Path | None = None,
    soundfont: Path | None = None,
    progress: bool = True,
) -> Path:
    """Build (or reuse) the offline dataset of a preset: render notes, compute f0 and loudness, split, write.

    If ``out_dir`` already holds a complete dataset built with the same settings (the manifest's ``build``
    section matches), it is returned as is.

    Parameters
    ----------
    preset
        ``"tiny"``, ``"demo"`` or ``"full"`` (see :data:`PRESETS`).
    out_dir
        Folder to write (``manifest.json`` and the shards of each split, see :mod:`train.data.dataset`).
    crepe_model
        ``"tiny"`` or ``"full"``; default: the preset's.
    cache_dir
        Feature cache folder; default ``out_dir / "cache"``.
    soundfont
        SoundFont file; default :func:`soundfont_path`.
    progress
        Show a progress bar while extracting features.

    Returns
    -------
    Path
        ``out_dir``.

    Examples
    --------
    >>> path = prepare_offline("tiny", Path("data/offline-tiny"), crepe_model="tiny")  # doctest: +SKIP
    >>> load_split(path, "train")["audio"].shape  # doctest: +SKIP
    (4, 64000)

    See Also
    --------
    render_preset : the rendering step alone.
    train.data.dataset.load_split : read a split back.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    spec = PRESETS[preset]
    out_dir = Path(out_dir)
    soundfont = soundfont_path() if soundfont is None else Path(soundfont)
    feature_config = FeatureConfig(crepe_model=crepe_model or spec.crepe_model)
    build = {
        "source": "offline",
        "preset": asdict(spec),
        "soundfont": soundfont.name,
        "soundfont_sha256": _sha256(soundfont),
        "render": {"render_rate": _RENDER_RATE, "note_seconds": 3.0, "peak": _PEAK, "resampler": "soxr VHQ"},
        "features": feature_config.to_dict(),
    }
    if _build.is_up_to_date(out_dir, build):
        logger.info("%s is up to date (preset %s)", out_dir, preset)
        return out_dir
    logger.info("rendering %d notes of preset %s", len(spec.notes()), preset)
    examples, skipped = render_preset(spec, soundfont=soundfont)
    return _build.build_dataset(
        out_dir,
        examples,
        build=build,
        details={"programs": list(spec.programs), "pitches": sorted(set(examples["pitch"].tolist())),
                 "velocities": list(spec.velocities)},
        skipped=skipped,
        feature_config=feature_config,
        cache_dir=cache_dir,
        progress=progress,
    )


__all__ = ["INSTRUMENTS", "Instrument", "OfflinePreset", "PRESETS", "prepare_offline", "render_preset", "soundfont_path"]
