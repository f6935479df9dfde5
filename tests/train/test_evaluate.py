"""The evaluator's numbers (train/evaluate.py), as benchmarks/quality.py uses them for any system's resynthesis."""

from __future__ import annotations

import numpy as np
import pytest

from train.data import load_split
from train.evaluate import score_resynthesis


def test_a_perfect_resynthesis_scores_zero_and_a_quieter_one_scores_its_level_difference(tiny_dataset):
    test = load_split(tiny_dataset, "test")
    perfect, _ = score_resynthesis(test, test["audio"], crepe_model="tiny")
    assert perfect["spectral_loss"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["loudness_l1_db"] == pytest.approx(0.0, abs=0.05)
    assert perfect["f0_error_cents"] == pytest.approx(0.0, abs=0.5)
    quieter, features = score_resynthesis(test, test["audio"] * 10 ** (-6 / 20), crepe_model="tiny")
    assert features["loudness_db"].shape == test["loudness_db"].shape
    # loudness is clamped at -80 dB, so silent frames differ by less than 6 dB: the mean is at most 6 dB
    assert 1.0 < quieter["loudness_l1_db"] <= 6.0 + 0.05
    assert quieter["spectral_loss"] > perfect["spectral_loss"] + 0.1


def test_a_resynthesis_of_another_shape_is_refused(tiny_dataset):
    test = load_split(tiny_dataset, "test")
    with pytest.raises(ValueError, match=r"resynthesis has shape \(1, 100\); expected"):
        score_resynthesis(test, np.zeros((1, 100), np.float32), crepe_model="tiny")
