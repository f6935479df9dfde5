"""CREPE's architecture as numbers: the one place that both the network (:mod:`ddsp_core.crepe`) and the weight
loader (:mod:`ddsp_core.crepe_weights`) read them from.

Kim, Salamon, Li, Bello, "CREPE: A Convolutional Representation for Pitch Estimation", ICASSP 2018; the layer
sizes follow marl/crepe's ``core.build_and_load_model`` and the padding torchcrepe's ``Crepe`` module.
"""

CREPE_SAMPLE_RATE = 16000
"""The sample rate CREPE was trained at, Hz."""
FRAME_SIZE = 1024
"""Samples per CREPE frame (64 ms at 16 kHz)."""
N_BINS = 360
"""Number of pitch bins."""
CENTS_PER_BIN = 20
"""Spacing of the pitch bins, cents."""
CENTS_OFFSET = 1997.3794084376191
"""Cents (re 10 Hz) of bin 0, 31.70 Hz (marl/crepe ``to_local_average_cents``)."""
CAPACITIES = {"tiny": 4, "small": 8, "medium": 16, "large": 24, "full": 32}
"""Capacity multiplier of each model size (marl/crepe ``build_and_load_model``)."""
CHANNEL_PATTERN = (32, 4, 4, 4, 8, 16)
"""Output channels of the six blocks per unit of capacity: full is capacity 32, tiny capacity 4."""
KERNEL_WIDTHS = (512, 64, 64, 64, 64, 64)
"""Convolution kernel width (taps) of each block."""
STRIDES = (4, 1, 1, 1, 1, 1)
"""Convolution stride of each block."""
PADDINGS = ((254, 254), (31, 32), (31, 32), (31, 32), (31, 32), (31, 32))
"""Per-block zero padding of the time axis, exactly as torchcrepe (``Crepe.embed``/``Crepe.layer``)."""
POOLED_WIDTH = 4
"""Time steps left after the six blocks (1024 / 4 / 2**6 ... = 4); the dense layer reads ``4 * channels`` features."""
