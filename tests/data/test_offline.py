"""Tests for train/data/offline.py: SoundFont rendering of NSynth-style notes and the prepared tiny preset."""

import hashlib

import numpy as np
import pytest

from tests.data._synthetic import folder_bytes
from train.data import offline
from train.data.dataset import SPLITS, load_manifest, load_split
from train.data.offline import PRESETS, prepare_offline, render_preset

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def tiny_notes():
    return render_preset(PRESETS["tiny"])


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return prepare_offline("tiny", tmp_path_factory.mktemp("offline") / "tiny", crepe_model="tiny", progress=False)


def _digest(arrays):
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def test_rendering_is_deterministic(tiny_notes):
    again, _ = render_preset(PRESETS["tiny"])
    assert _digest(again) == _digest(tiny_notes[0])


def test_rendered_notes_have_nsynth_shape_and_metadata(tiny_notes):
    examples, skipped = tiny_notes
    assert skipped == []
    assert examples["audio"].shape == (4, 64000) and examples["audio"].dtype == np.float32
    assert examples["pitch"].tolist() == [60, 67, 60, 67]
    assert examples["family"].tolist() == ["string", "string", "flute", "flute"]
    assert examples["id"].tolist()[0] == "string_acoustic_040-060-100"
    assert len(set(examples["id"].tolist())) == 4


def test_rendered_notes_are_neither_clipped_nor_silent_and_are_held_then_released(tiny_notes):
    audio = tiny_notes[0]["audio"]
    peaks = np.max(np.abs(audio), axis=1)
    assert np.all(peaks <= 0.9 + 1e-6) and np.all(peaks > 0.05)
    assert np.isclose(peaks[:2].max(), 0.9, atol=1e-4) and np.isclose(peaks[2:].max(), 0.9, atol=1e-4)

    def rms(start_s, stop_s):
        segment = audio[:, int(start_s * SAMPLE_RATE) : int(stop_s * SAMPLE_RATE)]
        return np.sqrt(np.mean(segment**2, axis=1))

    held, tail = rms(0.5, 2.9), rms(3.8, 4.0)
    assert np.all(held > 0.02), held
    assert np.all(tail < 0.1 * held), (held, tail)  # the key is released at 3 s


def test_a_note_does_not_depend_on_the_notes_rendered_before_it(tiny_notes):
    alone = offline.OfflinePreset("one", programs=(73,), velocities=(100,), pitch_step=1, pitch_range=(67, 67))
    examples, _ = render_preset(alone)
    # The gain is per program (over the notes rendered), so compare the peak-normalised waveforms.
    reference = tiny_notes[0]["audio"][3]
    single = examples["audio"][0]
    np.testing.assert_allclose(single / np.max(np.abs(single)), reference / np.max(np.abs(reference)), atol=1e-5)


def test_unknown_preset_and_program_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="preset must be one of"):
        prepare_offline("huge", tmp_path)
    with pytest.raises(ValueError, match=r"programs \[127\] are not in INSTRUMENTS"):
        render_preset(offline.OfflinePreset("bad", programs=(127,), velocities=(100,)))


def test_presets_have_the_documented_sizes_and_the_full_preset_covers_all_nsynth_families():
    assert [len(PRESETS[name].notes()) for name in ("tiny", "demo", "trumpet", "full")] == [4, 68, 56, 6830]
    families = {offline.INSTRUMENTS[p].family for p in PRESETS["full"].programs}
    assert families == {"bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
                        "synth_lead", "vocal"}


def test_prepared_tiny_preset_has_the_format_and_disjoint_splits(tiny_dataset):
    manifest = load_manifest(tiny_dataset)
    assert manifest["build"]["soundfont_sha256"] == hashlib.sha256(offline.soundfont_path().read_bytes()).hexdigest()
    assert manifest["programs"] == [40, 73] and manifest["velocities"] == [100]
    assert manifest["counts"] == {"train": 2, "validation": 1, "test": 1}
    notes_by_split = {}
    for split in SPLITS:
        arrays = load_split(tiny_dataset, split)
        n = manifest["counts"][split]
        assert arrays["audio"].shape == (n, 64000)
        for name in ("f0_hz", "f0_confidence", "loudness_db"):
            assert arrays[name].shape == (n, 1000) and arrays[name].dtype == np.float32
        notes_by_split[split] = {(i.split("-")[0], int(p)) for i, p in zip(arrays["id"], arrays["pitch"])}
    assert sum(len(v) for v in notes_by_split.values()) == 4
    assert not (notes_by_split["train"] & notes_by_split["validation"])
    assert not (notes_by_split["train"] & notes_by_split["test"])


def test_crepe_f0_on_the_sustained_part_agrees_with_the_midi_pitch(tiny_dataset):
    for split in SPLITS:
        arrays = load_split(tiny_dataset, split)
        sustained = slice(125, 700)  # 0.5 s .. 2.8 s at 250 frames/s
        f0_hz = arrays["f0_hz"][:, sustained]
        cents = 1200 * np.log2(f0_hz / (440.0 * 2 ** ((arrays["pitch"][:, None] - 69) / 12)))
        assert np.all(np.abs(np.median(cents, axis=1)) < 50), (arrays["id"], np.median(cents, axis=1))
        assert np.all(np.median(arrays["f0_confidence"][:, sustained], axis=1) > 0.5)
        assert np.all(arrays["loudness_db"][:, sustained].mean(axis=1) > arrays["loudness_db"][:, -5:].mean(axis=1))


def test_rebuilding_gives_byte_identical_files_and_reuses_an_up_to_date_folder(tiny_dataset, tmp_path):
    rebuilt = prepare_offline("tiny", tmp_path / "again", crepe_model="tiny", cache_dir=tiny_dataset / "cache",
                              progress=False)
    assert folder_bytes(rebuilt) == folder_bytes(tiny_dataset)
    stamp = (rebuilt / "train" / "shard-00000" / "audio.npy").stat().st_mtime_ns
    prepare_offline("tiny", rebuilt, crepe_model="tiny", progress=False)
    assert (rebuilt / "train" / "shard-00000" / "audio.npy").stat().st_mtime_ns == stamp
