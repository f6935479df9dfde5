"""MIDI to the model's controls: notes -> voices -> f0 and loudness per frame.

* **Notes** are read with ``pretty_midi`` (every non-drum track merged).
* **Loudness envelopes** come from the run's training data (``note_envelopes.npz`` in the run, made once from the
  prepared dataset's training split): the mean loudness curve of the training notes at each (pitch, velocity)
  the data holds. The data's notes are NSynth-style, held :data:`HELD_SECONDS` then released, so a curve is an
  attack-and-sustain part and a release part. A MIDI note of pitch ``p`` and velocity ``v`` takes the curve of the
  nearest pitch, interpolated linearly between the two nearest velocities; it follows the held part for as long as
  the key is down (holding the level of the held part's last 0.2 s past its end), and from note-off the release
  part, moved to start from the level reached.
* **f0**: the note's pitch (``midi_to_hz``), held through the release; optional vibrato (sine, in cents) and
  portamento (a glide in log frequency from the voice's previous note).
* **Polyphony**: notes go to voices greedily; a voice is free again once its last note's release has ended. Each
  voice is one batch row for the model, and the rows are summed. A voice's noise key is derived from its first
  note (pitch and start frame), so a note sounds the same whatever else plays with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddsp_core.core import hz_to_midi, midi_to_hz

logger = logging.getLogger(__name__)

HELD_SECONDS = 3.0
"""How long the training notes are held before note-off (NSynth and the offline SoundFont set)."""
SUSTAIN_SECONDS = 0.2
"""The level held past the end of the data's held part is the mean of its last this-many seconds."""
ENVELOPES_NAME = "note_envelopes.npz"


