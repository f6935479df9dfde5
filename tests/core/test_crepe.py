"""Tests for ddsp_core/crepe.py: parity with torchcrepe/marl-crepe, accuracy on generated audio, jit/vmap/scan.

The official weights must be in the cache (``make test`` fetches them first). Decoding, convolutions and resampling
have their own test files (test_crepe_decoding, test_conv, test_resample).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddsp_core import crepe
from ddsp_core.resample import resample
from tests.helpers import cents_between, torchcrepe_fixtures

SR = 16000


@functools.cache
def _params(model: str) -> crepe.CrepeParams:
    return crepe.load_crepe_params(model)




_activations = jax.jit(crepe.crepe_activations, static_argnames=("precision", "conv"))


# --- network parity ------------------------------------------------------------------------------------------------


def test_tiny_activations_match_reference_on_all_fixture_frames():
    inputs, ref = torchcrepe_fixtures()
    frames = jax.vmap(lambda a: crepe.normalize_frames(crepe.frame_audio(a)))(inputs["audio"])  # [4, 251, 1024]
    ours = _activations(_params("tiny"), frames.reshape(-1, 1024)).reshape(4, 251, 360)
    error = np.abs(np.asarray(ours) - ref["activations_ddsp_tiny"]).max()
    assert error < 1e-4, f"max |activation difference| vs marl/crepe framing: {error:.2e}"
    # torchcrepe divides by the ddof=1 std; fed its framing, we reproduce its own activations too
    raw = np.asarray(jax.vmap(crepe.frame_audio)(inputs["audio"]))[:, ::10]
    torch_frames = (raw - raw.mean(-1, keepdims=True)) / np.maximum(raw.std(-1, ddof=1, keepdims=True), 1e-10)
    ours_torch = _activations(_params("tiny"), torch_frames.reshape(-1, 1024)).reshape(4, 26, 360)
    error = np.abs(np.asarray(ours_torch) - ref["activations_tiny_every10th"]).max()
    assert error < 1e-4, f"max |activation difference| vs torchcrepe: {error:.2e}"


def test_full_activations_match_reference_on_a_subset_of_frames():
    # the full model costs ~2.8 GFLOP per frame: 44 + 12 frames keep this test to seconds on 2 CPU cores
    inputs, ref = torchcrepe_fixtures()
    raw = np.asarray(jax.vmap(crepe.frame_audio)(inputs["audio"]))  # [4, 251, 1024]
    ours = _activations(_params("full"), crepe.normalize_frames(raw[:, ::25].reshape(-1, 1024)))
    error = np.abs(np.asarray(ours).reshape(4, 11, 360) - ref["activations_ddsp_full"][:, ::25]).max()
    assert error < 1e-4, f"max |activation difference| vs marl/crepe framing: {error:.2e}"
    sub = raw[:2, ::50]  # frames 0, 50, ..., 250 = every 5th of the stored every-10th torchcrepe frames
    torch_frames = (sub - sub.mean(-1, keepdims=True)) / sub.std(-1, ddof=1, keepdims=True)
    ours_torch = _activations(_params("full"), torch_frames.reshape(-1, 1024)).reshape(2, 6, 360)
    error = np.abs(np.asarray(ours_torch) - ref["activations_full_every10th"][:2, ::5]).max()
    assert error < 1e-4, f"max |activation difference| vs torchcrepe: {error:.2e}"


def test_auto_and_direct_convolutions_give_the_same_network_outputs():
    inputs, _ = torchcrepe_fixtures()
    raw = np.asarray(jax.vmap(crepe.frame_audio)(inputs["audio"]))[:, ::40].reshape(-1, 1024)  # 28 frames
    frames = crepe.normalize_frames(raw)
    for model in ("tiny", "full"):
        auto = np.asarray(_activations(_params(model), frames))
        direct = np.asarray(_activations(_params(model), frames, conv="direct"))
        assert np.abs(auto - direct).max() < 5e-6, (model, np.abs(auto - direct).max())
    with pytest.raises((TypeError, ValueError), match="conv"):
        crepe.crepe_activations(_params("tiny"), frames, conv="fft")


# --- accuracy on generated audio -----------------------------------------------------------------------------------


def _harmonic(f0_hz: np.ndarray, n_harmonics: int = 8) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0_hz) / SR
    audio = sum((f0_hz * k < SR / 2) * np.sin(k * phase) / k for k in range(1, n_harmonics + 1))
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def _raw_pitch_accuracy(f0_hz: np.ndarray, exact_hz: np.ndarray) -> float:
    return float(np.mean(cents_between(f0_hz, exact_hz) <= 50.0))


def test_full_model_raw_pitch_accuracy_on_generated_tones():
    n, hop = 4800, 240  # 0.3 s clips, 66.7 frames/s (per-frame accuracy does not depend on the hop)
    t = np.arange(n) / SR
    conditions = {f"tone {f:g} Hz": np.full(n, f) for f in (50.0, 110.0, 220.0, 440.0, 700.0, 1000.0)}
    conditions["glide 150->300 Hz"] = 150.0 * 2.0 ** (t / t[-1])  # an octave in 0.3 s
    conditions["vibrato 330 Hz +-50 cents 6 Hz"] = 330.0 * 2 ** (0.5 * np.sin(2 * np.pi * 6 * t) / 12)
    rng = np.random.default_rng(0)
    clips, names = [], []
    for name, f0 in conditions.items():
        clean = _harmonic(f0)
        clips.append(clean)
        names.append(name)
        if name.startswith(("tone 110", "tone 1000", "glide", "vibrato")):
            noise = rng.normal(size=n).astype(np.float32)
            noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10.0)  # SNR 10 dB
            clips.append(clean + noise)
            names.append(name + " + noise 10 dB")
    estimate = jax.jit(jax.vmap(lambda p, a: crepe.estimate_f0(p, a, hop_size=hop)[0], in_axes=(None, 0)))
    f0 = np.asarray(estimate(_params("full"), np.stack(clips)))
    frames = np.arange(f0.shape[1]) * hop
    inside = (frames >= 512) & (frames + 512 <= n)  # frames whose whole window is signal
    accuracy = {}
    for name, estimate_hz in zip(names, f0):
        exact = conditions[name.split(" + ")[0]][frames[inside]]
        accuracy[name] = _raw_pitch_accuracy(estimate_hz[inside], exact)
    report = "; ".join(f"{name}: RPA {value:.3f}" for name, value in accuracy.items())
    assert all(v >= 0.99 for k, v in accuracy.items() if "noise" not in k), report
    assert all(v >= 0.9 for v in accuracy.values()), report


# --- extractor: framing, chunking, jit / vmap / scan -----------------------------------------------------------------


def test_frame_counts_and_alignment_for_each_padding():
    assert crepe.count_frames(16000, hop_size=64, padding="center") == 251
    assert crepe.count_frames(64000, hop_size=64, padding="same") == 1000
    assert crepe.count_frames(64001, hop_size=64, padding="same") == 1001
    assert crepe.count_frames(2048, hop_size=64, padding="valid") == 17
    audio = np.arange(3000, dtype=np.float32)
    center = np.asarray(crepe.frame_audio(audio, hop_size=100))
    assert center.shape == (31, 1024)
    np.testing.assert_array_equal(center[10], np.arange(1000 - 512, 1000 + 512))  # centred on t * hop
    same = np.asarray(crepe.frame_audio(audio, hop_size=100, padding="same"))
    assert same.shape == (30, 1024)
    np.testing.assert_array_equal(same[29, :100], np.arange(2900, 3000))
    assert not same[29, 100:].any()


def test_normalized_frames_have_zero_mean_unit_std_and_silence_stays_zero():
    rng = np.random.default_rng(1)
    frames = np.stack([rng.normal(3.0, 5.0, 1024), np.zeros(1024)]).astype(np.float32)
    normalized = np.asarray(crepe.normalize_frames(frames))
    assert abs(normalized[0].mean()) < 1e-5 and abs(normalized[0].std() - 1.0) < 1e-5
    assert not normalized[1].any()


def test_estimate_f0_under_jit_vmap_and_scan_matches_eager_and_chunking_changes_nothing():
    inputs, ref = torchcrepe_fixtures()
    audio = inputs["audio"][:2, :4000]
    params = _params("tiny")
    eager = [crepe.estimate_f0(params, a, chunk_frames=7) for a in audio]
    batched = jax.jit(jax.vmap(lambda a: crepe.estimate_f0(params, a)))(audio)

    def step(carry, clip):
        f0_hz, confidence = crepe.estimate_f0(params, clip, decoder="local_average", chunk_frames=16)
        return carry + jnp.sum(confidence), f0_hz

    total, scanned = jax.jit(lambda a: jax.lax.scan(step, 0.0, a))(audio)
    for i in range(2):
        np.testing.assert_allclose(batched[0][i], eager[i][0], rtol=1e-5)
        np.testing.assert_allclose(batched[1][i], eager[i][1], atol=1e-6)
        # frames whose window ends inside the 4000 samples see the same audio as the fixture's 1 s clip
        local = crepe.decode_local_average(ref["activations_ddsp_tiny"][i, :55])
        assert cents_between(scanned[i, :55], local).max() < 1.0
    np.testing.assert_allclose(total, sum(float(np.sum(e[1])) for e in eager), rtol=1e-5)


def test_other_sample_rates_are_resampled_to_16k_inside_jit_before_the_network():
    tone_44k = np.sin(2 * np.pi * 300 * np.arange(11025) / 44100).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(crepe.resample_to_crepe_rate(tone_44k, sample_rate=44100)),
        np.asarray(resample(tone_44k, sample_rate=44100, target_sample_rate=16000)),
    )
    f0, _ = jax.jit(lambda p, a: crepe.estimate_f0(p, a, sample_rate=44100))(_params("tiny"), tone_44k)
    assert f0.shape == (63,)
    assert np.median(cents_between(f0[8:-8], 300.0)) < 10.0


def test_bfloat16_mode_stays_within_a_cent_of_float32():
    inputs, _ = torchcrepe_fixtures()
    audio = inputs["audio"][:3, :6400]
    run = {p: jax.vmap(lambda a, p=p: crepe.estimate_f0(_params("tiny"), a, precision=p))(audio) for p in
           ("float32", "bfloat16")}  # fmt: skip
    deviation = cents_between(run["bfloat16"][0], run["float32"][0])
    assert deviation.max() < 1.0, f"bfloat16 vs float32: max {deviation.max():.3f} cents"


# --- bad input and documented results ------------------------------------------------------------------------------


def test_silence_gives_low_constant_confidence():
    for model, expected in (("tiny", 0.014), ("full", 0.141)):
        _, confidence = crepe.estimate_f0(_params(model), np.zeros(1000, np.float32))
        confidence = np.asarray(confidence)
        assert np.ptp(confidence) < 1e-6 and abs(confidence[0] - expected) < 2e-3, (model, confidence[0])


def test_bad_inputs_raise_clear_value_errors():
    params = _params("tiny")
    audio = np.zeros(2000, np.float32)
    audio[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        crepe.estimate_f0(params, audio)
    with pytest.raises(ValueError, match="shorter than one 1024-sample frame"):
        crepe.estimate_f0(params, np.ones(500, np.float32), padding="valid")
    with pytest.raises(ValueError, match="hop_size"):
        crepe.estimate_f0(params, np.ones(500, np.float32), hop_size=0)
    with pytest.raises(TypeError, match="decoder"):  # the Literal annotation (jaxtyping + beartype) refuses it
        crepe.estimate_f0(params, np.ones(500, np.float32), decoder="argmax")
    with pytest.raises(ValueError, match="at least one sample"):
        crepe.frame_audio(np.zeros(0, np.float32))
    with pytest.raises((TypeError, ValueError), match="sample_rate"):
        crepe.estimate_f0(params, np.ones(500, np.float32), sample_rate=16000.0)
