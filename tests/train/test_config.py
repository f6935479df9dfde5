"""Config presets and command-line overrides (train/config.py)."""

import re

import pytest

from train.config import (
    DEFAULT_PROCESSORS,
    ConfigError,
    DataConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config_file,
    model_differences,
    preset,
    preset_names,
)
from train.modeling import learning_rate_schedule


def test_nsynth_preset_is_the_seed_configuration():
    config = preset("nsynth")
    assert (config.train.batch_size, config.model.n_samples, config.model.hidden_size) == (32, 64000, 512)
    assert config.model.processors == DEFAULT_PROCESSORS
    assert config.model.processor("harmonic") == {"type": "harmonic", "n_harmonics": 100, "weight": 1.0}
    assert config.model.processor("noise") == {"type": "filtered_noise", "n_bands": 65, "weight": 0.1}
    assert config.model.processor("reverb") == {"type": "reverb", "ir_length": 16000}
    assert config.train.learning_rate == 3e-4 and config.train.decay_rate == 0.98
    assert config.train.decay_steps == 10000 and config.train.grad_clip == 3.0 and config.train.n_steps == 30000


def test_scan_unroll_reaches_the_decoder_gru():
    import jax

    from train.modeling import build_model

    config = apply_overrides(preset("tiny"), ["train.scan_unroll=8"])
    assert build_model(config, jax.random.key(0)).decoder.scan_unroll == 8
    assert build_model(preset("tiny"), jax.random.key(0)).decoder.scan_unroll == 1


def test_gru_impl_and_decoder_dtype_reach_the_decoder_and_keep_the_checkpoint_fingerprint():
    import jax

    from train.modeling import build_model

    base = preset("tiny")
    config = apply_overrides(base, ["train.gru_impl=pallas", "train.decoder_dtype=bfloat16"])
    decoder = build_model(config, jax.random.key(0)).decoder
    assert (decoder.gru_impl, decoder.decoder_dtype) == ("pallas", "bfloat16")
    assert (build_model(base, jax.random.key(0)).decoder.gru_impl, base.train.decoder_dtype) == ("scan", "float32")
    # same parameters either way, so a float32 checkpoint can be fine-tuned in bfloat16 and back
    assert config.model_fingerprint() == base.model_fingerprint()


def test_overrides_parse_to_the_field_type():
    config = apply_overrides(
        preset("demo"),
        ["train.n_steps=7", "train.learning_rate=2e-3", "model.processors.harmonic.n_harmonics=9",
         "model.processors.noise.weight=0.25", "data.crepe_model=full"],
    )
    assert config.train.n_steps == 7 and isinstance(config.train.n_steps, int)
    assert config.train.learning_rate == pytest.approx(2e-3)
    assert config.model.processor("harmonic")["n_harmonics"] == 9
    assert config.model.processor("noise")["weight"] == 0.25
    assert config.data.crepe_model == "full"
    assert preset("demo").train.n_steps != 7  # presets are not mutated


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.n_stepz=3", "unknown config key 'train.n_stepz'"),
        ("optimizer.lr=3", "unknown config section 'optimizer'"),
        ("train.n_steps=many", "expects an integer"),
        ("model.processors.harmonic.n_harmonics=many", "expects an integer"),
        ("model.processors.harmonic.colour=red", "has no setting 'colour'"),
        ("model.processors.violin.n_harmonics=3", "with NAME one of harmonic, noise, reverb"),
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
    assert apply_overrides(base, ["model.processors.harmonic.n_harmonics=9"]).model_fingerprint() != \
        base.model_fingerprint()
    assert apply_overrides(base, ["model.loudness_ref_db=20.7"]).model_fingerprint() != base.model_fingerprint()


def test_a_model_saved_before_a_setting_existed_counts_it_at_its_default():
    base = preset("tiny")
    saved = base.to_dict()["model"]
    del saved["loudness_ref_db"], saved["decoder_init"]
    assert model_differences(saved, base) == []
    assert model_differences(saved, apply_overrides(base, ["model.loudness_ref_db=20.7"])) == [
        "model.loudness_ref_db: checkpoint 0.0 vs config 20.7"]