@dataclass(frozen=True)
class Note:
    """One MIDI note: start and end in seconds, MIDI pitch and velocity (1..127)."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int


@dataclass(frozen=True)
class NoteEnvelopes:
    """Mean training loudness curves per (pitch, velocity).

    Attributes
    ----------
    pitches : (n_pitches,) int, sorted
    velocities : (n_velocities,) int, sorted
    curves_db : (n_pitches, n_velocities, n_frames) float; NaN rows where the data has no such note
    held_frames : int
        Frames of the held part of each curve (the rest is the release).
    """

    pitches: np.ndarray
    velocities: np.ndarray
    curves_db: np.ndarray
    held_frames: int


def read_notes(path: Path) -> list[Note]:
    """The notes of a MIDI file, sorted by start time.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it cannot be parsed as MIDI, or holds no (non-drum) notes.
    """
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MIDI file {path} does not exist")
    try:
        song = pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # pretty_midi/mido raise many kinds (OSError, EOFError, KeyError, ValueError...)
        raise ValueError(f"{path} is not a readable MIDI file ({type(error).__name__}: {error})") from None
    notes = [
        Note(float(n.start), float(n.end), int(n.pitch), int(n.velocity))
        for instrument in song.instruments
        if not instrument.is_drum
        for n in instrument.notes
        if n.end > n.start
    ]
    if not notes:
        raise ValueError(f"MIDI file {path} has no notes (drum tracks are ignored)")
    return sorted(notes, key=lambda n: (n.start_s, n.pitch))


def envelopes_from_examples(
    loudness_db: np.ndarray, pitch: np.ndarray, velocity: np.ndarray, *, frame_rate: float
) -> NoteEnvelopes:
    """Mean loudness curve per (pitch, velocity) of training examples with known pitch and velocity.

    Parameters
    ----------
    loudness_db : (n_examples, n_frames)
    pitch, velocity : (n_examples,) int, -1 where unknown
    frame_rate : float
        Frames per second (to place the note-off at :data:`HELD_SECONDS`).

    Raises
    ------
    ValueError
        If no example has a known pitch and velocity (e.g. a folder of the user's own recordings).
    """
    known = (np.asarray(pitch) >= 0) & (np.asarray(velocity) >= 0)
    if not known.any():
        raise ValueError("the training data has no notes of known pitch and velocity, so MIDI velocities cannot be "
                         "mapped to loudness (train on the offline or NSynth data to play MIDI)")
    loudness_db, pitch, velocity = np.asarray(loudness_db)[known], np.asarray(pitch)[known], np.asarray(velocity)[known]
    pitches, velocities = np.unique(pitch), np.unique(velocity)
    curves = np.full((len(pitches), len(velocities), loudness_db.shape[1]), np.nan, np.float32)
    for i, p in enumerate(pitches):
        for j, v in enumerate(velocities):
            rows = (pitch == p) & (velocity == v)
            if rows.any():
                curves[i, j] = loudness_db[rows].mean(axis=0)
    held_frames = min(int(round(HELD_SECONDS * frame_rate)), loudness_db.shape[1] - 1)
    return NoteEnvelopes(pitches, velocities, curves, held_frames)


def save_envelopes(path: Path, envelopes: NoteEnvelopes) -> None:
    """Write envelopes as ``.npz`` (atomically)."""
    from ddsp_core._io import atomic_open

    with atomic_open(path, "wb") as handle:
        np.savez(handle, pitches=envelopes.pitches, velocities=envelopes.velocities, curves_db=envelopes.curves_db,
                 held_frames=np.int64(envelopes.held_frames))


def load_envelopes(path: Path) -> NoteEnvelopes:
    """Read envelopes written by :func:`save_envelopes`."""
    with np.load(path, allow_pickle=False) as data:
        return NoteEnvelopes(data["pitches"], data["velocities"], data["curves_db"], int(data["held_frames"]))


def _curve(envelopes: NoteEnvelopes, pitch: int, velocity: int) -> np.ndarray:
    """The curve of the nearest pitch, linear in velocity between the nearest velocities that pitch has."""
    order = np.argsort(np.abs(envelopes.pitches - pitch), kind="stable")
    for index in order:
        rows = envelopes.curves_db[index]
        have = ~np.isnan(rows[:, 0])
        if have.any():
            velocities, rows = envelopes.velocities[have], rows[have]
            # Interpolating each one-hot column gives the linear-interpolation weight of each known velocity.
            weights = np.array([np.interp(velocity, velocities, column) for column in np.eye(len(velocities))])
            return weights @ rows
    raise ValueError("note envelopes hold no curve")


def note_loudness(envelopes: NoteEnvelopes, note: Note, *, n_frames: int, frame_rate: float) -> np.ndarray:
    """Loudness (dB) of one note over ``n_frames`` frames from its onset: held part, sustain, then release."""
    curve = _curve(envelopes, note.pitch, note.velocity)
    held = envelopes.held_frames
    key_down = max(1, int(round((note.end_s - note.start_s) * frame_rate)))
    sustain_level = float(np.mean(curve[max(0, held - int(round(SUSTAIN_SECONDS * frame_rate))) : held]))
    attack = curve[: min(key_down, held)]
    sustained = np.full(max(0, key_down - held), sustain_level, np.float32)
    on = np.concatenate([attack, sustained])
    release = curve[held:] - curve[held - 1] + on[-1]
    loudness = np.concatenate([on, release])
    tail = np.full(max(0, n_frames - loudness.size), release[-1] if release.size else on[-1], np.float32)
    return np.concatenate([loudness, tail])[:n_frames].astype(np.float32)


def release_frames(envelopes: NoteEnvelopes) -> int:
    """Frames of the release part (a voice is busy this long after a note-off)."""
    return envelopes.curves_db.shape[-1] - envelopes.held_frames


def allocate_voices(notes: list[Note], *, release_s: float) -> list[list[Note]]:
    """Greedy voice allocation: each note takes the first voice whose last note (with its release) has ended."""
    voices: list[list[Note]] = []
    for note in notes:
        for voice in voices:
            if voice[-1].end_s + release_s <= note.start_s:
                voice.append(note)
                break
        else:
            voices.append([note])
    return voices


def voice_controls(
    voice: list[Note],
    envelopes: NoteEnvelopes,
    *,
    n_frames: int,
    frame_rate: float,
    silence_db: float,
    vibrato_hz: float = 5.0,
    vibrato_cents: float = 0.0,
    portamento_s: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(f0_hz, loudness_db), each ``(n_frames,)``, of one voice: its notes one after another.

    Before the first note the voice is at ``silence_db`` on the first note's pitch; each note's loudness runs
    from its onset frame to the next note's onset (or the end).
    """
    times = np.arange(n_frames) / frame_rate
    pitch_midi = np.full(n_frames, voice[0].pitch, np.float64)
    loudness_db = np.full(n_frames, silence_db, np.float32)
    previous_pitch = None
    for index, note in enumerate(voice):
        start = int(round(note.start_s * frame_rate))
        stop = int(round(voice[index + 1].start_s * frame_rate)) if index + 1 < len(voice) else n_frames
        if start >= n_frames:
            break
        loudness_db[start:stop] = note_loudness(envelopes, note, n_frames=stop - start, frame_rate=frame_rate)
        segment = np.full(stop - start, float(note.pitch))
        if previous_pitch is not None and portamento_s > 0:
            glide = np.clip((times[start:stop] - note.start_s) / portamento_s, 0.0, 1.0)
            segment = previous_pitch + (note.pitch - previous_pitch) * glide
        pitch_midi[start:stop] = segment
        previous_pitch = note.pitch
    if vibrato_cents:
        pitch_midi = pitch_midi + vibrato_cents / 100.0 * np.sin(2 * np.pi * vibrato_hz * times)
    return np.asarray(midi_to_hz(pitch_midi.astype(np.float32))), loudness_db


def pitch_range_warning(notes: list[Note], f0_hz_range: list[float] | None) -> str | None:
    """A warning naming the notes' range and the training range if any note lies outside it, else None."""
    if not f0_hz_range:
        return None
    low_midi, high_midi = (float(hz_to_midi(np.asarray(f, np.float32))) for f in f0_hz_range)
    lowest, highest = min(n.pitch for n in notes), max(n.pitch for n in notes)
    if lowest >= np.floor(low_midi) and highest <= np.ceil(high_midi):
        return None
    lowest_hz, highest_hz = (float(midi_to_hz(np.asarray(p, np.float32))) for p in (lowest, highest))
    return (f"notes span MIDI {lowest}..{highest} ({lowest_hz:.1f}..{highest_hz:.1f} Hz), outside the training range MIDI {low_midi:.0f}.."
            f"{high_midi:.0f} ({f0_hz_range[0]:.1f}..{f0_hz_range[1]:.1f} Hz); the model was not trained there "
            "(use --transpose SEMITONES to move the song)")
