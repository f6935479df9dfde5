"""Run configuration: dataclasses, preset files and ``section.key=value`` command-line overrides.

A :class:`Config` is a frozen tree of small dataclasses and also a TOML file: the presets (``demo``, ``nsynth``,
``folder``, ``tiny``) are files in ``train/presets/``, ``--config FILE`` reads a user's, and every run writes its
own ``config.toml``. The model section names the instrument as a list of processor entries. The command line then
overrides single fields on top, e.g.::

    ddsp-train fit --config my.toml --set train.n_steps=500 --set model.processors.harmonic.n_harmonics=60

Unknown keys and values of the wrong type are refused with a one-line :class:`ConfigError` that names the key and
lists what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w


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

    Attributes
    ----------
    source : str
        ``"offline"`` (SoundFont-rendered notes), ``"nsynth"`` (tensorflow-datasets) or ``"folder"``.
    offline_preset : str
        Which offline SoundFont set (``tiny``, ``demo``, ``full``) when ``source == "offline"``.
    folder : str
        The user's audio folder when ``source == "folder"``.
    nsynth_config : str
        tfds config name when ``source == "nsynth"``.
    dataset_dir : str
        Where the prepared dataset lives; empty means ``data/<source>-<offline_preset or folder name>-<crepe_model>``.
    crepe_model : str
        CREPE capacity used for f0 (``tiny`` or ``full``).
    example_seconds : float
        Example length for folder sources, seconds.
    validation_fraction, test_fraction : float
        Share of a folder source's examples held out for validation / the test split (0 keeps none).
    """

    source: str = "offline"
    offline_preset: str = "demo"
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


DEFAULT_PROCESSORS: tuple[dict[str, Any], ...] = (
    {"type": "harmonic", "n_harmonics": 100, "weight": 1.0},
    {"type": "filtered_noise", "n_bands": 65, "weight": 0.1},
    {"type": "reverb", "ir_length": 16000},
)
"""The seed's instrument: harmonic (1.0) + filtered noise (0.1), then a learned reverb (design.md 6)."""


def _processor_name(entry: dict[str, Any]) -> str:
    from ddsp_core.processors import processor_settings

    return str(entry.get("name", processor_settings(entry["type"]).get("name", entry["type"])))


def _check_processors(entries: tuple[dict[str, Any], ...]) -> None:
    """Refuse entries without a known type, with unknown settings, a weight on an effect, or repeated names."""
    from ddsp_core.processors import processor_is_source, processor_settings

    if not entries:
        raise ConfigError("model.processors is empty; an instrument needs at least one source (e.g. harmonic)")
    names = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"model.processors[{index}] must be a table with a 'type', got {entry!r}")
        try:
            valid = processor_settings(entry["type"])
            is_source = processor_is_source(entry["type"])
        except ValueError as error:
            raise ConfigError(f"model.processors[{index}]: {error}") from None
        allowed = set(valid) | {"type"} | ({"weight"} if is_source else set())
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"model.processors[{index}] ({entry['type']}) has no setting {', '.join(unknown)}; "
                              f"valid: {', '.join(sorted(allowed - {'type'}))}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"model.processors[{index}].weight must be a finite number, got {weight!r}")
        names.append(_processor_name(entry))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"model.processors: names must be unique, repeated {', '.join(repeated)} "
                          "(give one of them name = \"...\")")
    if not any(processor_is_source(entry["type"]) for entry in entries):
        raise ConfigError("model.processors has no source; add one (harmonic, filtered_noise, sinusoidal, wavetable)")


