"""Small helpers shared by the tests."""

import functools
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(group: str, name: str) -> dict[str, np.ndarray]:
    """Load ``tests/fixtures/<group>/<name>.npz`` as a plain dict (``allow_pickle=False``)."""
    with np.load(FIXTURES / group / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def assert_close_relative(actual, expected, rel_tol: float) -> None:
    """Same shape, and max |actual - expected| below ``rel_tol`` times max |expected|."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    error = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert error < rel_tol, f"max error relative to peak {error:.2e} >= {rel_tol:.0e}"


@functools.cache
def torchcrepe_fixtures() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The torchcrepe/marl-crepe fixtures: (inputs ``crepe_in``, references ``crepe_out_slim``); see their README."""
    return load_fixture("torchcrepe", "crepe_in"), load_fixture("torchcrepe", "crepe_out_slim")


def cents_between(a_hz, b_hz) -> np.ndarray:
    """``|1200 log2(a / b)|`` in float64: how far apart two pitches are, in cents."""
    return 1200.0 * np.abs(np.log2(np.asarray(a_hz, np.float64) / np.asarray(b_hz, np.float64)))
