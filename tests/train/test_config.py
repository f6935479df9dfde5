"""Config presets and command-line overrides (train/config.py)."""

import re

import pytest

from train.config import ConfigError, DataConfig, TrainConfig, apply_overrides, from_dict, preset


def test_nsynth_preset_is_the_seed_configuration():
    config = preset("nsynth")
    assert (config.train.batch_size, config.model.n_samples, config.model.n_harmonics) == (32, 64000, 100)
    assert (config.model.n_noise_bands, config.model.ir_length) == (65, 16000)
    assert (config.model.harmonic_weight, config.model.noise_weight) == (1.0, 0.1)
    assert config.train.learning_rate == 3e-4 and config.train.decay_rate == 0.98
    assert config.train.decay_steps == 10000 and config.train.grad_clip == 3.0 and config.train.n_steps == 30000


def test_scan_unroll_reaches_the_decoder_gru():
    import jax

    from train.modeling import build_model

    config = apply_overrides(preset("tiny"), ["train.scan_unroll=8"])
    assert build_model(config, jax.random.key(0)).decoder.scan_unroll == 8
    assert build_model(preset("tiny"), jax.random.key(0)).decoder.scan_unroll == 1


def test_overrides_parse_to_the_field_type():
    config = apply_overrides(
        preset("demo"),
        ["train.n_steps=7", "train.learning_rate=2e-3", "model.reverb=false", "data.crepe_model=full"],
    )
    assert config.train.n_steps == 7 and isinstance(config.train.n_steps, int)
    assert config.train.learning_rate == pytest.approx(2e-3)
    assert config.model.reverb is False
    assert config.data.crepe_model == "full"
    assert preset("demo").train.n_steps != 7  # presets are not mutated


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.n_stepz=3", "unknown config key 'train.n_stepz'"),
        ("optimizer.lr=3", "unknown config section 'optimizer'"),
        ("train.n_steps=many", "expects an integer"),
        ("model.reverb=perhaps", "expects a boolean"),
        ("train.n_steps", "must look like section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(preset("demo"), [override])


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="demo"):
        preset("huge")


def test_config_round_trips_through_a_dict():
    config = apply_overrides(preset("tiny"), ["train.seed=5"])
    assert from_dict(config.to_dict()) == config
    assert from_dict(config.to_dict()).model_fingerprint() == config.model_fingerprint()


def test_model_fingerprint_changes_with_the_model_only():
    base = preset("tiny")
    assert apply_overrides(base, ["train.n_steps=99"]).model_fingerprint() == base.model_fingerprint()
    # the GRU unroll is a speed knob: same parameters, so checkpoints stay compatible
    assert apply_overrides(base, ["train.scan_unroll=8"]).model_fingerprint() == base.model_fingerprint()
    assert apply_overrides(base, ["model.n_harmonics=9"]).model_fingerprint() != base.model_fingerprint()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.path=tensorflow", "train.path='tensorflow'; expected one of pure, datarax"),
        ("data.source=youtube", "data.source='youtube'"),
        ("train.batch_size=0", "train.batch_size must be a finite number > 0, got 0"),
        ("train.scan_unroll=0", "train.scan_unroll must be a finite number > 0"),
        ("train.learning_rate=nan", "config key 'train.learning_rate' expects a finite number, got 'nan'"),
        ("train.learning_rate=inf", "config key 'train.learning_rate' expects a finite number, got 'inf'"),
        ("train.learning_rate=-1e-3", "train.learning_rate must be a finite number > 0, got -0.001"),
        ("train.grad_clip=0", "train.grad_clip must be a finite number > 0"),
        ("train.decay_rate=-0.5", "train.decay_rate must be a finite number > 0"),
        ("train.seed=-1", "train.seed must be >= 0"),
        ("data.example_seconds=0", "data.example_seconds must be a finite number > 0"),
        ("data.validation_fraction=1", "data.validation_fraction must be a fraction in [0, 1)"),
        ("data.test_fraction=-0.1", "data.test_fraction must be a fraction in [0, 1)"),
        ("data.validation_fraction=0.95", "data.validation_fraction + data.test_fraction must be < 1"),
        ("model.noise_weight=nan", "config key 'model.noise_weight' expects a finite number, got 'nan'"),
        ("model.harmonic_weight=-inf", "config key 'model.harmonic_weight' expects a finite number, got '-inf'"),
        ("model.n_samples=1000", "must be a multiple of model.hop_size"),
    ],
)
def test_invalid_values_are_refused_with_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(preset("demo"), [override])


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        (TrainConfig, "learning_rate", float("nan"), "train.learning_rate must be a finite number > 0, got nan"),
        (TrainConfig, "grad_clip", float("inf"), "train.grad_clip must be a finite number > 0, got inf"),
        (DataConfig, "example_seconds", float("nan"), "data.example_seconds must be a finite number > 0"),
        (DataConfig, "test_fraction", float("nan"), "data.test_fraction must be a fraction in [0, 1), got nan"),
    ],
)
def test_non_finite_values_are_refused_when_a_section_is_built(section, field, value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        section(**{field: value})
