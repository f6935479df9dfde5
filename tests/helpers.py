"""Small helpers shared by the tests."""

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(group: str, name: str) -> dict[str, np.ndarray]:
    """Load ``tests/fixtures/<group>/<name>.npz`` as a plain dict (``allow_pickle=False``)."""
    with np.load(FIXTURES / group / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
