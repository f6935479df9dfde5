"""Playing a trained run live (train.live): stream, play (MIDI) and export, with their one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from ddsp_core import processors, stream_engine
from ddsp_core.crepe import estimate_f0, load_crepe_params
from ddsp_core.decoder import DDSPDecoder, scale_decoder_inputs
from ddsp_core.model import DDSPAutoencoder
from tests.train.test_midi import write_midi
from train import live, midi
from train.cli import main

SAMPLE_RATE = 16000
HOP = 64


@pytest.fixture(scope="module")
def input_wav(tmp_path_factory) -> Path:
    t = np.arange(int(0.6 * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.4 * np.sin(2 * np.pi * 330.0 * t) * np.minimum(1.0, t / 0.05)
    path = tmp_path_factory.mktemp("audio") / "in.wav"
    soundfile.write(path, audio.astype(np.float32), SAMPLE_RATE)
    return path


def test_stream_command_writes_aligned_audio_and_prints_latency_and_real_time_factor(trained_run, input_wav,
                                                                                     tmp_path, capsys):
    output = tmp_path / "out.wav"
    assert main(["stream", str(trained_run), str(input_wav), str(output), "--block", "128"]) == 0
    printed = capsys.readouterr().out
    assert "latency: 1152 samples = 72.0 ms (block 128 + feature lookahead 960 + synthesis 64)" in printed
    assert "real-time factor" in printed
    audio, rate = soundfile.read(output)
    assert rate == SAMPLE_RATE and len(audio) == int(0.6 * SAMPLE_RATE)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0


def test_stream_low_lookahead_has_no_feature_wait(trained_run, input_wav, tmp_path, capsys):
    assert main(["stream", str(trained_run), str(input_wav), str(tmp_path / "o.wav"), "--block", "64",
                 "--lookahead", "low"]) == 0
    assert "latency: 128 samples = 8.0 ms (block 64 + feature lookahead 0 + synthesis 64)" in capsys.readouterr().out


def test_block_that_is_not_whole_hops_is_a_one_line_error(trained_run, input_wav, tmp_path, capsys):
    assert main(["stream", str(trained_run), str(input_wav), str(tmp_path / "o.wav"), "--block", "100"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("ddsp-train: error: --block 100 samples is not a whole number of hops (64 samples at 16000 Hz); "
                     "use a multiple of 64, e.g. 64")
    assert not (tmp_path / "o.wav").exists()


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "no-run"), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"ddsp-train: error: run folder {tmp_path / 'no-run'} does not exist"
    assert not (tmp_path / "out").exists()


PLAYER_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import ddsp_player
player = getattr(ddsp_player, sys.argv[4])(sys.argv[1])
inputs = np.load(sys.argv[2])
state, outputs = player.initial_state(), []
for f0, loudness in zip(inputs["f0_hz"], inputs["loudness_db"]):
    state, audio = player.step(state, f0, loudness)
    outputs.append(np.asarray(audio))
np.save(sys.argv[3], np.concatenate(outputs))
refused = []
wrong_shape = [np.zeros(3, np.float32)] + list(state[1:])
for bad in ((state[1:], inputs["f0_hz"][0], inputs["loudness_db"][0]),
            (wrong_shape, inputs["f0_hz"][0], inputs["loudness_db"][0]),
            (state, inputs["f0_hz"][0, :1], inputs["loudness_db"][0, :1])):
    try:
        player.step(*bad)
    except ValueError as error:
        refused.append(str(error))
print(json.dumps({"modules": sorted(m for m in ("equinox", "ddsp_core", "train", "jax") if m in sys.modules),
                  "refused": refused}))
"""


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("exports") / "export"
    assert main(["export", str(trained_run), str(out_dir), "--block", "128"]) == 0
    return out_dir


