"""MIDI to controls (train.midi): notes, training-data envelopes, voices, f0 and loudness per frame."""

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from train import midi

FRAME_RATE = 250.0
N_FRAMES = 1000  # 4 s training notes, held 3 s


def write_midi(path: Path, notes: list[tuple[float, float, int, int]], *, drum: bool = False) -> Path:
    """A one-track MIDI file of (start_s, end_s, pitch, velocity) notes."""
    song = pretty_midi.PrettyMIDI()
    track = pretty_midi.Instrument(program=0, is_drum=drum)
    track.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for s, e, p, v in notes]
    song.instruments.append(track)
    song.write(str(path))
    return path


def synthetic_envelopes() -> midi.NoteEnvelopes:
    """Training notes at pitches 48 and 60, velocities 50 and 100: a 40 ms linear attack to a level set by the
    velocity (-40 dB at 50, -20 dB at 100), held to 3 s, then -20 dB per second of release."""
    t = np.arange(N_FRAMES) / FRAME_RATE
    curves, pitch, velocity = [], [], []
    for p in (48, 60):
        for v, level in ((50, -40.0), (100, -20.0)):
            attack = np.clip(t / 0.04, 0, 1) * (level + 80.0) - 80.0
            curves.append(np.where(t < 3.0, attack, level - 20.0 * (t - 3.0)))
            pitch.append(p)
            velocity.append(v)
    return midi.envelopes_from_examples(np.array(curves), np.array(pitch), np.array(velocity), frame_rate=FRAME_RATE)


def test_read_notes_sorted_and_drums_ignored(tmp_path):
    path = write_midi(tmp_path / "line.mid", [(0.5, 1.0, 64, 90), (0.0, 0.5, 60, 80)])
    notes = midi.read_notes(path)
    assert [(n.pitch, n.velocity) for n in notes] == [(60, 80), (64, 90)]
    assert notes[1].start_s == pytest.approx(0.5, abs=1e-3) and notes[1].end_s == pytest.approx(1.0, abs=1e-3)


def test_midi_without_notes_is_refused(tmp_path):
    path = write_midi(tmp_path / "drums.mid", [(0.0, 0.5, 36, 100)], drum=True)
    with pytest.raises(ValueError, match="has no notes"):
        midi.read_notes(path)


def test_unreadable_or_missing_midi_is_named(tmp_path):
    garbage = tmp_path / "song.mid"
    garbage.write_bytes(b"not a midi file at all")
    with pytest.raises(ValueError, match="song.mid is not a readable MIDI file"):
        midi.read_notes(garbage)
    with pytest.raises(FileNotFoundError, match="missing.mid does not exist"):
        midi.read_notes(tmp_path / "missing.mid")


def test_envelopes_need_notes_of_known_pitch_and_velocity():
    with pytest.raises(ValueError, match="no notes of known pitch and velocity"):
        midi.envelopes_from_examples(np.zeros((2, 10)), np.array([-1, -1]), np.array([-1, -1]), frame_rate=250.0)


def test_note_loudness_follows_training_curve_then_releases_from_the_level_reached():
    envelopes = synthetic_envelopes()
    assert envelopes.held_frames == 750
    short = midi.note_loudness(envelopes, midi.Note(0.0, 0.02, 60, 100), n_frames=300, frame_rate=FRAME_RATE)
    # 5 frames of attack (-80 -> -20 over 10 frames), then the release slope from the level reached
    np.testing.assert_allclose(short[:5], -80.0 + 6.0 * np.arange(5), atol=1e-4)
    np.testing.assert_allclose(np.diff(short[5:250]), -20.0 / FRAME_RATE, atol=1e-4)
    long = midi.note_loudness(envelopes, midi.Note(0.0, 5.0, 48, 75), n_frames=1600, frame_rate=FRAME_RATE)
    np.testing.assert_allclose(long[100:1250], -30.0, atol=1e-4)  # velocity 75: halfway between -40 and -20 dB
    assert long[1260] < long[1249] - 0.5  # released after 5 s


def test_nearest_pitch_curve_is_used_for_untrained_pitches():
    envelopes = synthetic_envelopes()
    low = midi.note_loudness(envelopes, midi.Note(0.0, 1.0, 30, 100), n_frames=250, frame_rate=FRAME_RATE)
    at_48 = midi.note_loudness(envelopes, midi.Note(0.0, 1.0, 48, 100), n_frames=250, frame_rate=FRAME_RATE)
    np.testing.assert_array_equal(low, at_48)


def test_chord_takes_one_voice_per_note_and_a_line_one_voice():
    chord = [midi.Note(0.0, 1.0, p, 100) for p in (60, 64, 67)]
    assert [len(v) for v in midi.allocate_voices(chord, release_s=1.0)] == [1, 1, 1]
    line = [midi.Note(0.0, 0.5, 60, 100), midi.Note(1.6, 2.0, 62, 100)]
    assert [len(v) for v in midi.allocate_voices(line, release_s=1.0)] == [2]
    overlapping = [midi.Note(0.0, 0.5, 60, 100), midi.Note(1.0, 2.0, 62, 100)]
    assert [len(v) for v in midi.allocate_voices(overlapping, release_s=1.0)] == [1, 1]


def test_voice_controls_put_pitch_and_onsets_on_the_note_frames():
    envelopes = synthetic_envelopes()
    voice = [midi.Note(0.1, 0.5, 60, 100), midi.Note(2.0, 2.5, 67, 100)]
    f0_hz, loudness_db = midi.voice_controls(voice, envelopes, n_frames=1000, frame_rate=FRAME_RATE,
                                             silence_db=-90.0)
    np.testing.assert_array_equal(loudness_db[:25], -90.0)
    assert loudness_db[25] == pytest.approx(-80.0) and loudness_db[26] > -80.0  # onset at frame 0.1 * 250
    np.testing.assert_allclose(f0_hz[:500], 261.6256, rtol=1e-5)
    np.testing.assert_allclose(f0_hz[500:], 391.9954, rtol=1e-5)
    assert loudness_db[500] == pytest.approx(-80.0)


def test_vibrato_and_portamento_shape_the_pitch():
    envelopes = synthetic_envelopes()
    voice = [midi.Note(0.0, 0.5, 60, 100), midi.Note(2.0, 3.0, 72, 100)]
    f0_hz, _ = midi.voice_controls(voice, envelopes, n_frames=1000, frame_rate=FRAME_RATE, silence_db=-90.0,
                                   vibrato_hz=5.0, vibrato_cents=30.0, portamento_s=0.2)
    cents = 1200 * np.log2(f0_hz / 261.6256)
    assert np.max(np.abs(cents[:500])) == pytest.approx(30.0, abs=0.5)
    glide = cents[500:550] - 30.0 * np.sin(2 * np.pi * 5.0 * np.arange(500, 550) / FRAME_RATE)
    np.testing.assert_allclose(glide, 1200.0 * np.arange(50) / 50, atol=0.5)  # 0.2 s = 50 frames of glide


def test_pitch_range_warning_names_both_ranges():
    notes = [midi.Note(0.0, 1.0, 40, 100), midi.Note(1.0, 2.0, 60, 100)]
    message = midi.pitch_range_warning(notes, [130.8, 523.3])
    assert "notes span MIDI 40..60" in message and "training range MIDI 48..72" in message
    assert midi.pitch_range_warning(notes[1:], [130.8, 523.3]) is None
