"""Run configuration: dataclasses, named presets and ``section.key=value`` command-line overrides.

A :class:`Config` is a frozen tree of small dataclasses. Presets (``demo``, ``nsynth``, ``folder``, ``tiny``) are
functions returning a full Config; the command line then overrides single fields, e.g.::

    ddsp-train fit --preset demo --set train.n_steps=500 --set model.n_harmonics=60

Unknown keys and values of the wrong type are refused with a one-line :class:`ConfigError` that names the key and
lists what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration key or value that does not exist or does not parse."""


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; expected one of {', '.join(choices)}")


def _check_positive(section: str, values: Any, names: tuple[str, ...]) -> None:
    """Refuse a value that is not a finite number > 0 (NaN and inf included), naming ``section.name``."""
    for name in names:
        value = getattr(values, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{section}.{name} must be a finite number > 0, got {value}")


def _check_fraction(key: str, value: float) -> None:
    """Refuse a value outside [0, 1) (NaN and inf included), naming ``key``."""
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(f"{key} must be a fraction in [0, 1), got {value}")


@dataclass(frozen=True)
class DataConfig:
    """Where training audio comes from and how features are extracted.

    Attributes:
        source: ``"offline"`` (SoundFont-rendered notes), ``"nsynth"`` (tensorflow-datasets) or ``"folder"``.
        preset: offline preset name (``tiny``, ``demo``, ``full``).
        folder: the user's audio folder when ``source == "folder"``.
        nsynth_config: tfds config name when ``source == "nsynth"``.
        dataset_dir: where the prepared dataset lives; empty means ``<run_dir>/../data/<source>-<preset>``.
        crepe_model: CREPE capacity used for f0 (``tiny`` or ``full``).
        example_seconds: example length for folder sources, seconds.
        validation_fraction: share of a folder source's examples held out for validation (0 keeps none).
        test_fraction: share of a folder source's examples held out for the test split (0 keeps none).
    """

    source: str = "offline"
    preset: str = "demo"
    folder: str = ""
    nsynth_config: str = "gansynth_subset.f0_and_loudness"
    dataset_dir: str = ""
    crepe_model: str = "tiny"
    example_seconds: float = 4.0
    validation_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_choice("data.source", self.source, ("offline", "nsynth", "folder"))
        _check_choice("data.crepe_model", self.crepe_model, ("tiny", "full"))
        _check_positive("data", self, ("example_seconds",))
        _check_fraction("data.validation_fraction", self.validation_fraction)
        _check_fraction("data.test_fraction", self.test_fraction)
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"data.validation_fraction + data.test_fraction must be < 1 (something must remain for training), "
                f"got {self.validation_fraction} + {self.test_fraction}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """The autoencoder's shape (these fields must match between a checkpoint and the model restoring it).

    Attributes:
        n_harmonics: harmonics of the additive synth.
        n_noise_bands: filtered-noise magnitude bands (uniform 0..Nyquist).
        ir_length: learned reverb impulse response, samples.
        hidden_size: GRU and MLP width.
        sample_rate: audio rate, Hz.
        hop_size: samples per control frame (64 = 250 frames/s at 16 kHz).
        n_samples: samples per training example (64000 = 4 s).
        harmonic_weight: mix weight of the harmonic branch.
        noise_weight: mix weight of the noise branch.
        reverb: whether a learned reverb follows the mix.
    """

    n_harmonics: int = 100
    n_noise_bands: int = 65
    ir_length: int = 16000
    hidden_size: int = 512
    sample_rate: int = 16000
    hop_size: int = 64
    n_samples: int = 64000
    harmonic_weight: float = 1.0
    noise_weight: float = 0.1
    reverb: bool = True

    def __post_init__(self) -> None:
        _check_positive("model", self, ("n_harmonics", "n_noise_bands", "ir_length", "hidden_size", "sample_rate",
                                        "hop_size", "n_samples"))
        if self.n_samples % self.hop_size:
            raise ConfigError(f"model.n_samples={self.n_samples} must be a multiple of model.hop_size={self.hop_size}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping.

    The optimiser is ``clip_by_global_norm(grad_clip) -> adam(exponential_decay(learning_rate, decay_steps,
    decay_rate))`` as magenta's solo-instrument training (design.md 6). ``scan_unroll`` is the decoder GRU's
    ``lax.scan`` unroll, a speed knob only (same numbers): 1 is best on CPUs, 8 made a batch-32 step 1.4x faster on
    an H200 (README, Benchmarks).
    """

    batch_size: int = 32
    n_steps: int = 30000
    learning_rate: float = 3e-4
    decay_steps: int = 10000
    decay_rate: float = 0.98
    grad_clip: float = 3.0
    seed: int = 0
    eval_every: int = 500
    eval_examples: int = 32
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 10
    path: str = "pure"
    crop_samples: int = 0
    scan_unroll: int = 1

    def __post_init__(self) -> None:
        _check_choice("train.path", self.path, ("pure", "datarax"))
        _check_positive("train", self, ("batch_size", "n_steps", "learning_rate", "decay_steps", "decay_rate",
                                        "grad_clip", "eval_every", "eval_examples", "checkpoint_every",
                                        "keep_checkpoints", "log_every", "scan_unroll"))
        for name in ("seed", "crop_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Config:
    """A whole run: data, model and training settings plus the run directory."""

    preset: str = "nsynth"
    run_dir: str = "runs/nsynth"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Stable JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def model_fingerprint(self) -> str:
        """Short hash of the fields a checkpoint's parameters depend on (the model section)."""
        text = json.dumps(dataclasses.asdict(self.model), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _preset_nsynth() -> Config:
    return Config(
        preset="nsynth",
        run_dir="runs/nsynth",
        data=DataConfig(source="nsynth", preset="", crepe_model="full"),
    )


def _preset_demo() -> Config:
    # Sized so that `make demo` (data preparation + training + evaluation) ends within 10 minutes on 2 CPU cores.
    return Config(
        preset="demo",
        run_dir="runs/demo",
        data=DataConfig(source="offline", preset="demo", crepe_model="tiny"),
        model=ModelConfig(n_harmonics=60, n_noise_bands=65, ir_length=4000, hidden_size=256),
        train=TrainConfig(
            batch_size=8,
            n_steps=800,
            learning_rate=1e-3,
            decay_steps=1000,
            eval_every=100,
            eval_examples=16,
            checkpoint_every=200,
            log_every=10,
            crop_samples=16000,
        ),
    )


def _preset_folder() -> Config:
    return Config(
        preset="folder",
        run_dir="runs/folder",
        data=DataConfig(source="folder", preset="", crepe_model="full"),
        model=ModelConfig(ir_length=48000),
        train=TrainConfig(batch_size=16, n_steps=30000),
    )


def _preset_tiny() -> Config:
    # For tests: seconds per run on a CPU.
    return Config(
        preset="tiny",
        run_dir="runs/tiny",
        data=DataConfig(source="offline", preset="tiny", crepe_model="tiny"),
        model=ModelConfig(n_harmonics=8, n_noise_bands=9, ir_length=256, hidden_size=16),
        train=TrainConfig(
            batch_size=2,
            n_steps=6,
            learning_rate=1e-3,
            eval_every=3,
            eval_examples=2,
            checkpoint_every=2,
            keep_checkpoints=2,
            log_every=1,
            crop_samples=4096,
        ),
    )


PRESETS = {
    "demo": _preset_demo,
    "nsynth": _preset_nsynth,
    "folder": _preset_folder,
    "tiny": _preset_tiny,
}


def preset(name: str) -> Config:
    """Return the named preset (``demo``, ``nsynth``, ``folder``, ``tiny``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()


def _parse_value(key: str, text: str, kind: Any) -> Any:
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"config key {key!r} expects a boolean (true/false), got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config key {key!r} expects an integer, got {text!r}") from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"config key {key!r} expects a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} expects a finite number, got {text!r}")
        return value
    return text


def all_keys(config: Config) -> list[str]:
    """Every overridable ``section.key`` (and top-level key) of a config."""
    keys = []
    for top in dataclasses.fields(config):
        value = getattr(config, top.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{top.name}.{inner.name}" for inner in dataclasses.fields(value)]
        else:
            keys.append(top.name)
    return keys


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Return ``config`` with ``section.key=value`` overrides applied.

    Raises:
        ConfigError: for text without ``=``, a key that does not exist (the message lists the valid keys of that
            section) or a value that does not parse as the field's type.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.n_steps=100)")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(parts) == 1:
            names = {f.name: f for f in dataclasses.fields(config)}
            if key not in names or dataclasses.is_dataclass(getattr(config, key)):
                raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys(config))}")
            config = dataclasses.replace(config, **{key: _parse_value(key, text, str)})
            continue
        if len(parts) != 2:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys(config))}")
        section_name, name = parts
        section = getattr(config, section_name, None)
        if not dataclasses.is_dataclass(section):
            raise ConfigError(f"unknown config section {section_name!r} in {key!r}; expected data, model or train")
        hints = typing.get_type_hints(type(section))
        if name not in hints:
            valid = ", ".join(f"{section_name}.{f.name}" for f in dataclasses.fields(section))
            raise ConfigError(f"unknown config key {key!r}; valid keys: {valid}")
        section = dataclasses.replace(section, **{name: _parse_value(key, text, hints[name])})
        config = dataclasses.replace(config, **{section_name: section})
    return config


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. a checkpoint's saved config)."""
    try:
        return Config(
            preset=data["preset"],
            run_dir=data["run_dir"],
            data=DataConfig(**data["data"]),
            model=ModelConfig(**data["model"]),
            train=TrainConfig(**data["train"]),
        )
    except (KeyError, TypeError) as error:
        raise ConfigError(f"saved config does not match this version of ddsp-jax: {error}") from None