@dataclass(frozen=True)
class ModelConfig:
    """The autoencoder (these fields must match between a checkpoint and the model restoring it).

    Attributes
    ----------
    sample_rate : int
        Audio rate, Hz.
    hop_size : int
        Samples per control frame (64 = 250 frames/s at 16 kHz).
    n_samples : int
        Samples per training example (64000 = 4 s).
    decoder : str
        ``"linear"`` (one input layer, GRU, MLP) or ``"rnn_fc"`` (magenta's RnnFcDecoder).
    hidden_size : int
        GRU and MLP width.
    n_mlp_layers : int
        MLP depth (per input and after the GRU for ``rnn_fc``).
    z_dims : int
        0: no z-encoder; otherwise an MFCC encoder feeds a z of this size, trained end to end.
    loudness_ref_db : float
        The loudness the decoder's input scaling maps to 1 (``(loudness_db - loudness_ref_db) / 80 + 1``, see
        ``ddsp_core.decoder.scale_decoder_inputs``); 20.7 puts our loudness at magenta's NSynth reference.
    decoder_init : str
        ``"equinox"`` (Equinox's layer defaults) or ``"keras"`` (Glorot / orthogonal weights, zero biases: how
        magenta's decoders start).
    processors : tuple of dict
        The instrument: processor entries in signal order, each ``{"type": ..., "weight": ... (sources),
        settings...}`` (see ``ddsp_core.model.build_instrument``). In a TOML file, one ``[[model.processors]]``
        table per entry.
    """

    sample_rate: int = 16000
    hop_size: int = 64
    n_samples: int = 64000
    decoder: str = "linear"
    hidden_size: int = 512
    n_mlp_layers: int = 3
    z_dims: int = 0
    loudness_ref_db: float = 0.0
    decoder_init: str = "equinox"
    processors: tuple[dict[str, Any], ...] = DEFAULT_PROCESSORS

    def __post_init__(self) -> None:
        _check_positive("model", self, ("hidden_size", "sample_rate", "hop_size", "n_samples", "n_mlp_layers"))
        _check_choice("model.decoder", self.decoder, ("linear", "rnn_fc"))
        _check_choice("model.decoder_init", self.decoder_init, ("equinox", "keras"))
        if self.z_dims < 0:
            raise ConfigError(f"model.z_dims must be >= 0, got {self.z_dims}")
        if not math.isfinite(self.loudness_ref_db):
            raise ConfigError(f"model.loudness_ref_db must be a finite number of dB, got {self.loudness_ref_db}")
        if self.n_samples % self.hop_size:
            raise ConfigError(f"model.n_samples={self.n_samples} must be a multiple of model.hop_size={self.hop_size}")
        object.__setattr__(self, "processors", tuple(dict(entry) for entry in self.processors))
        _check_processors(self.processors)

    def processor(self, name: str) -> dict[str, Any] | None:
        """The entry of the processor called ``name`` (None if there is none)."""
        return next((entry for entry in self.processors if _processor_name(entry) == name), None)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping.

    The optimiser is ``clip_by_global_norm(grad_clip) -> adam(exponential_decay(learning_rate, decay_steps,
    decay_rate, staircase=decay_staircase))`` as magenta's solo-instrument training (design.md 6; magenta's decay is
    continuous, ``decay_staircase = false``). ``scan_unroll`` is the decoder GRU's
    ``lax.scan`` unroll, a speed knob only (same numbers): 1 is best on CPUs, 8 made a batch-32 step 1.4x faster on
    an H200 (README, Benchmarks). ``gru_impl`` is how the decoder runs its GRU: ``"scan"`` (default) or ``"pallas"``
    (one fused kernel, same values and gradients; meant for GPUs, interpreted and slow elsewhere).
    ``decoder_dtype`` ``"bfloat16"`` runs the decoder's matrix products on bfloat16 operands with float32
    accumulation (mixed precision: parameters, optimiser state, synthesis and loss stay float32, so checkpoints are
    the same either way); ``"float32"`` is the default.
    """

    batch_size: int = 32
    n_steps: int = 30000
    learning_rate: float = 3e-4
    decay_steps: int = 10000
    decay_rate: float = 0.98
    decay_staircase: bool = False
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
    gru_impl: str = "scan"
    decoder_dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_choice("train.path", self.path, ("pure", "datarax"))
        _check_choice("train.gru_impl", self.gru_impl, ("scan", "pallas"))
        _check_choice("train.decoder_dtype", self.decoder_dtype, ("float32", "bfloat16"))
        _check_positive("train", self, ("batch_size", "n_steps", "learning_rate", "decay_steps", "decay_rate",
                                        "grad_clip", "eval_every", "eval_examples", "checkpoint_every",
                                        "keep_checkpoints", "log_every", "scan_unroll"))
        for name in ("seed", "crop_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")


CONFIG_VERSION = 2
"""Version of the config layout; 1 (before processors) had ``model.n_harmonics`` etc. and no ``version``."""


@dataclass(frozen=True)
class Config:
    """A whole run: data, model and training settings plus the run directory.

    ``preset`` is the name of the preset (or file) the config started from, for reports.
    """

    preset: str = "nsynth"
    run_dir: str = "runs/nsynth"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/TOML-serialisable), with the layout ``version``."""
        document = dataclasses.asdict(self)
        document["model"]["processors"] = [dict(entry) for entry in self.model.processors]
        return {"version": CONFIG_VERSION, **document}

    def to_json(self) -> str:
        """Stable JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_toml(self) -> str:
        """The config as a TOML file that ``--config FILE`` reads back to the same config."""
        return tomli_w.dumps(self.to_dict())

    def model_fingerprint(self) -> str:
        """Short hash of the fields a checkpoint's parameters depend on (the model section)."""
        text = json.dumps(self.to_dict()["model"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


PRESETS_DIR = Path(__file__).with_name("presets")
"""The bundled preset files (``demo.toml``, ``nsynth.toml``, ``folder.toml``, ``tiny.toml``)."""


def preset_names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def preset(name: str) -> Config:
    """The named bundled preset (a TOML file in ``train/presets``)."""
    path = PRESETS_DIR / f"{name}.toml"
    if not name or "/" in name or not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(preset_names())} (or --config FILE)")
    return load_config_file(path)


def load_config_file(path: str | Path, base: Config | None = None) -> Config:
    """Read a TOML config file; the keys it gives replace those of ``base`` (default: the built-in defaults).

    A file may give only some keys (e.g. just ``[train]`` settings); ``[[model.processors]]`` tables, when given,
    replace the whole processor list. Unknown keys and bad values are refused naming the file and the key.
    """
    path = Path(path).expanduser()
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; expected a .toml file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    try:
        return merge_dict(base if base is not None else Config(), document, where=str(path))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def merge_dict(config: Config, document: dict[str, Any], *, where: str = "config") -> Config:
    """``config`` with the keys of a nested dict (a parsed file or a saved config) replacing its own."""
    document = dict(document)
    version = document.pop("version", CONFIG_VERSION)
    model = document.get("model", {})
    older = sorted(set(model) & {"n_harmonics", "n_noise_bands", "ir_length", "harmonic_weight", "noise_weight",
                                 "reverb"})
    if version != CONFIG_VERSION or older:
        raise ConfigError(
            f"{where} was made by an older version of ddsp-jax (config layout {version if not older else 1}, "
            f"with model.{older[0] if older else '...'}); this version describes the model as a list of "
            "model.processors. Train a new run (or use ddsp-jax 0.1 to load it)"
        )
    for key, value in document.items():
        current = getattr(config, key, None) if key in {f.name for f in dataclasses.fields(config)} else None
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of settings, got {value!r}")
            config = dataclasses.replace(config, **{key: _merge_section(key, current, value)})
        elif key in ("preset", "run_dir"):
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string, got {value!r}")
            config = dataclasses.replace(config, **{key: value})
        else:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(all_keys(config))}")
    return config


