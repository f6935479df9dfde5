"""ddsp_datarax: datarax 0.1.4 adapters around ddsp_core.

Operators (``HarmonicSynth``, ``FilteredNoise``, ``Reverb``, ``DecoderControls``, ``CrepeF0``, ``Loudness``) hold
configuration and ``nnx.Param`` state and call the pure ddsp_core functions; ``build_ddsp_composite`` builds the
seed's ``SEQUENTIAL([WEIGHTED_PARALLEL([harmonic, noise], weights=[1.0, 0.1]), reverb])``; ``sources`` serves
prepared datasets to datarax pipelines. Everything datarax-specific in ddsp-jax lives in this package.
"""

from ddsp_datarax.operators import CrepeF0, DecoderControls, FilteredNoise, HarmonicSynth, Loudness, Reverb
from ddsp_datarax.pipeline import (
    build_ddsp_composite,
    build_ddsp_pipeline,
    composite_from_model,
    composite_random_params,
    datarax_autoencode,
    datarax_params_to_model,
    make_datarax_loss,
)
from ddsp_datarax.sources import PreparedSource, PreparedSourceConfig, build_pipeline

__all__ = [
    "CrepeF0",
    "DecoderControls",
    "FilteredNoise",
    "HarmonicSynth",
    "Loudness",
    "PreparedSource",
    "PreparedSourceConfig",
    "Reverb",
    "build_ddsp_composite",
    "build_ddsp_pipeline",
    "build_pipeline",
    "composite_from_model",
    "composite_random_params",
    "datarax_autoencode",
    "datarax_params_to_model",
    "make_datarax_loss",
]