def test_export_writes_a_manifest_with_both_artifacts(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["sample_rate"] == SAMPLE_RATE and manifest["block_samples"] == 128
    assert manifest["block_frames"] == 2 and manifest["latency_samples"]["synthesis"] == HOP
    assert manifest["state"][0] == {"name": "hidden", "shape": [manifest["state"][0]["shape"][0]], "dtype": "float32"}
    assert len(manifest["config_sha256"]) == 64
    assert manifest["jax_export"] == "step.jax" and manifest["onnx"] == "step.onnx"
    assert (exported / "step.jax").stat().st_size > 0 and (exported / "step.onnx").stat().st_size > 0


@pytest.mark.parametrize(("player", "imports"), [("ExportedInstrument", ["jax"]), ("OnnxInstrument", [])])
def test_exported_player_reproduces_the_stream_and_refuses_a_foreign_state_in_one_line(
    trained_run, exported, tmp_path, player, imports
):
    """Both loaders (jax.export; ONNX in onnxruntime) play 6 blocks with the state fed back, equal to the in-process
    stream to 1e-4 of its peak, without importing ddsp-jax, Equinox (or, for ONNX, jax)."""
    manifest = json.loads((exported / "manifest.json").read_text())
    _, model, _ = live.load_model(trained_run)
    rng = np.random.default_rng(0)
    f0_hz = (330.0 * 2 ** rng.normal(0, 0.05, (6, 2))).astype(np.float32)
    loudness_db = rng.uniform(-50, -20, (6, 2)).astype(np.float32)
    state, expected = stream_engine.init_state(model, key=jax.random.key(0)), []
    for f0, loudness in zip(f0_hz, loudness_db):
        state, audio = stream_engine.process_block(model, state, f0, loudness)
        expected.append(np.asarray(audio))
    np.savez(tmp_path / "inputs.npz", f0_hz=f0_hz, loudness_db=loudness_db)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PLAYER_SCRIPT, str(exported), str(tmp_path / "inputs.npz"),
                           str(tmp_path / "played.npy"), player], capture_output=True, text=True, cwd=tmp_path,
                          env={**environment, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] == imports
    n_arrays, hidden = len(manifest["state"]), manifest["state"][0]["shape"][0]
    assert report["refused"] == [
        f"state has {n_arrays - 1} arrays, this instrument's has {n_arrays} (see manifest.json)",
        f"state array hidden has shape (3,) float32, expected ({hidden},) float32 (a state from another export?)",
        "f0_hz must have shape (2,) for this export's block of 2 frames, got (1,)",
    ]
    played, expected = np.load(tmp_path / "played.npy"), np.concatenate(expected)
    assert np.max(np.abs(played - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_export_into_a_non_empty_folder_is_refused(trained_run, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["export", str(trained_run), str(tmp_path / "busy")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_play_command_renders_every_note_with_its_release(trained_run, tmp_path, capsys):
    run = shutil.copytree(trained_run, tmp_path / "run")  # play stores the note envelopes with the run
    song = write_midi(tmp_path / "line.mid", [(0.0, 0.5, 60, 100), (0.5, 1.0, 64, 80)])
    assert main(["play", str(run), str(song), str(tmp_path / "out.wav")]) == 0
    assert "played 2 notes on 2 voices" in capsys.readouterr().out
    envelopes = midi.load_envelopes(run / midi.ENVELOPES_NAME)  # made from the training data, stored with the run
    release_s = midi.release_frames(envelopes) / 250.0
    audio, rate = soundfile.read(tmp_path / "out.wav")
    assert rate == SAMPLE_RATE and len(audio) == int(np.ceil((1.0 + release_s) * 250.0)) * HOP


def test_play_refuses_a_midi_file_without_notes(trained_run, tmp_path, capsys):
    song = write_midi(tmp_path / "drums.mid", [(0.0, 0.5, 36, 100)], drum=True)
    assert main(["play", str(trained_run), str(song), str(tmp_path / "out.wav")]) == 2
    assert "has no notes (drum tracks are ignored)" in capsys.readouterr().err
    assert not (tmp_path / "out.wav").exists()


# The MIDI player's sound, with a model whose behaviour is known: amplitude follows loudness ----------------------
class LoudnessFollower(DDSPDecoder):
    """A stand-in for a trained decoder: harmonic amplitude ``exp_sigmoid(20 (loudness / 80 + 1 - 0.6))`` (silent
    below about -40 dB, loud above -20 dB), flat harmonic distribution, constant noise magnitudes."""

    def __init__(self, instrument):
        super().__init__(output_sizes=instrument.control_sizes(), hidden_size=2, n_mlp_layers=1,
                         key=jax.random.key(0))

    def gru_inputs(self, f0_hz, loudness_db, z=None):
        features = scale_decoder_inputs(f0_hz, loudness_db)  # [n_frames, 2]
        return jnp.zeros_like(features), features

    def outputs(self, hidden_states, skip):
        n_frames = skip.shape[0]
        raw = {name: jnp.zeros((n_frames, size)) for name, size in self.output_splits}
        raw["harmonic/amplitude"] = 20.0 * (skip[:, 1:2] - 0.6)
        return raw


@pytest.fixture(scope="module")
def follower():
    instrument = processors.Instrument(
        sources=(processors.Harmonic(n_harmonics=20), processors.FilteredNoise(n_bands=17, initial_bias=-8.0)),
        weights=(1.0, 0.05), sample_rate=SAMPLE_RATE, hop_size=HOP)
    return DDSPAutoencoder(instrument=instrument, decoder=LoudnessFollower(instrument))


def _step_envelopes():
    """Training notes that reach their level at once: -20 dB held 3 s, then silence."""
    curve = np.where(np.arange(1000) < 750, -20.0, -80.0)
    return midi.envelopes_from_examples(curve[None], np.array([60]), np.array([100]), frame_rate=250.0)


def _render(model, notes, n_frames, seed=0):
    envelopes = _step_envelopes()
    voices = midi.allocate_voices(notes, release_s=0.0)
    controls = [midi.voice_controls(v, envelopes, n_frames=n_frames, frame_rate=250.0, silence_db=-80.0)
                for v in voices]
    keys = jnp.stack([live.voice_key(seed, v[0].pitch, int(round(v[0].start_s * 250))) for v in voices])
    return live.render_voices(model, np.stack([c[0] for c in controls]), np.stack([c[1] for c in controls]), keys)


def test_midi_line_plays_the_notes_pitches_within_10_cents_and_onsets_within_one_hop(follower):
    notes = [midi.Note(0.1, 0.6, 57, 100), midi.Note(0.8, 1.3, 64, 100)]
    audio = _render(follower, notes, n_frames=375).sum(axis=0)
    f0_hz, confidence = estimate_f0(load_crepe_params("full"), audio, hop_size=HOP, decoder="local_average")
    for note in notes:
        middle = slice(int((note.start_s + 0.1) * 250), int((note.end_s - 0.1) * 250))
        cents = 1200 * np.log2(np.asarray(f0_hz)[middle] / (440.0 * 2 ** ((note.pitch - 69) / 12)))
        assert np.median(np.abs(cents)) < 10.0
        window = np.abs(audio[int(note.start_s * SAMPLE_RATE) - 400 : int(note.start_s * SAMPLE_RATE) + 400])
        onset = int(note.start_s * SAMPLE_RATE) - 400 + int(np.argmax(window > 0.1 * window.max()))
        assert abs(onset - note.start_s * SAMPLE_RATE) <= HOP


def test_chord_renders_as_the_sum_of_its_voices(follower):
    chord = [midi.Note(0.1, 0.5, p, 100) for p in (60, 64, 67)]
    together = _render(follower, chord, n_frames=200).sum(axis=0)
    alone = sum(_render(follower, [note], n_frames=200)[0] for note in chord)
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5 * np.max(np.abs(alone)))
