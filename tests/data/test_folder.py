"""Tests for train/data/folder.py: decoding any rate/width/channels to 16 kHz mono, chunking, bad files."""

import json
import logging

import numpy as np
import pytest
import soundfile

from train.data import features, folder
from train.data.dataset import SPLITS, DataError, load_manifest, load_split
from train.data.folder import chunk_audio, load_audio, prepare_folder

EXAMPLE_SECONDS = 0.5


def _tone(seconds, sample_rate, f0=440.0, channels=1, amplitude=0.5):
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    mono = amplitude * np.sin(2 * np.pi * f0 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def _peak_hz(audio, sample_rate=16000):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.argmax(spectrum) * sample_rate / len(audio)


@pytest.fixture(autouse=True)
def no_crepe(monkeypatch):
    """Run the folder tests with loudness-only features and a constant f0 (CREPE is tested elsewhere)."""
    real = features.compute_features

    def fast(audio, config, *, include_f0=True, progress=False):
        loudness = real(audio, config, include_f0=False)["loudness_db"]
        if not include_f0:
            return {"loudness_db": loudness}
        return {"f0_hz": np.full_like(loudness, 440.0), "f0_confidence": np.ones_like(loudness),
                "loudness_db": loudness}

    monkeypatch.setattr(features, "compute_features", fast)


@pytest.mark.parametrize(
    ("sample_rate", "channels", "subtype"),
    [(44100, 2, "PCM_24"), (48000, 1, "FLOAT"), (8000, 1, "PCM_16"), (16000, 2, "PCM_U8")],
    ids=["44k1-stereo-24bit", "48k-float", "8k-mono-16bit", "16k-stereo-8bit-unsigned"],
)
def test_any_rate_width_and_channel_count_loads_as_16k_mono_of_the_right_length(
    tmp_path, sample_rate, channels, subtype
):
    path = tmp_path / "clip.wav"
    soundfile.write(path, _tone(1.25, sample_rate, channels=channels), sample_rate, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (20000,)
    assert abs(_peak_hz(audio) - 440.0) < 1.0
    assert np.isclose(np.max(np.abs(audio[2000:-2000])), 0.5, atol=0.02)


def test_flac_and_ogg_load_too(tmp_path):
    for name, fmt in (("a.flac", "FLAC"), ("a.ogg", "OGG")):
        soundfile.write(tmp_path / name, _tone(1.0, 22050), 22050, format=fmt)
        audio = load_audio(tmp_path / name)
        assert audio.shape == (16000,)
        assert abs(_peak_hz(audio) - 440.0) < 1.5


def test_stereo_is_mixed_down_as_the_channel_mean(tmp_path):
    left, right = _tone(1.0, 16000, 440.0), _tone(1.0, 16000, 660.0, amplitude=0.2)
    soundfile.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), (left + right) / 2, atol=1e-6)


def test_chunks_start_every_hop_and_the_short_tail_is_dropped():
    audio = np.arange(100, dtype=np.float32)
    chunks = chunk_audio(audio, n_samples=30, hop_samples=20)
    assert chunks.shape == (4, 30)
    np.testing.assert_array_equal(chunks[:, 0], [0, 20, 40, 60])
    assert chunk_audio(audio[:29], n_samples=30, hop_samples=20).shape == (0, 30)


def _good_folder(path, n_files=3, seconds=2.0):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        soundfile.write(path / f"take{i}.wav", _tone(seconds, 44100, f0=220.0 * (i + 1), channels=2), 44100)
    return path


def test_prepared_folder_has_the_format_with_disjoint_overlap_free_splits(tmp_path):
    source = _good_folder(tmp_path / "audio")
    soundfile.write(source / "quiet.wav", np.zeros(32000), 16000)  # all chunks silent: dropped
    out = prepare_folder(source, tmp_path / "prepared", example_seconds=EXAMPLE_SECONDS, hop_seconds=0.25,
                         crepe_model="tiny", progress=False)
    manifest = load_manifest(out)
    assert manifest["n_silent_chunks"] == 7 and manifest["skipped"] == []
    assert manifest["n_samples"] == 8000 and manifest["n_frames"] == 125
    spans = {}
    for split in SPLITS:
        arrays = load_split(out, split)
        assert arrays["audio"].shape[1:] == (8000,) and arrays["loudness_db"].shape[1:] == (125,)
        assert arrays["audio"].shape[0] > 0
        for ident in arrays["id"]:
            name, start = ident.rsplit("@", 1)
            spans.setdefault(name, []).append((float(start.rstrip("s")), split))
    for name, items in spans.items():
        for start, split in items:
            for other_start, other_split in items:
                if split != other_split:
                    assert abs(start - other_start) >= EXAMPLE_SECONDS, (name, start, other_start)
    assert sum(manifest["counts"].values()) + manifest["n_overlap_dropped"] == 3 * 7


