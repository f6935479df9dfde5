"""Resynthesis and transfer (train/audio_io.py): the model sees the input's loudness as it is (never clipped),
and a warning names the feature and the training range when an input lies outside what the model was trained on."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import train.evaluate
from train.audio_io import resynthesize_file, shift_controls
from train.data import load_split


def test_shifted_loudness_is_not_clipped():
    f0_hz, loudness_db = shift_controls(np.full(3, 220.0), np.array([-90.0, 5.0, 20.0]), octave_shift=1.0,
                                        loudness_shift_db=3.0)
    np.testing.assert_allclose(loudness_db, [-87.0, 8.0, 23.0])
    np.testing.assert_allclose(f0_hz, 440.0)


@pytest.mark.parametrize("shift", [np.nan, np.inf])
def test_non_finite_shifts_are_refused(shift):
    with pytest.raises(ValueError, match="must be a finite number"):
        shift_controls(np.ones(3), np.ones(3), octave_shift=shift, loudness_shift_db=0.0)


def test_fit_stores_the_training_loudness_and_f0_range(trained_run, tiny_dataset):
    statistics = json.loads((trained_run / "dataset_statistics.json").read_text())
    train = load_split(tiny_dataset, "train")
    assert statistics["loudness_db_range"] == pytest.approx([train["loudness_db"].min(), train["loudness_db"].max()])
    low, high = statistics["f0_hz_range"]
    assert 0 < low < high


def test_a_loud_input_reaches_the_model_unclipped_and_the_range_is_named(trained_run, tmp_path, monkeypatch,
                                                                          caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    statistics = json.loads((run_dir / "dataset_statistics.json").read_text())
    statistics["loudness_db_range"] = [-80.0, 0.0]
    (run_dir / "dataset_statistics.json").write_text(json.dumps(statistics))
    seen = {}
    real_run_model = train.evaluate.run_model

    def spy(params, static, f0_hz, loudness_db, *args, **kwargs):
        seen["loudness_db"] = loudness_db
        return real_run_model(params, static, f0_hz, loudness_db, *args, **kwargs)

    monkeypatch.setattr(train.evaluate, "run_model", spy)
    source = tmp_path / "loud.wav"
    sf.write(source, 0.9 * np.sin(2 * np.pi * 330.0 * np.arange(8000) / 16000), 16000)
    resynthesize_file(run_dir, source, tmp_path / "out.wav")
    loudest = float(seen["loudness_db"].max())
    assert loudest > 10.0  # a 0.9-amplitude tone reads about +25 dB; the old clip made it 0
    assert f"loudness reaches {loudest:+.1f} dB, above the training range [-80.0, +0.0] dB" in caplog.text
