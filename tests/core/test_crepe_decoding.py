"""Tests for ddsp_core/crepe_decoding.py: bins -> pitch as marl/crepe decodes them, Viterbi, voicing gates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core import crepe_decoding
from tests.helpers import cents_between, torchcrepe_fixtures


@pytest.mark.parametrize("model", ["full", "tiny"])
def test_decoders_match_original_crepe_decoding_within_one_cent(model):
    _, ref = torchcrepe_fixtures()
    activations = ref[f"activations_ddsp_{model}"][:3]  # the three voiced clips
    local = jax.vmap(crepe_decoding.decode_local_average)(activations)
    viterbi = jax.jit(jax.vmap(crepe_decoding.decode_viterbi))(activations)
    local_error = cents_between(local, ref[f"ddsp_f0_{model}_localavg"][:3]).max()
    viterbi_error = cents_between(viterbi, ref[f"ddsp_f0_{model}_viterbi"][:3]).max()
    assert local_error < 1.0 and viterbi_error < 1.0, (local_error, viterbi_error)
    np.testing.assert_allclose(activations.max(-1), ref[f"ddsp_confidence_{model}"][:3], atol=1e-6)


def test_our_decoding_is_more_accurate_than_torchcrepes_decoders():
    inputs, ref = torchcrepe_fixtures()
    centres = np.minimum(np.arange(251) * 64, 15999)
    exact = inputs["f0_hz_per_sample"][:2, centres]  # 440 Hz tone, 110 -> 880 Hz glide
    inner = slice(8, -8)  # frames whose window is all signal
    report, ours_median = {}, {}
    for model in ("full", "tiny"):
        ours = np.asarray(jax.vmap(crepe_decoding.decode_viterbi)(ref[f"activations_ddsp_{model}"][:2]))
        ours_median[model] = np.median(cents_between(ours, exact)[:, inner])
        for name in ("weighted_argmax", "viterbi"):
            theirs = np.median(cents_between(ref[f"f0_{model}_{name}"][:2], exact)[:, inner])
            report[f"{model} torchcrepe {name}"] = theirs
            assert ours_median[model] < theirs, (ours_median, report)
    assert ours_median["full"] < 3.0, (ours_median, report)


def test_local_average_uses_the_nine_bins_around_the_peak():
    activations = np.zeros((2, 360), np.float32)
    activations[0, 100] = 1.0
    activations[0, [104, 105]] = 1.0  # bin 105 is outside argmax +-4 and must be ignored
    activations[1, 0] = 0.5  # clipped window at the lowest bin
    activations[1, 1] = 0.5
    f0 = np.asarray(crepe_decoding.decode_local_average(activations))
    cents = np.asarray(crepe_decoding.bin_cents())
    expected = 10 * 2 ** (np.array([(cents[100] + cents[104]) / 2, (cents[0] + cents[1]) / 2]) / 1200)
    np.testing.assert_allclose(f0, expected, rtol=1e-6)
    assert abs(10 * 2 ** (cents[0] / 1200) - 31.70) < 1e-3  # CREPE's range: 31.70 Hz ..
    assert abs(10 * 2 ** (cents[359] / 1200) - 2005.50) < 1e-2  # .. 2005.5 Hz (torchcrepe MAX_FMAX = 2006)


def test_viterbi_rejects_an_isolated_octave_jump_that_argmax_follows():
    activations = np.full((30, 360), 0.01, np.float32)
    activations[:, 150] = 0.9
    activations[14, 150], activations[14, 210] = 0.5, 0.9  # one frame jumps 60 bins (an octave)
    local = np.asarray(crepe_decoding.decode_local_average(activations))
    viterbi = np.asarray(crepe_decoding.decode_viterbi(activations))
    assert cents_between(local[14], local[13]) > 1100.0
    assert cents_between(viterbi[14], viterbi[13]) < 1.0


def _numpy_viterbi(observed: np.ndarray) -> np.ndarray:
    """The textbook Viterbi over the full 360 x 360 transition matrix (ties to the lowest state), in float64."""
    log_transition, (log_hit, log_miss), log_start = crepe_decoding._viterbi_tables()
    log_transition = log_transition.astype(np.float64)

    def emission(o):
        return np.where(np.arange(360) == o, log_hit, log_miss).astype(np.float64)

    score, pointers = log_start + emission(observed[0]), []
    for o in observed[1:]:
        candidates = score[:, None] + log_transition
        pointers.append(np.argmax(candidates, axis=0))
        score = candidates.max(axis=0) + emission(o)
    path = [int(np.argmax(score))]
    for back in reversed(pointers):
        path.append(int(back[path[-1]]))
    return np.array(path[::-1])


def test_banded_viterbi_finds_the_same_path_as_the_full_matrix():
    rng = np.random.default_rng(3)
    walk = np.clip(180 + np.cumsum(rng.integers(-3, 4, 120)), 0, 359)  # a slow glide ..
    walk[[30, 31, 77]] = [20, 359, 100]  # .. with octave errors, a jump to the edge ..
    cases = [walk, rng.integers(0, 360, 60), np.zeros(10, int), np.full(5, 359)]  # .. noise, and both edges
    for observed in cases:
        ours = np.asarray(crepe_decoding._viterbi_path(jnp.asarray(observed, jnp.int32)))
        np.testing.assert_array_equal(ours, _numpy_viterbi(observed))


def test_gating_by_confidence_and_loudness():
    f0 = np.array([100.0, 200.0, 300.0], np.float32)
    gated = crepe_decoding.gate_by_confidence(f0, np.array([0.9, 0.2, 0.5], np.float32), threshold=0.5)
    np.testing.assert_array_equal(gated, [100.0, 0.0, 300.0])
    # the default threshold is VOICED_CONFIDENCE (0.5): a frame exactly at it counts as voiced
    at_default = np.array([0.9, 0.49, crepe_decoding.VOICED_CONFIDENCE], np.float32)
    np.testing.assert_array_equal(crepe_decoding.gate_by_confidence(f0, at_default), [100.0, 0.0, 300.0])
    gated = crepe_decoding.gate_by_loudness(f0, np.array([-20.0, -70.0, -80.0], np.float32), threshold_db=-60.0)
    np.testing.assert_array_equal(gated, [100.0, 0.0, 0.0])
