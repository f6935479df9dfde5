"""ddsp_datarax: datarax 0.1.4 adapters around ddsp_core.

Operators (``SourceOperator`` and ``EffectOperator`` for any ``ddsp_core`` processor, ``DecoderControls``,
``CrepeF0``, ``Loudness``) hold configuration and ``nnx.Param`` state and call the pure ddsp_core functions;
``composite_from_instrument`` turns an instrument's description into the composite, e.g. the seed's
``SEQUENTIAL([WEIGHTED_PARALLEL([harmonic, noise], weights=[1.0, 0.1]), reverb])``; ``sources`` serves prepared
datasets to datarax pipelines. Everything datarax-specific in ddsp-jax lives in this package.
"""

from ddsp_datarax.operators import CrepeF0, DecoderControls, EffectOperator, Loudness, SourceOperator
from ddsp_datarax.pipeline import (
    build_resynthesis_pipeline,
    composite_from_instrument,
    composite_random_params,
    datarax_autoencode,
    datarax_params_to_model,
    make_datarax_loss,
)
from ddsp_datarax.sources import PreparedSource, PreparedSourceConfig, build_pipeline

__all__ = [
    "CrepeF0",
    "DecoderControls",
    "EffectOperator",
    "Loudness",
    "PreparedSource",
    "PreparedSourceConfig",
    "SourceOperator",
    "build_pipeline",
    "build_resynthesis_pipeline",
    "composite_from_instrument",
    "composite_random_params",
    "datarax_autoencode",
    "datarax_params_to_model",
    "make_datarax_loss",
]