def _merge_section(section_name: str, section: Any, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(type(section))
    changes = {}
    for name, value in values.items():
        if name not in hints:
            valid = ", ".join(f"{section_name}.{f.name}" for f in dataclasses.fields(section))
            raise ConfigError(f"unknown config key {section_name}.{name}; valid keys: {valid}")
        if name == "processors":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{section_name}.processors must be a list of tables, got {value!r}")
            changes[name] = tuple(value)
        else:
            changes[name] = _check_type(f"{section_name}.{name}", value, hints[name])
    try:
        return dataclasses.replace(section, **changes)
    except TypeError as error:
        raise ConfigError(f"[{section_name}]: {error}") from None


def _check_type(key: str, value: Any, kind: Any) -> Any:
    """A value read from a file, checked against the field's type (ints are accepted where floats are)."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"config key {key!r} expects {getattr(kind, '__name__', kind)}, got {value!r}")


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
    """Every overridable ``section.key`` (and top-level key) of a config, processor settings included."""
    keys = []
    for top in dataclasses.fields(config):
        value = getattr(config, top.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{top.name}.{inner.name}" for inner in dataclasses.fields(value) if inner.name != "processors"]
        else:
            keys.append(top.name)
    keys += [f"model.processors.{_processor_name(entry)}.SETTING" for entry in config.model.processors]
    return keys


def _override_processor(config: Config, key: str, text: str) -> Config:
    """``model.processors.<name>.<setting>=value``: change one setting of the processor called ``<name>``."""
    from ddsp_core.processors import processor_is_source, processor_settings

    parts = key.split(".")
    names = [_processor_name(entry) for entry in config.model.processors]
    if len(parts) != 4 or parts[2] not in names:
        raise ConfigError(f"unknown config key {key!r}; processors are addressed as model.processors.NAME.SETTING "
                          f"with NAME one of {', '.join(names)}")
    index = names.index(parts[2])
    entry = dict(config.model.processors[index])
    setting = parts[3]
    defaults = processor_settings(entry["type"])
    if processor_is_source(entry["type"]):
        defaults["weight"] = 1.0
    if setting not in defaults:
        raise ConfigError(f"processor {parts[2]!r} ({entry['type']}) has no setting {setting!r}; valid: "
                          f"{', '.join(sorted(defaults))}")
    default = entry.get(setting, defaults[setting])
    kind = type(default) if isinstance(default, (bool, int, float, str)) else str
    entry[setting] = _parse_value(key, text, float if setting == "weight" else kind)
    processors = config.model.processors[:index] + (entry,) + config.model.processors[index + 1:]
    return dataclasses.replace(config, model=dataclasses.replace(config.model, processors=processors))


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Return ``config`` with ``section.key=value`` overrides applied.

    Processor settings are ``model.processors.<name>.<setting>=value`` (e.g.
    ``model.processors.harmonic.n_harmonics=60``).

    Raises
    ------
    ConfigError
        For text without ``=``, a key that does not exist (the message lists the valid keys of that section) or a
        value that does not parse as the field's type.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.n_steps=100)")
        key, text = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if parts[:2] == ["model", "processors"]:
            config = _override_processor(config, key, text)
            continue
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


def _flat_model(model: dict[str, Any]) -> dict[str, Any]:
    """``model.<key>`` and ``model.processors.<name>.<setting>`` -> value, for naming differences."""
    flat = {f"model.{key}": value for key, value in model.items() if key != "processors"}
    for entry in model.get("processors", []):
        try:
            name = _processor_name(entry)
        except (KeyError, ValueError):
            name = str(entry.get("type"))
        flat.update({f"model.processors.{name}.{key}": value for key, value in entry.items()})
    return flat


def model_differences(saved_model: dict[str, Any], config: Config) -> list[str]:
    """What differs between a saved model section and ``config``'s, as ``key: checkpoint X vs config Y``.

    A setting added after the checkpoint was written (absent from ``saved_model``) counts as its default."""
    defaults = {key: value for key, value in Config().to_dict()["model"].items() if key != "processors"}
    saved, ours = _flat_model({**defaults, **saved_model}), _flat_model(config.to_dict()["model"])
    return [
        f"{key}: checkpoint {saved.get(key)!r} vs config {ours.get(key)!r}"
        for key in sorted(set(saved) | set(ours)) if saved.get(key) != ours.get(key)
    ]


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :meth:`Config.to_dict` output (e.g. a checkpoint's saved config).

    A config saved by an older version (model fields instead of processors) gives a clear :class:`ConfigError`.
    """
    if not isinstance(data, dict) or not {"preset", "run_dir", "data", "model", "train"} <= set(data):
        raise ConfigError("saved config does not match this version of ddsp-jax: expected preset, run_dir, data, "
                          "model and train")
    return merge_dict(Config(), data, where="saved config")