def test_the_learning_rate_decays_continuously_or_in_whole_decay_steps():
    base = apply_overrides(preset("tiny"), ["train.learning_rate=1e-3", "train.decay_steps=1000",
                                            "train.decay_rate=0.5"])
    continuous = learning_rate_schedule(base)
    staircase = learning_rate_schedule(apply_overrides(base, ["train.decay_staircase=true"]))
    assert float(continuous(500)) == pytest.approx(1e-3 * 0.5 ** 0.5, rel=1e-6)
    assert float(staircase(500)) == pytest.approx(1e-3, rel=1e-6)
    assert float(staircase(1500)) == pytest.approx(0.5e-3, rel=1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.path=tensorflow", "train.path='tensorflow'; expected one of pure, datarax"),
        ("data.source=youtube", "data.source='youtube'"),
        ("train.batch_size=0", "train.batch_size must be a finite number > 0, got 0"),
        ("train.scan_unroll=0", "train.scan_unroll must be a finite number > 0"),
        ("train.gru_impl=cuda", "train.gru_impl='cuda'; expected one of scan, pallas"),
        ("train.decoder_dtype=float16", "train.decoder_dtype='float16'; expected one of float32, bfloat16"),
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
        ("model.processors.noise.weight=nan", "config key 'model.processors.noise.weight' expects a finite number, got 'nan'"),
        ("model.processors.harmonic.weight=-inf",
         "config key 'model.processors.harmonic.weight' expects a finite number, got '-inf'"),
        ("model.n_samples=1000", "must be a multiple of model.hop_size"),
        ("model.loudness_ref_db=nan", "config key 'model.loudness_ref_db' expects a finite number, got 'nan'"),
        ("model.decoder_init=glorot", "model.decoder_init='glorot'; expected one of equinox, keras"),
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


def test_presets_are_toml_files_that_load_to_valid_configs():
    assert preset_names() == ["demo", "folder", "nsynth", "tiny"]
    for name in preset_names():
        assert preset(name).preset == name


def test_a_config_written_as_toml_reads_back_identical(tmp_path):
    config = apply_overrides(preset("demo"), ["train.seed=3", "model.decoder=rnn_fc", "model.z_dims=4",
                                              "model.processors.reverb.ir_length=800"])
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert load_config_file(path) == config


def test_a_partial_file_overrides_only_what_it_gives_and_processors_as_a_whole(tmp_path):
    """The folder preset with the demo budget: one short file instead of eleven --set flags."""
    path = tmp_path / "short.toml"
    path.write_text(
        "[train]\nbatch_size = 8\nn_steps = 800\ncrop_samples = 16000\n\n"
        "[[model.processors]]\ntype = \"sinusoidal\"\nn_sinusoids = 8\n\n"
        "[[model.processors]]\ntype = \"exp_decay_reverb\"\nir_length = 4000\n"
    )
    config = load_config_file(path, preset("folder"))
    assert (config.train.batch_size, config.train.n_steps, config.train.crop_samples) == (8, 800, 16000)
    assert config.data.source == "folder" and config.train.learning_rate == preset("folder").train.learning_rate
    assert [entry["type"] for entry in config.model.processors] == ["sinusoidal", "exp_decay_reverb"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nn_stepz = 3\n", "unknown config key train.n_stepz"),
        ("[train]\nn_steps = \"many\"\n", "config key 'train.n_steps' expects int"),
        ("[train\n", "is not valid TOML"),
        ("[[model.processors]]\ntype = \"theremin\"\n", "unknown processor type 'theremin'"),
        ("[[model.processors]]\ntype = \"harmonic\"\nn_harmonicz = 3\n", "has no setting n_harmonicz"),
        ("[[model.processors]]\ntype = \"reverb\"\nweight = 0.5\n", "has no setting weight"),
        ("[[model.processors]]\ntype = \"harmonic\"\n[[model.processors]]\ntype = \"harmonic\"\n",
         "names must be unique, repeated harmonic"),
        ("[[model.processors]]\ntype = \"reverb\"\n", "has no source"),
        ("[model]\nn_harmonics = 60\n", "made by an older version of ddsp-jax"),
    ],
)
def test_bad_config_files_are_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_config_file(path)
    assert str(path) in str(error.value)


def test_a_saved_config_of_the_older_layout_gives_a_clear_error():
    old = {"preset": "demo", "run_dir": "runs/demo", "data": {}, "train": {},
           "model": {"n_harmonics": 60, "n_noise_bands": 65, "ir_length": 4000, "hidden_size": 256}}
    with pytest.raises(ConfigError, match="made by an older version of ddsp-jax.*model.processors"):
        from_dict(old)
