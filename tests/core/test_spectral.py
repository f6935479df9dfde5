"""Tests for ddsp_core.spectral: STFT framing, A-weighting, loudness, multi-scale spectral loss, log-mel and MFCC.

Reference numbers come from magenta ddsp 3.7.0 / librosa 0.10 (tests/fixtures/magenta, see its README) and from
independent NumPy/SciPy computations written here from the textbook definitions.
"""

import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest
import scipy.fft

from ddsp_core import spectral
from tests.helpers import load_fixture

SAMPLE_RATE = 16000
N_SAMPLES = 2048  # one length for the loss property tests, so they share compiled programs
_loss_grad = jax.jit(jax.grad(spectral.multiscale_spectral_loss, argnums=1))


def _sine(frequency_hz: float, n_samples: int, amplitude: float = 1.0) -> np.ndarray:
    return (amplitude * np.sin(2.0 * np.pi * frequency_hz * np.arange(n_samples) / SAMPLE_RATE)).astype(np.float32)


def _numpy_stft(audio: np.ndarray, n_fft: int, hop_size: int, padding: str) -> np.ndarray:
    """Float64 STFT written from the definition: explicit padding, a loop over frames, periodic Hann window."""
    audio = audio.astype(np.float64)
    n_samples = len(audio)
    if padding == "center":
        audio = np.concatenate([np.zeros(n_fft // 2), audio, np.zeros(n_fft // 2)])
    elif padding == "same":
        n_frames = int(np.ceil(n_samples / hop_size))
        audio = np.concatenate([audio, np.zeros((n_frames - 1) * hop_size + n_fft - n_samples)])
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    starts = range(0, len(audio) - n_fft + 1, hop_size)
    return np.stack([np.fft.rfft(window * audio[s : s + n_fft]) for s in starts])


# STFT ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["center", "same", "valid"])
@pytest.mark.parametrize("hop_size", [32, 48])  # 48 does not divide n_fft
def test_stft_equals_definition_for_each_padding(padding, hop_size):
    audio = np.random.default_rng(0).uniform(-1.0, 1.0, 1000).astype(np.float32)
    expected = _numpy_stft(audio, 128, hop_size, padding)
    result = np.asarray(spectral.stft(audio, n_fft=128, hop_size=hop_size, padding=padding))
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("padding", "n_frames"), [("center", 16), ("same", 16), ("valid", 8)])
def test_stft_frame_count_follows_magenta_padding(padding, n_frames):
    # center: 1000 // 64 + 1; same: ceil(1000 / 64); valid: (1000 - 512) // 64 + 1.
    assert spectral.stft(np.zeros(1000, np.float32), n_fft=512, hop_size=64, padding=padding).shape == (n_frames, 257)


def test_magnitudes_of_sine_peak_at_its_bin():
    mags = np.asarray(spectral.magnitudes(_sine(1000.0, 4096), n_fft=1024, hop_size=256, padding="valid"))
    assert np.all(mags.argmax(axis=1) == 64)  # 1000 Hz * 1024 / 16000 Hz
    # A bin-centred unit sine through a Hann window of length N: |S| = N / 4 at its bin, N / 8 at the neighbours.
    np.testing.assert_allclose(mags[:, 63:66], np.tile([128.0, 256.0, 128.0], (len(mags), 1)), rtol=1e-4)


def test_magnitudes_gradient_is_finite_and_zero_on_silence():
    grad = jax.grad(lambda x: spectral.magnitudes(x, n_fft=64, hop_size=16).sum())(jnp.zeros(256))
    assert np.all(np.asarray(grad) == 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_fft": 64, "hop_size": 65}, "hop_size"),
        ({"n_fft": 64, "hop_size": 0}, "hop_size"),
        ({"n_fft": 1, "hop_size": 1}, "n_fft"),
        ({"n_fft": 512, "hop_size": 16, "padding": "valid"}, "n_fft=512"),
    ],
)
def test_stft_rejects_invalid_sizes_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        spectral.stft(np.zeros(256, np.float32), **kwargs)


@pytest.mark.parametrize(
    ("audio", "padding"), [(np.zeros((2, 256), np.float32), "same"), (np.zeros(256, np.float32), "reflect")]
)
def test_stft_rejects_a_batch_axis_or_unknown_padding_through_its_annotations(audio, padding):
    with pytest.raises(jaxtyping.TypeCheckError):
        spectral.stft(audio, n_fft=64, hop_size=16, padding=padding)


# A-weighting and loudness ----------------------------------------------------------------------------------------
def test_a_weighting_matches_librosa():
    inputs, outputs = load_fixture("magenta", "loudness_in"), load_fixture("magenta", "loudness_out")
    # float32 evaluation of librosa's float64 curve; observed max error 1.3e-6 dB.
    on_bins = spectral.a_weighting_db(outputs["fft_frequencies"])
    np.testing.assert_allclose(on_bins, outputs["a_weighting_db"], atol=1e-5)
    np.testing.assert_allclose(spectral.a_weighting_db(inputs["frequencies"]), outputs["a_weighting_db_at"], atol=1e-5)


@pytest.mark.parametrize("padding", ["center", "same", "valid"])
def test_loudness_matches_magenta(padding):
    inputs, outputs = load_fixture("magenta", "loudness_in"), load_fixture("magenta", "loudness_out")
    loudness = jax.jit(
        jax.vmap(
            lambda audio: spectral.compute_loudness(
                audio,
                sample_rate=int(inputs["sample_rate"]),
                frame_rate=int(inputs["frame_rate"]),
                n_fft=int(inputs["n_fft"]),
                padding=padding,
            )
        )
    )(inputs["audio"])
    expected = outputs[f"loudness_tf_{padding}"]
    assert loudness.shape == expected.shape
    # Values span -80 .. +19 dB; observed max deviation 3.8e-6 dB (float32 rounding).
    np.testing.assert_allclose(loudness, expected, atol=1e-4, rtol=1e-4)
    if padding == "center":
        np.testing.assert_allclose(loudness, outputs["loudness_np"], atol=1e-4, rtol=1e-4)


def test_loudness_of_1khz_and_125hz_sines_differ_by_the_a_weighting():
    n_fft = 2048
    loud_1k, loud_125 = (
        float(spectral.compute_loudness(_sine(f, 4096), n_fft=n_fft)[20]) for f in (1000.0, 125.0)
    )
    # Both tones sit on bins (128 and 16). Through a Hann window a unit sine gives power (N/4)^2 at its bin k and
    # (N/8)^2 at k +- 1, so the weighted mean power is (N/4)^2 * (w_k + (w_{k-1} + w_{k+1}) / 4) / (N/2 + 1).
    def expected_db(k: int) -> float:
        weights = 10.0 ** (np.asarray(spectral.a_weighting_db(np.array([k - 1, k, k + 1]) * SAMPLE_RATE / n_fft)) / 10)
        power = (n_fft / 4) ** 2 * (weights[1] + (weights[0] + weights[2]) / 4) / (n_fft // 2 + 1)
        return 10.0 * np.log10(power)

    assert loud_1k == pytest.approx(expected_db(128), abs=1e-3)
    assert loud_125 == pytest.approx(expected_db(16), abs=1e-3)
    a_1k, a_125 = np.asarray(spectral.a_weighting_db(np.array([1000.0, 125.0])))
    assert loud_1k - loud_125 == pytest.approx(a_1k - a_125, abs=0.1)  # 16.2 dB; leakage moves it by 0.02 dB
    assert loud_1k - loud_125 > 15.0


def test_loudness_floors_at_minus_range_db_on_silence_with_finite_gradient():
    silence = jnp.zeros(4000)
    loudness = spectral.compute_loudness(silence, n_fft=512, range_db=70.0)
    # power_to_db floors the power at 10^(-70/10) first: 10 log10 of it is -70 up to float32 rounding (as in magenta).
    np.testing.assert_allclose(loudness, np.full(63, -70.0, np.float32), atol=1e-4)
    grad = jax.grad(lambda x: spectral.compute_loudness(x, n_fft=512).sum())(silence)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_loudness_ref_db_shifts_the_level():
    audio = _sine(1000.0, 4000, amplitude=0.5)
    base = spectral.compute_loudness(audio, n_fft=512)
    shifted = spectral.compute_loudness(audio, n_fft=512, ref_db=10.0)
    np.testing.assert_allclose(shifted, base - 10.0, atol=1e-4)


def test_loudness_under_vmap_equals_a_loop():
    batch = np.random.default_rng(1).uniform(-1.0, 1.0, (3, 2000)).astype(np.float32) * np.array([[1.0], [0.1], [0.0]])
    batched = jax.vmap(lambda x: spectral.compute_loudness(x, n_fft=256))(batch)
    looped = np.stack([spectral.compute_loudness(x, n_fft=256) for x in batch])
    np.testing.assert_allclose(batched, looped, atol=1e-5)


@pytest.mark.parametrize("padding", ["center", "same", "valid"])
def test_loudness_of_4s_computed_in_chunks_equals_the_float64_definition(padding):
    """4 s at n_fft 2048 spans several chunks of frames (the last one partial): no frame is lost or repeated."""
    audio = np.random.default_rng(3).uniform(-1.0, 1.0, 64000).astype(np.float32) * np.linspace(0.0, 1.0, 64000)
    loudness = jax.jit(lambda x: spectral.compute_loudness(x, padding=padding))(audio)
    power = np.abs(_numpy_stft(audio, 2048, 64, padding)) ** 2
    weighting = 10.0 ** (np.asarray(spectral.a_weighting_db(np.arange(1025) * SAMPLE_RATE / 2048), np.float64) / 10.0)
    expected = np.maximum(10.0 * np.log10(np.maximum((power * weighting).mean(axis=-1), 1e-8)), -80.0)
    assert loudness.shape == expected.shape
    np.testing.assert_allclose(loudness, expected, atol=1e-3)


def test_float_arguments_can_be_traced_values():
    """No public function marks a float static: ref_db, range_db and the loss weights may be traced under jit."""
    audio = _sine(1000.0, 4000, amplitude=0.5)
    shifted = jax.jit(lambda x, ref, floor: spectral.compute_loudness(x, n_fft=512, ref_db=ref, range_db=floor))(
        audio, 10.0, 70.0
    )
    np.testing.assert_allclose(shifted, np.maximum(spectral.compute_loudness(audio, n_fft=512) - 10.0, -70.0), atol=1e-4)
    target, pred = _sine(440.0, N_SAMPLES), _sine(450.0, N_SAMPLES)
    weighted = jax.jit(lambda w: spectral.multiscale_spectral_loss(target, pred, mag_weight=w, logmag_weight=0.5 * w))
    mag_terms, logmag_terms = spectral.spectral_loss_terms(target, pred)
    expected = 2.0 * float(np.sum(mag_terms)) + 1.0 * float(np.sum(logmag_terms))
    assert float(weighted(2.0)) == pytest.approx(expected, rel=1e-5)


def test_loudness_rejects_frame_rate_that_does_not_divide_sample_rate():
    with pytest.raises(ValueError, match="frame_rate"):
        spectral.compute_loudness(np.zeros(4000, np.float32), sample_rate=16000, frame_rate=300)


# Multi-scale spectral loss ---------------------------------------------------------------------------------------
# The fixture target is a harmonic tone: half of its bins hold only float32 FFT round-off (|X| ~ 1e-9 .. 1e-6).
# The log-magnitude terms take the log of that noise, which differs between TensorFlow's FFT and XLA's; the same
# terms in float64 are 3-5% larger than either. So the log terms and the gradient agree with magenta only to the
# round-off level measured here (terms <= 0.9%, loss 0.22%, gradient 2.5% relative L2); the magnitude terms, free of
# logs of noise, agree to 1e-7.
def test_loss_terms_match_magenta():
    inputs, outputs = load_fixture("magenta", "spectral_loss_in"), load_fixture("magenta", "spectral_loss_out")
    mag_terms, logmag_terms = jax.jit(spectral.spectral_loss_terms)(inputs["target"], inputs["pred"])
    np.testing.assert_allclose(mag_terms, outputs["ddsp_mag_terms"], rtol=1e-5)
    np.testing.assert_allclose(logmag_terms, outputs["ddsp_logmag_terms"], rtol=1.5e-2)


def test_loss_and_its_gradient_match_magenta():
    inputs, outputs = load_fixture("magenta", "spectral_loss_in"), load_fixture("magenta", "spectral_loss_out")
    loss, grad = jax.jit(jax.value_and_grad(spectral.multiscale_spectral_loss, argnums=1))(
        inputs["target"], inputs["pred"]
    )
    assert float(loss) == pytest.approx(float(outputs["ddsp_loss"]), rel=5e-3)
    grad, expected = np.asarray(grad), outputs["ddsp_loss_grad_pred"]
    assert np.linalg.norm(grad - expected) / np.linalg.norm(expected) < 0.04
    assert np.dot(grad.ravel(), expected.ravel()) / (np.linalg.norm(grad) * np.linalg.norm(expected)) > 0.999
    # Sample 0 only meets the zero of each periodic Hann window: no gradient, in both.
    np.testing.assert_array_equal(grad[:, 0], expected[:, 0])


def test_loss_with_class_default_weights_matches_magenta():
    inputs, outputs = load_fixture("magenta", "spectral_loss_in"), load_fixture("magenta", "spectral_loss_out")
    loss = spectral.multiscale_spectral_loss(inputs["target"], inputs["pred"], logmag_weight=0.0)
    assert float(loss) == pytest.approx(float(outputs["ddsp_loss_class_default"]), rel=1e-5)


def test_loss_of_identical_signals_is_zero():
    audio = np.random.default_rng(2).uniform(-1.0, 1.0, N_SAMPLES).astype(np.float32)
    assert float(spectral.multiscale_spectral_loss(audio, audio)) == 0.0


def test_loss_is_symmetric():
    rng = np.random.default_rng(3)
    a, b = (rng.uniform(-1.0, 1.0, N_SAMPLES).astype(np.float32) for _ in range(2))
    assert float(spectral.multiscale_spectral_loss(a, b)) == pytest.approx(
        float(spectral.multiscale_spectral_loss(b, a)), rel=1e-6
    )


def test_loss_grows_monotonically_with_detuning():
    target = _sine(440.0, N_SAMPLES, amplitude=0.5)
    detuned = [_sine(440.0 * 2.0 ** (cents / 1200.0), N_SAMPLES, amplitude=0.5) for cents in (0.0, 5.0, 20.0, 50.0)]
    losses = [float(spectral.multiscale_spectral_loss(target, pred)) for pred in detuned]
    assert losses[0] == 0.0
    assert np.all(np.diff(losses) > 0.0), losses


@pytest.mark.parametrize("target_amplitude", [0.0, 0.5])
@pytest.mark.parametrize("pred_amplitude", [0.0, 1e-12])
def test_loss_gradient_is_finite_on_silence(target_amplitude, pred_amplitude):
    target = _sine(440.0, N_SAMPLES, amplitude=target_amplitude)
    pred = pred_amplitude * np.random.default_rng(4).uniform(-1.0, 1.0, N_SAMPLES).astype(np.float32)
    grad = _loss_grad(target, pred)
    assert np.all(np.isfinite(np.asarray(grad)))


def test_loss_of_a_batch_is_the_mean_of_the_examples_and_vmap_equals_a_loop():
    rng = np.random.default_rng(5)
    target, pred = (rng.uniform(-1.0, 1.0, (3, N_SAMPLES)).astype(np.float32) for _ in range(2))
    singles = np.array([spectral.multiscale_spectral_loss(t, p) for t, p in zip(target, pred, strict=True)])
    np.testing.assert_allclose(jax.vmap(spectral.multiscale_spectral_loss)(target, pred), singles, rtol=1e-5)
    assert float(spectral.multiscale_spectral_loss(target, pred)) == pytest.approx(singles.mean(), rel=1e-5)


def test_loss_weights_scale_the_terms():
    rng = np.random.default_rng(6)
    target, pred = (rng.uniform(-1.0, 1.0, N_SAMPLES).astype(np.float32) for _ in range(2))
    mag_terms, logmag_terms = spectral.spectral_loss_terms(target, pred, fft_sizes=(256, 64))
    loss = spectral.multiscale_spectral_loss(target, pred, fft_sizes=(256, 64), mag_weight=2.0, logmag_weight=0.5)
    assert float(loss) == pytest.approx(2.0 * float(mag_terms.sum()) + 0.5 * float(logmag_terms.sum()), rel=1e-6)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
@pytest.mark.parametrize("which", ["target", "pred"])
def test_loss_of_a_non_finite_signal_is_non_finite(bad_value, which):
    signals = {"target": _sine(440.0, N_SAMPLES), "pred": _sine(440.0, N_SAMPLES, amplitude=0.5)}
    signals[which][100] = bad_value
    assert not np.isfinite(float(spectral.multiscale_spectral_loss(signals["target"], signals["pred"])))


def test_loss_of_all_nan_audio_is_not_the_loss_of_silence():
    target = _sine(440.0, N_SAMPLES)
    nan_loss = spectral.multiscale_spectral_loss(target, np.full(N_SAMPLES, np.nan, np.float32))
    assert np.isnan(float(nan_loss))
    assert np.isfinite(float(spectral.multiscale_spectral_loss(target, np.zeros(N_SAMPLES, np.float32))))


@pytest.mark.parametrize("fft_sizes", [(64, 2), (64, 48), (1000,)])
def test_loss_rejects_fft_sizes_below_four_or_not_powers_of_two(fft_sizes):
    with pytest.raises(ValueError, match="fft_sizes must be .* powers of two"):
        spectral.multiscale_spectral_loss(np.zeros(2048, np.float32), np.zeros(2048, np.float32), fft_sizes=fft_sizes)


# Log-mel and MFCC ------------------------------------------------------------------------------------------------
def _hz_to_mel(frequencies_hz):
    return 1127.0 * np.log(1.0 + np.asarray(frequencies_hz) / 700.0)


def test_log_mel_of_a_pure_tone_peaks_in_the_band_centred_nearest_its_frequency():
    n_mels, lo_hz, hi_hz = 40, 20.0, 8000.0
    log_mel = np.asarray(
        spectral.log_mel_spectrogram(
            _sine(1500.0, 4096), sample_rate=SAMPLE_RATE, n_fft=1024, n_mels=n_mels, lo_hz=lo_hz, hi_hz=hi_hz
        )
    )
    centres_mel = np.linspace(_hz_to_mel(lo_hz), _hz_to_mel(hi_hz), n_mels + 2)[1:-1]
    expected_band = int(np.argmin(np.abs(centres_mel - _hz_to_mel(1500.0))))
    assert np.all(log_mel[4:-4].argmax(axis=1) == expected_band)


def test_mfcc_equals_scipy_dct_of_a_log_mel_built_from_the_definition():
    n_fft, hop_size, n_mels, n_mfccs, lo_hz, hi_hz = 512, 128, 32, 13, 100.0, 7000.0
    audio = np.random.default_rng(7).uniform(-1.0, 1.0, 4000).astype(np.float32)
    mags = np.abs(_numpy_stft(audio, n_fft, hop_size, "same"))
    # Triangular filters in HTK mel (natural log), peak 1, from edge j to edge j + 2; DC bin excluded.
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, n_fft // 2 + 1))
    edges = np.linspace(_hz_to_mel(lo_hz), _hz_to_mel(hi_hz), n_mels + 2)
    filters = np.zeros((n_fft // 2 + 1, n_mels))
    for j in range(n_mels):
        up = (bin_mel - edges[j]) / (edges[j + 1] - edges[j])
        down = (edges[j + 2] - bin_mel) / (edges[j + 2] - edges[j + 1])
        filters[1:, j] = np.clip(np.minimum(up, down), 0.0, None)[1:]
    log_mel = np.log(mags @ filters)
    expected = scipy.fft.dct(log_mel, type=2, axis=-1)[:, :n_mfccs] / np.sqrt(2.0 * n_mels)
    result = spectral.mfcc(
        audio,
        sample_rate=SAMPLE_RATE,
        n_fft=n_fft,
        hop_size=hop_size,
        n_mels=n_mels,
        n_mfccs=n_mfccs,
        lo_hz=lo_hz,
        hi_hz=hi_hz,
    )
    assert result.shape == (32, n_mfccs)  # ceil(4000 / 128) frames
    np.testing.assert_allclose(result, expected, atol=1e-3)


def test_mfcc_of_4s_at_16khz_has_250_frames_of_30_coefficients():
    assert spectral.mfcc(np.zeros(64000, np.float32), sample_rate=SAMPLE_RATE).shape == (250, 30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_mfccs": 40, "n_mels": 32}, "n_mfccs"), ({"hi_hz": 9000.0}, "hi_hz"), ({"n_mels": 0}, "n_mels")],
)
def test_mfcc_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        spectral.mfcc(np.zeros(2048, np.float32), sample_rate=SAMPLE_RATE, **kwargs)
