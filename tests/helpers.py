"""Small helpers shared by the tests."""

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