def _prepare(source, tmp_path):
    return prepare_folder(source, tmp_path / "prepared", example_seconds=EXAMPLE_SECONDS, crepe_model="tiny",
                          progress=False)


def _skipped(out):
    return {entry["file"]: entry["reason"] for entry in load_manifest(out)["skipped"]}


def test_an_empty_folder_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the folder is empty \(expected WAV/FLAC/OGG files\)"):
        _prepare(tmp_path / "empty", tmp_path)
    with pytest.raises(DataError, match="missing: not a folder"):
        _prepare(tmp_path / "missing", tmp_path)
    assert not (tmp_path / "prepared").exists()


def test_bad_files_are_skipped_with_a_warning_naming_them_and_counted_in_the_manifest(tmp_path, caplog):
    source = _good_folder(tmp_path / "audio")
    (source / "notes.txt").write_text("not audio")
    (source / "fake.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    whole = (source / "take0.wav").read_bytes()
    (source / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    soundfile.write(source / "short.wav", _tone(0.3, 16000), 16000)
    with_nan = _tone(1.0, 16000)
    with_nan[100] = np.nan
    soundfile.write(source / "nan.wav", with_nan, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="train.data.folder"):
        out = _prepare(source, tmp_path)
    skipped = _skipped(out)
    assert sorted(skipped) == ["fake.wav", "nan.wav", "notes.txt", "short.wav", "truncated.wav"]
    assert "not readable as audio" in skipped["notes.txt"] and "not readable as audio" in skipped["fake.wav"]
    assert skipped["truncated.wav"].startswith("truncated WAV: header declares")
    assert skipped["short.wav"] == "shorter than one example (0.30 s, expected >= 0.5 s)"
    assert skipped["nan.wav"] == "holds NaN or infinite samples (expected finite audio)"
    warned = " ".join(record.getMessage() for record in caplog.records)
    for name in skipped:
        assert name in warned
    assert sum(load_manifest(out)["counts"].values()) == 3 * 4  # the good files still give all their chunks


def test_a_folder_with_nothing_usable_is_an_error_and_writes_nothing(tmp_path):
    source = tmp_path / "audio"
    source.mkdir()
    (source / "readme.md").write_text("# my recordings")
    soundfile.write(source / "click.wav", _tone(0.1, 16000), 16000)
    with pytest.raises(DataError, match=r"audio: no usable example \(2 files, 2 skipped"):
        _prepare(source, tmp_path)
    assert not (tmp_path / "prepared" / "manifest.json").exists()


def test_a_complete_wav_is_not_reported_as_truncated(tmp_path):
    path = tmp_path / "ok.wav"
    soundfile.write(path, _tone(0.5, 16000), 16000)
    assert folder._wav_truncation(path) is None
    path.write_bytes(path.read_bytes()[:-10])
    assert "file holds" in folder._wav_truncation(path)


def test_preparing_again_reuses_the_folder_and_a_changed_file_rebuilds_it(tmp_path):
    source = _good_folder(tmp_path / "audio", n_files=3, seconds=1.0)
    out = _prepare(source, tmp_path)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    before = json.loads((out / "manifest.json").read_text())["build"]["files"]
    _prepare(source, tmp_path)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    soundfile.write(source / "take0.wav", _tone(1.0, 44100, f0=300.0), 44100)
    _prepare(source, tmp_path)
    after = json.loads((out / "manifest.json").read_text())["build"]["files"]
    assert after["take0.wav"] != before["take0.wav"] and after["take1.wav"] == before["take1.wav"]


@pytest.mark.parametrize(("validation_fraction", "test_fraction"), [(0.0, 0.0), (0.25, 0.0), (0.0, 0.5)])
def test_split_fractions_choose_how_many_examples_are_held_out(tmp_path, validation_fraction, test_fraction):
    out = prepare_folder(_good_folder(tmp_path / "audio", n_files=4), tmp_path / "prepared",
                         example_seconds=EXAMPLE_SECONDS, crepe_model="tiny", progress=False,
                         validation_fraction=validation_fraction, test_fraction=test_fraction)
    counts = load_manifest(out)["counts"]
    n_examples = 4 * 4  # 2 s files, 0.5 s examples, no overlap
    assert sum(counts.values()) == n_examples
    assert counts["validation"] == round(validation_fraction * n_examples)
    assert counts["test"] == round(test_fraction * n_examples)
